"""The read model's record of which contexts hold content sealed with which subject key, and
forgetting that content once the key is destroyed.

The read model keeps content decrypted. When a key is destroyed (an erasure, by this process
or any other on the same log), every context holding content sealed with it is folded again
from the log, where that content now reads "[erased]", and its rows replace the old ones
(``refold_sync``); its snapshots go too, as they hold the old content. Which contexts: those
whose own events were sealed with the key (``sealed_keys``, written as the projector applies
them) and every fork descending from one of them (a fork's rows hold its parent's messages).
This is found from the sealed events themselves, not from metadata that names a subject:
metadata can change, a seal cannot.

``erased_keys`` remembers keys known to be destroyed: with the position of the first
``subject.erased`` naming each, or NULL for one found missing with no erasure recorded (an
erasure cut off between destroying the key and recording it, or a key row deleted by hand);
and whether this read model has forgotten their content. That is set in the transaction that
replaces the rows, never before: a process killed in between forgets at its next start
(``Projector.reconcile``: a key gone from the key table, its content not forgotten here).
"""

from __future__ import annotations

import sqlite3

from eventstore import RecordedEvent, SubjectErased

from .dialect import twin
from .tables import json_encode

UPSERT_SEALED = (
    "INSERT INTO sealed_keys (key_id, context_id, subject, position) VALUES (?, ?, ?, ?)"
    " ON CONFLICT (key_id, context_id) DO UPDATE SET position = excluded.position,"
    " subject = CASE WHEN excluded.subject != '' THEN excluded.subject"
    " ELSE sealed_keys.subject END"
)
MARK_ERASED = (
    "INSERT INTO erased_keys (key_id, erased_at, forgotten) VALUES (?, ?, 0) ON CONFLICT (key_id)"
    " DO UPDATE SET erased_at = coalesce(erased_keys.erased_at, excluded.erased_at)"
)
MARK_FORGOTTEN = (
    "INSERT INTO erased_keys (key_id, erased_at, forgotten) VALUES (?, NULL, 1)"
    " ON CONFLICT (key_id) DO UPDATE SET forgotten = 1"
)
SELECT_NOT_FORGOTTEN = twin(
    "SELECT value FROM json_each(?)"
    " WHERE value NOT IN (SELECT key_id FROM erased_keys WHERE forgotten)",
    "SELECT value FROM jsonb_array_elements_text(?::jsonb) AS k (value)"
    " WHERE value NOT IN (SELECT key_id FROM erased_keys WHERE forgotten <> 0)",
)
SELECT_ERASED_AT = twin(
    "SELECT key_id, erased_at FROM erased_keys WHERE key_id IN (SELECT value FROM json_each(?))",
    "SELECT key_id, erased_at FROM erased_keys"
    " WHERE key_id IN (SELECT jsonb_array_elements_text(?::jsonb))",
)
SELECT_UNSETTLED = twin(
    "SELECT DISTINCT key_id FROM sealed_keys"
    " WHERE key_id NOT IN (SELECT key_id FROM erased_keys WHERE forgotten)",
    "SELECT DISTINCT key_id FROM sealed_keys"
    " WHERE key_id NOT IN (SELECT key_id FROM erased_keys WHERE forgotten <> 0)",
)
# Contexts holding content sealed with any of the keys, and every fork descending from them.
SELECT_HOLDING = """
WITH RECURSIVE holding (context_id) AS (
    SELECT context_id FROM sealed_keys WHERE key_id IN (SELECT value FROM json_each(:keys))
    UNION
    SELECT c.context_id FROM contexts c JOIN holding h ON c.parent_id = h.context_id
)
SELECT c.context_id, c.version FROM contexts c JOIN holding USING (context_id)
ORDER BY c.position
"""
twin(SELECT_HOLDING, SELECT_HOLDING.replace(
    "(SELECT value FROM json_each(:keys))", "(SELECT jsonb_array_elements_text(:keys::jsonb))"
))  # fmt: skip
# The keys that sealed a subject's content in a tenant, and whether an erasure recorded each.
SELECT_SUBJECT_KEYS = twin(
    """
SELECT DISTINCT s.key_id, a.erased_at IS NOT NULL
FROM sealed_keys s JOIN contexts c USING (context_id) LEFT JOIN erased_keys a USING (key_id)
WHERE s.subject = :subject AND c.tenant IS :tenant
""",
    """
SELECT DISTINCT s.key_id, a.erased_at IS NOT NULL
FROM sealed_keys s JOIN contexts c USING (context_id) LEFT JOIN erased_keys a USING (key_id)
WHERE s.subject = :subject AND c.tenant IS NOT DISTINCT FROM :tenant
""",
)
# Every context that ever held the subject's content (sealed with one of its keys, or, for
# content of an older ctxlog, named by metadata), and every fork descending from one.
SELECT_AFFECTED = """
WITH RECURSIVE affected (context_id) AS (
    SELECT context_id FROM sealed_keys WHERE key_id IN (SELECT value FROM json_each(:keys))
    UNION
    SELECT context_id FROM contexts WHERE json_extract(metadata, '$.subject') = :subject
    UNION
    SELECT context_id FROM messages WHERE json_extract(metadata, '$.subject') = :subject
    UNION
    SELECT c.context_id FROM contexts c JOIN affected a ON c.parent_id = a.context_id
)
SELECT c.context_id FROM contexts c JOIN affected a USING (context_id)
WHERE c.tenant IS :tenant ORDER BY c.position
"""
twin(
    SELECT_AFFECTED,
    """
WITH RECURSIVE affected (context_id) AS (
    SELECT context_id FROM sealed_keys
    WHERE key_id IN (SELECT jsonb_array_elements_text(:keys::jsonb))
    UNION
    SELECT context_id FROM contexts WHERE metadata::json ->> 'subject' = :subject
    UNION
    SELECT context_id FROM messages WHERE metadata::json ->> 'subject' = :subject
    UNION
    SELECT c.context_id FROM contexts c JOIN affected a ON c.parent_id = a.context_id
)
SELECT c.context_id FROM contexts c JOIN affected a USING (context_id)
WHERE c.tenant IS NOT DISTINCT FROM :tenant ORDER BY c.position
""",
)
# The tenants whose contexts hold content of a subject that no erasure has reached yet (sealed
# with one of its keys not known to be destroyed): where erasing it would do something.
SELECT_SUBJECT_TENANTS = """
SELECT DISTINCT c.tenant
FROM sealed_keys s JOIN contexts c USING (context_id)
WHERE s.subject = :subject AND s.key_id NOT IN (SELECT key_id FROM erased_keys)
ORDER BY c.tenant IS NOT NULL, c.tenant
"""
twin(
    SELECT_SUBJECT_TENANTS,
    # PostgreSQL orders a DISTINCT only by what it selects.
    """
SELECT tenant FROM (
    SELECT DISTINCT c.tenant
    FROM sealed_keys s JOIN contexts c USING (context_id)
    WHERE s.subject = :subject AND s.key_id NOT IN (SELECT key_id FROM erased_keys)
) AS t ORDER BY tenant NULLS FIRST
""",
)
DELETE_SNAPSHOTS = "DELETE FROM snapshots WHERE context_id = ?"
DELETE_SNAPSHOT_CHUNKS = "DELETE FROM snapshot_chunks WHERE context_id = ?"


