"""The subject key table: one AES key per (tenant, subject), beside the log, never in it.

Both recorders keep the same table; its SQL is here so ``sqlite.py`` and ``postgres.py``
stay about the log. Destroying a key is how a subject is erased (``sealing``). A tenant of
None is stored as "" so that (tenant, subject) can be unique. An export carries the rows of
this table (``transfer``), and an import restores them.
"""

from __future__ import annotations

import sqlite3

import msgspec

from .errors import EventStoreError


class SubjectKey(msgspec.Struct, frozen=True):
    """A row of the key table: one subject's key in one tenant ("" for none)."""

    key_id: str
    tenant: str
    subject: str
    key: bytes
    created_at: int
    """Microseconds since the Unix epoch, UTC."""


class KeyConflict(EventStoreError):
    """Keys that cannot be restored: their key id or (tenant, subject) is already stored."""


SQLITE_SCHEMA = """
CREATE TABLE IF NOT EXISTS subject_keys (
    key_id     TEXT    PRIMARY KEY,
    tenant     TEXT    NOT NULL,
    subject    TEXT    NOT NULL,
    key        BLOB    NOT NULL,
    created_at INTEGER NOT NULL,
    UNIQUE (tenant, subject)
);
"""
SQLITE_INSERT = (
    "INSERT INTO subject_keys (key_id, tenant, subject, key, created_at) VALUES (?, ?, ?, ?, ?)"
    " ON CONFLICT (tenant, subject) DO NOTHING"
)
SQLITE_SELECT = "SELECT key_id, key FROM subject_keys WHERE tenant = ? AND subject = ?"
SQLITE_SELECT_IDS = "SELECT key_id, key FROM subject_keys WHERE key_id IN ({marks})"
SQLITE_DELETE = "DELETE FROM subject_keys WHERE tenant = ? AND subject = ? RETURNING key_id"
SQLITE_SELECT_PAGE = (
    "SELECT key_id, tenant, subject, key, created_at FROM subject_keys"
    " WHERE key_id > ? ORDER BY key_id LIMIT ?"
)
SQLITE_RESTORE = (
    "INSERT INTO subject_keys (key_id, tenant, subject, key, created_at) VALUES (?, ?, ?, ?, ?)"
)

POSTGRES_SCHEMA = """
CREATE TABLE IF NOT EXISTS {schema}.subject_keys (
    key_id     TEXT   PRIMARY KEY,
    tenant     TEXT   NOT NULL,
    subject    TEXT   NOT NULL,
    key        BYTEA  NOT NULL,
    created_at BIGINT NOT NULL,
    UNIQUE (tenant, subject)
);
"""
POSTGRES_INSERT = (
    "INSERT INTO {schema}.subject_keys (key_id, tenant, subject, key, created_at)"
    " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (tenant, subject) DO NOTHING"
)
POSTGRES_SELECT = "SELECT key_id, key FROM {schema}.subject_keys WHERE tenant = $1 AND subject = $2"
POSTGRES_SELECT_IDS = "SELECT key_id, key FROM {schema}.subject_keys WHERE key_id = ANY($1::text[])"
POSTGRES_DELETE = (
    "DELETE FROM {schema}.subject_keys WHERE tenant = $1 AND subject = $2 RETURNING key_id"
)
POSTGRES_VACUUM = "VACUUM {schema}.subject_keys"
POSTGRES_SELECT_PAGE = (
    "SELECT key_id, tenant, subject, key, created_at FROM {schema}.subject_keys"
    " WHERE key_id > $1 ORDER BY key_id LIMIT $2"
)
POSTGRES_RESTORE = (
    "INSERT INTO {schema}.subject_keys (key_id, tenant, subject, key, created_at)"
    " VALUES ($1, $2, $3, $4, $5)"
)

_MAX_VARIABLES = 500


def sqlite_subject_key(
    conn: sqlite3.Connection, tenant: str, subject: str, key_id: str, key: bytes, now_us: int
) -> tuple[str, bytes]:
    """The subject's key; ``(key_id, key)`` is stored first when it has none (concurrent
    callers all get the one that won)."""
    conn.execute(SQLITE_INSERT, (key_id, tenant, subject, key, now_us))
    found = conn.execute(SQLITE_SELECT, (tenant, subject)).fetchone()
    return found[0], found[1]


def sqlite_keys_by_id(conn: sqlite3.Connection, key_ids: list[str]) -> dict[str, bytes]:
    """The keys of ``key_ids`` that still exist."""
    keys: dict[str, bytes] = {}
    for start in range(0, len(key_ids), _MAX_VARIABLES):
        chunk = key_ids[start : start + _MAX_VARIABLES]
        sql = SQLITE_SELECT_IDS.format(marks=",".join("?" * len(chunk)))
        keys.update((row[0], row[1]) for row in conn.execute(sql, chunk))
    return keys


def sqlite_destroy(conn: sqlite3.Connection, tenant: str, subject: str, on_file: bool) -> list[str]:
    """Delete the subject's key, returning its id; the connection has ``secure_delete`` on,
    so its bytes are overwritten, and the WAL is checkpointed and truncated so no old frame
    keeps them."""
    deleted = [row[0] for row in conn.execute(SQLITE_DELETE, (tenant, subject)).fetchall()]
    if deleted and on_file:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
    return deleted


def sqlite_read_keys(conn: sqlite3.Connection, after: str, limit: int) -> list[SubjectKey]:
    """Up to ``limit`` keys in key id order, after ``after``."""
    return [SubjectKey(*row) for row in conn.execute(SQLITE_SELECT_PAGE, (after, limit))]


def sqlite_import_keys(conn: sqlite3.Connection, keys: list[SubjectKey]) -> None:
    """Insert ``keys`` as given in one transaction; KeyConflict, and none stored, on a clash."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.executemany(SQLITE_RESTORE, [msgspec.structs.astuple(key) for key in keys])
        conn.execute("COMMIT")
    except BaseException as e:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        if isinstance(e, sqlite3.IntegrityError):
            raise KeyConflict(f"a subject key is already stored: {e}") from e
        raise