def record_sync(conn: sqlite3.Connection, rec: RecordedEvent) -> None:
    """Note the keys ``rec`` was sealed with, or the keys a ``subject.erased`` names (inside
    the projector's batch)."""
    for ref in rec.sealed_by:
        conn.execute(UPSERT_SEALED, (ref.key_id, rec.stream_id, ref.subject, rec.position))
    if isinstance(rec.event, SubjectErased):
        conn.executemany(MARK_ERASED, [(key_id, rec.position) for key_id in rec.event.key_ids])


def not_forgotten_sync(conn: sqlite3.Connection, key_ids: list[str]) -> list[str]:
    """Those of ``key_ids`` whose content this read model has not forgotten yet."""
    params = (json_encode(key_ids).decode(),)
    return [row[0] for row in conn.execute(SELECT_NOT_FORGOTTEN, params)]


def erased_at_sync(conn: sqlite3.Connection, key_ids: list[str]) -> dict[str, int | None]:
    """Where the first ``subject.erased`` naming each key is (None: none recorded)."""
    rows = conn.execute(SELECT_ERASED_AT, (json_encode(key_ids).decode(),))
    return dict(rows)


def forgotten_sync(conn: sqlite3.Connection, key_ids: list[str]) -> None:
    """Note that this read model holds nothing of ``key_ids``' content any more."""
    conn.execute("BEGIN IMMEDIATE")
    conn.executemany(MARK_FORGOTTEN, [(key_id,) for key_id in key_ids])
    conn.execute("COMMIT")


def unsettled_sync(conn: sqlite3.Connection) -> list[str]:
    """Keys that sealed content here and whose content is not forgotten (to check against
    the key table: one missing was destroyed behind this read model's back)."""
    return [row[0] for row in conn.execute(SELECT_UNSETTLED)]


def holding_sync(conn: sqlite3.Connection, key_ids: list[str]) -> list[tuple[str, int]]:
    """(context id, version) of every context holding content sealed with ``key_ids``."""
    return list(conn.execute(SELECT_HOLDING, {"keys": json_encode(key_ids).decode()}))


def subject_keys_sync(
    conn: sqlite3.Connection, tenant: str | None, subject: str
) -> list[tuple[str, bool]]:
    """(key id, erasure recorded) of every key that sealed ``subject``'s content in ``tenant``."""
    params = {"subject": subject, "tenant": tenant}
    return [(row[0], bool(row[1])) for row in conn.execute(SELECT_SUBJECT_KEYS, params)]


def subject_tenants_sync(conn: sqlite3.Connection, subject: str) -> list[str | None]:
    """Every tenant (None: none) holding content of ``subject`` not erased yet."""
    return [row[0] for row in conn.execute(SELECT_SUBJECT_TENANTS, {"subject": subject})]


def affected_sync(
    conn: sqlite3.Connection, tenant: str | None, subject: str, key_ids: list[str]
) -> list[str]:
    """Every context of ``tenant`` that ever held ``subject``'s content (``SELECT_AFFECTED``)."""
    params = {"keys": json_encode(key_ids).decode(), "subject": subject, "tenant": tenant}
    return [row[0] for row in conn.execute(SELECT_AFFECTED, params)]
