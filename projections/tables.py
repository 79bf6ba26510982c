"""The read model's tables: their schema, every statement on them, and rows as values.

The read model: SQLite tables the projector keeps current, so reads cost O(window).

It lives in its own database (``<log>.readmodel`` beside a SQLite log, ``:memory:`` or a given
path otherwise), so the projector's transactions never contend with the event writer's. It is
disposable: a schema or token-encoding mismatch on open drops it and the projector replays the
log (``Projector.rebuild``).

Tables (every row is derived from the log, up to ``checkpoint.position``):

- ``checkpoint``: one row, the last log position applied and the token encoding of the counts.
  It is written in the same transaction as the rows of each batch, so a batch is applied
  exactly once across crashes and restarts.
- ``contexts``: one row per context: tenant, version, ``content_version`` (the version of its
  latest event that is not a served window's record, see ``preconditions``), deleted,
  metadata and window (JSON), parent, times (µs), ``message_count``, ``total_tokens``,
  ``position`` (its first event, the listing order), ``dirty`` (snapshot chunks changed
  since the last snapshot, see ``history``) and ``reshaped`` (when its messages last changed
  other than by an append).
- ``messages``: one row per message of the current state; ``seq`` is its 0-based place in
  ``ContextState.messages`` and is dense (appends take ``message_count``; only a rollback or a
  fork rewrites a context's rows), so counting a seq range is arithmetic, not a scan.
  Each row keeps its own ``tokens``; there is deliberately no running token sum: an edit of
  an old message would have to rewrite every later sum (O(context)), while a window is read
  newest-first through ``window.select_tail`` and stops one unit past the budget, which is
  already O(window). Pinned system messages come from a partial index. ``subject`` is the
  data subject the message's content belongs to (``subjects``).
- ``summaries``: the context's summaries in order, each with its ``subjects`` (JSON).
- ``snapshots`` and ``snapshot_chunks``: time-travel snapshots (owned by ``history``).
- ``tenants``: a slot per tenant, and ``messages_fts_<slot>``: that tenant's full-text index
  of its messages (see ``tenants``); ``search_deferred``, a row while a rebuild leaves the
  indexes for its end (see ``search``).
- ``tenant_runs``: each tenant's events numbered 1, 2, 3, …, the positions a caller of
  that tenant is shown, as runs of consecutive positions (see ``positions``).
- ``event_ids``: events whose id is a name-based UUID (version 5: the service's idempotency
  keys), so a retried command finds its first result with one lookup.
- ``sealed_keys``: which contexts hold content sealed with which subject key, and for which
  subject ("" when the log does not say), with the position of the latest such event; and
  ``erased_keys``: keys known to be destroyed, with the position of the first
  ``subject.erased`` naming each (NULL: found missing, no erasure recorded yet) and whether
  this read model has forgotten their content. How an erasure finds every context that ever
  held a subject's content, and how the projector forgets it (``shredding``).

All SQL is in the constants below; the reads are in ``reads``, the connections in ``readmodel``.
"""

from __future__ import annotations

from typing import Any

import msgspec

from eventstore import Content, Role, WindowSettings, to_datetime

from . import positions, search, tenants
from .dialect import streamed, twin
from .state import ContextState, Message, ParentRef, Summary

SCHEMA_VERSION = 11
"""Kept in ``PRAGMA user_version``; any other number on open drops the tables (disposable)."""

SCHEMA = """
CREATE TABLE IF NOT EXISTS checkpoint (
    id       INTEGER PRIMARY KEY CHECK (id = 1),
    position INTEGER NOT NULL,
    encoding TEXT    NOT NULL
);
CREATE TABLE IF NOT EXISTS contexts (
    context_id     TEXT    PRIMARY KEY,
    tenant         TEXT,
    position       INTEGER NOT NULL,
    version        INTEGER NOT NULL,
    content_version INTEGER NOT NULL,
    deleted        INTEGER NOT NULL,
    metadata       TEXT    NOT NULL,
    window         TEXT    NOT NULL,
    parent_id      TEXT,
    parent_version INTEGER,
    created_at     INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL,
    message_count  INTEGER NOT NULL,
    total_tokens   INTEGER NOT NULL,
    token_encoding TEXT    NOT NULL,
    dirty          TEXT    NOT NULL,
    reshaped       INTEGER NOT NULL,
    updated_by     TEXT
);
CREATE INDEX IF NOT EXISTS contexts_by_tenant ON contexts (tenant, deleted, position);
CREATE INDEX IF NOT EXISTS contexts_by_parent ON contexts (parent_id) WHERE parent_id IS NOT NULL;
CREATE TABLE IF NOT EXISTS messages (
    context_id     TEXT    NOT NULL,
    seq            INTEGER NOT NULL,
    message_id     TEXT    NOT NULL,
    role           TEXT    NOT NULL,
    content        TEXT    NOT NULL,
    name           TEXT,
    metadata       TEXT    NOT NULL,
    version        INTEGER NOT NULL,
    tokens         INTEGER NOT NULL,
    edited_version INTEGER,
    redacted       INTEGER NOT NULL,
    content_hash   TEXT,
    subject        TEXT,
    PRIMARY KEY (context_id, seq)
);
CREATE UNIQUE INDEX IF NOT EXISTS messages_by_id ON messages (context_id, message_id);
CREATE INDEX IF NOT EXISTS messages_pinned ON messages (context_id, seq)
    WHERE role IN ('system', 'developer');
CREATE TABLE IF NOT EXISTS summaries (
    context_id         TEXT    NOT NULL,
    seq                INTEGER NOT NULL,
    summary_id         TEXT    NOT NULL,
    text               TEXT    NOT NULL,
    through_message_id TEXT    NOT NULL,
    version            INTEGER NOT NULL,
    tokens             INTEGER NOT NULL,
    subjects           TEXT    NOT NULL,
    PRIMARY KEY (context_id, seq)
);
CREATE TABLE IF NOT EXISTS snapshots (
    context_id    TEXT    NOT NULL,
    version       INTEGER NOT NULL,
    message_count INTEGER NOT NULL,
    header        BLOB    NOT NULL,
    PRIMARY KEY (context_id, version)
);
CREATE TABLE IF NOT EXISTS snapshot_chunks (
    context_id TEXT    NOT NULL,
    chunk      INTEGER NOT NULL,
    version    INTEGER NOT NULL,
    messages   BLOB    NOT NULL,
    PRIMARY KEY (context_id, chunk, version)
);
CREATE TABLE IF NOT EXISTS event_ids (
    event_id   TEXT    PRIMARY KEY,
    context_id TEXT    NOT NULL,
    position   INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS sealed_keys (
    key_id     TEXT    NOT NULL,
    context_id TEXT    NOT NULL,
    subject    TEXT    NOT NULL,
    position   INTEGER NOT NULL,
    PRIMARY KEY (key_id, context_id)
);
CREATE INDEX IF NOT EXISTS sealed_keys_by_subject ON sealed_keys (subject);
CREATE TABLE IF NOT EXISTS erased_keys (
    key_id    TEXT    PRIMARY KEY,
    erased_at INTEGER,
    forgotten INTEGER NOT NULL
);
"""
SCHEMA += search.SCHEMA + tenants.SCHEMA + positions.SCHEMA
TABLES = (
    "checkpoint", "contexts", "messages", "summaries", "snapshots", "snapshot_chunks", "event_ids",
    "sealed_keys", "erased_keys", *search.TABLES, *tenants.TABLES, *positions.TABLES,
)  # fmt: skip
"""The fixed tables; each tenant's index goes with ``tenants.drop_sync``."""
DROP = "".join(f"DROP TABLE IF EXISTS {table};\n" for table in TABLES)

CONTEXT_COLUMNS = (
    # "window" quoted: a reserved word in PostgreSQL (a plain name to SQLite either way).
    'context_id, tenant, position, version, deleted, metadata, "window", parent_id, parent_version,'
    " created_at, updated_at, message_count, total_tokens, token_encoding, dirty, content_version,"
    " reshaped, updated_by"
)
MESSAGE_COLUMNS = (
    "message_id, role, content, name, metadata, version, tokens, edited_version, redacted,"
    " content_hash, subject"
)
SELECT_CHECKPOINT = "SELECT position, encoding FROM checkpoint WHERE id = 1"
UPSERT_CHECKPOINT = (
    "INSERT INTO checkpoint (id, position, encoding) VALUES (1, ?, ?)"
    " ON CONFLICT (id) DO UPDATE SET position = excluded.position, encoding = excluded.encoding"
)
SELECT_CONTEXT = f"SELECT {CONTEXT_COLUMNS} FROM contexts WHERE context_id = ?"
_CONTEXT_VALUES = f"({CONTEXT_COLUMNS}) VALUES ({', '.join('?' * len(CONTEXT_COLUMNS.split(',')))})"
UPSERT_CONTEXT = twin(
    f"INSERT OR REPLACE INTO contexts {_CONTEXT_VALUES}",
    f"INSERT INTO contexts {_CONTEXT_VALUES} ON CONFLICT (context_id) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in CONTEXT_COLUMNS.replace(" ", "").split(",")),
)
SELECT_MESSAGES = f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE context_id = ? ORDER BY seq"
# Each message's JSON as the API shows it (``Message`` without ``subject``, ``message_id`` as
# ``id``), assembled by SQLite from the stored columns: content and metadata are kept as JSON
# already, and json_quote escapes text exactly as msgspec does (every code point checked), so
# a whole context is copied out of the read model instead of decoded and encoded again. Built
# from the live columns, it can never show content an edit, a redaction or an erasure replaced.
SELECT_MESSAGES_JSON = twin(
    "SELECT CAST('{\"id\":' || json_quote(message_id) || ',\"role\":' || json_quote(role)"
    " || ',\"content\":' || content || ',\"name\":' || json_quote(name)"
    " || ',\"metadata\":' || metadata || ',\"version\":' || version"
    " || ',\"tokens\":' || tokens || ',\"edited_version\":' || coalesce(edited_version, 'null')"
    " || ',\"redacted\":' || CASE WHEN redacted THEN 'true' ELSE 'false' END"
    " || ',\"content_hash\":' || json_quote(content_hash) || '}' AS BLOB)"
    " FROM messages WHERE context_id = ? AND seq >= ? ORDER BY seq",
    # to_json escapes text as json_quote does; NULL needs saying.
    "SELECT convert_to('{\"id\":' || to_json(message_id)::text"
    " || ',\"role\":' || to_json(role)::text"
    " || ',\"content\":' || content || ',\"name\":' || coalesce(to_json(name)::text, 'null')"
    " || ',\"metadata\":' || metadata || ',\"version\":' || version::text"
    " || ',\"tokens\":' || tokens::text"
    " || ',\"edited_version\":' || coalesce(edited_version::text, 'null')"
    " || ',\"redacted\":' || CASE WHEN redacted <> 0 THEN 'true' ELSE 'false' END"
    " || ',\"content_hash\":' || coalesce(to_json(content_hash)::text, 'null') || '}', 'UTF8')"
    " FROM messages WHERE context_id = ? AND seq >= ? ORDER BY seq",
)
SELECT_MESSAGE_RANGE = (
    f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE context_id = ? AND seq >= ? AND seq < ?"
    " ORDER BY seq"
)
SELECT_MESSAGES_BACKWARD = (
    f"SELECT {MESSAGE_COLUMNS}, seq FROM messages WHERE context_id = ? AND seq < ?"
    " ORDER BY seq DESC LIMIT ?"
)
# The tail skips pinned (system) messages, except the one a summary covers through: the
# tail must reach it to know where the summary's coverage starts.
SELECT_TAIL = streamed(
    f"SELECT {MESSAGE_COLUMNS}, seq FROM messages"
    " WHERE context_id = ? AND (role NOT IN ('system', 'developer') OR seq = ?)"
    " ORDER BY seq DESC"
)
SELECT_PINNED = twin(
    f"SELECT {MESSAGE_COLUMNS}, seq FROM messages INDEXED BY messages_pinned"
    " WHERE context_id = ? AND role IN ('system', 'developer') ORDER BY seq",
    f"SELECT {MESSAGE_COLUMNS}, seq FROM messages"
    " WHERE context_id = ? AND role IN ('system', 'developer') ORDER BY seq",
)
SELECT_MESSAGE_INFO = (
    "SELECT seq, role, name, redacted, content, content_hash, tokens, rowid, subject, metadata"
    " FROM messages WHERE context_id = ? AND message_id = ?"
)
SELECT_SUMMARY_SUBJECTS = "SELECT subjects FROM summaries WHERE context_id = ? AND summary_id = ?"
SELECT_MESSAGE_SUBJECTS = twin(
    "SELECT DISTINCT subject FROM messages WHERE context_id = ? AND subject IS NOT NULL"
    " AND message_id IN (SELECT value FROM json_each(?))",
    "SELECT DISTINCT subject FROM messages WHERE context_id = ? AND subject IS NOT NULL"
    " AND message_id IN (SELECT jsonb_array_elements_text(?::jsonb))",
)
SELECT_SUBJECTS_UPTO = (
    "SELECT DISTINCT subject FROM messages WHERE context_id = ? AND seq <= ?"
    " AND subject IS NOT NULL"
)
SELECT_NEWEST_UNPINNED_UPTO = (
    "SELECT message_id FROM messages WHERE context_id = ? AND seq <= ?"
    " AND role NOT IN ('system', 'developer')"
    " ORDER BY seq DESC LIMIT 1"
)
SELECT_SUMMARIES = (
    "SELECT summary_id, text, through_message_id, version, tokens, subjects FROM summaries"
    " WHERE context_id = ? ORDER BY seq"
)
# The newest summary whose covered message is still there (ContextState.latest_summary).
SELECT_LATEST_SUMMARY = (
    "SELECT s.summary_id, s.text, s.through_message_id, s.version, s.tokens, s.subjects, m.seq"
    " FROM summaries s JOIN messages m"
    " ON m.context_id = s.context_id AND m.message_id = s.through_message_id"
    " WHERE s.context_id = ? ORDER BY s.seq DESC LIMIT 1"
)
SELECT_FORKS = twin(
    "SELECT context_id, parent_version, tenant FROM contexts INDEXED BY contexts_by_parent"
    " WHERE parent_id = ? ORDER BY position",
    "SELECT context_id, parent_version, tenant FROM contexts WHERE parent_id = ? ORDER BY position",
)
SELECT_PAGE = twin(
    f"SELECT {CONTEXT_COLUMNS} FROM contexts INDEXED BY contexts_by_tenant"
    " WHERE tenant IS ? AND deleted = 0 AND position < ?",
    f"SELECT {CONTEXT_COLUMNS} FROM contexts"
    " WHERE tenant IS NOT DISTINCT FROM ? AND deleted = 0 AND position < ?",
)
# A filter value matches a string equal to it, or another JSON value whose text it is. The key
# is compared with json_each's decoded keys, never spliced into a JSON path: a path cannot
# spell every key (SQLite's has no escapes for '"' or '\\', and a NUL ends it in an error).
FILTER_METADATA = twin(
    " AND EXISTS (SELECT 1 FROM json_each(contexts.metadata) AS m WHERE m.key = ? AND"
    " (CASE m.type WHEN 'true' THEN 'true' WHEN 'false' THEN 'false' WHEN 'null' THEN 'null'"
    " ELSE CAST(m.value AS TEXT) END) = ?)",
    # json, not jsonb: a value's text is then as stored (msgspec's, compact), as SQLite's is.
    " AND EXISTS (SELECT 1 FROM json_each(contexts.metadata::json) AS m WHERE m.key = ? AND"
    " (CASE json_typeof(m.value) WHEN 'string' THEN m.value #>> '{}'"
    " ELSE m.value::text END) = ?)",
)
ORDER_PAGE = " ORDER BY position DESC LIMIT ?"
SELECT_EVENT_ID = "SELECT context_id, position FROM event_ids WHERE event_id = ?"

json_encode = msgspec.json.Encoder().encode
content_decoder = msgspec.json.Decoder(Content)
metadata_decoder = msgspec.json.Decoder(dict[str, Any])
window_decoder = msgspec.json.Decoder(WindowSettings)
subjects_decoder = msgspec.json.Decoder(list[str])


class ContextRow(msgspec.Struct, kw_only=True):
    """A context's row: everything about it but its messages and summaries (mutable: the
    projector updates one per batch and writes it back once)."""

    context_id: str
    tenant: str | None
    position: int
    version: int
    content_version: int
    deleted: bool
    metadata: dict[str, Any]
    window: WindowSettings
    parent_id: str | None
    parent_version: int | None
    created_at: int
    updated_at: int
    message_count: int
    total_tokens: int
    token_encoding: str
    dirty: set[int]
    reshaped: int = 0
    """Assemblies of the messages' JSON (``SELECT_MESSAGES_JSON``) made at a version below
    this one no longer hold: the version of the last edit, redaction, rollback or fork, or
    one past the version an erasure rewrote. Below it, only appends changed the messages."""
    updated_by: str | None = None
    """The actor the latest event names (``ContextState.updated_by``)."""

    @classmethod
    def from_row(cls, row: tuple[Any, ...]) -> ContextRow:
        """Decode a ``SELECT {CONTEXT_COLUMNS}`` row."""
        return cls(
            context_id=row[0], tenant=row[1], position=row[2], version=row[3],
            deleted=bool(row[4]), metadata=metadata_decoder.decode(row[5]),
            window=window_decoder.decode(row[6]), parent_id=row[7], parent_version=row[8],
            created_at=row[9], updated_at=row[10], message_count=row[11], total_tokens=row[12],
            token_encoding=row[13], dirty=set(msgspec.json.decode(row[14], type=list[int])),
            content_version=row[15], reshaped=row[16], updated_by=row[17],
        )  # fmt: skip

    def to_row(self) -> tuple[Any, ...]:
        """The values of ``UPSERT_CONTEXT``."""
        return (
            self.context_id, self.tenant, self.position, self.version, int(self.deleted),
            json_encode(self.metadata).decode(), json_encode(self.window).decode(),
            self.parent_id, self.parent_version, self.created_at, self.updated_at,
            self.message_count, self.total_tokens, self.token_encoding,
            json_encode(sorted(self.dirty)).decode(), self.content_version, self.reshaped,
            self.updated_by,
        )  # fmt: skip

    def state(
        self, messages: tuple[Message, ...] = (), summaries: tuple[Summary, ...] = ()
    ) -> ContextState:
        """A ContextState of this row with the given messages and summaries."""
        parent = None
        if self.parent_id is not None and self.parent_version is not None:
            parent = ParentRef(self.parent_id, self.parent_version)
        return ContextState(
            context_id=self.context_id,
            version=self.version,
            content_version=self.content_version,
            messages=messages,
            metadata=self.metadata,
            window=self.window,
            summaries=summaries,
            parent=parent,
            deleted=self.deleted,
            created_at=to_datetime(self.created_at),
            updated_at=to_datetime(self.updated_at),
            updated_by=self.updated_by,
            tenant=self.tenant,
            token_encoding=self.token_encoding,
        )


def message_from_row(row: tuple[Any, ...]) -> Message:
    """Decode a ``SELECT {MESSAGE_COLUMNS}`` row (extra trailing columns are ignored)."""
    role: Role = row[1]
    return Message(
        message_id=row[0], role=role, content=content_decoder.decode(row[2]), name=row[3],
        metadata=metadata_decoder.decode(row[4]), version=row[5], tokens=row[6],
        edited_version=row[7], redacted=bool(row[8]), content_hash=row[9], subject=row[10],
    )  # fmt: skip


def message_to_row(context_id: str, seq: int, m: Message) -> tuple[Any, ...]:
    """The values of an INSERT into ``messages``."""
    return (
        context_id, seq, m.message_id, m.role, json_encode(m.content).decode(), m.name,
        json_encode(m.metadata).decode(), m.version, m.tokens, m.edited_version,
        int(m.redacted), m.content_hash, m.subject,
    )  # fmt: skip


def summary_from_row(row: tuple[Any, ...]) -> Summary:
    """Decode a ``SELECT_SUMMARIES`` row (extra trailing columns are ignored)."""
    return Summary(
        summary_id=row[0], text=row[1], through_message_id=row[2], version=row[3],
        tokens=row[4], subjects=tuple(subjects_decoder.decode(row[5])),
    )  # fmt: skip


def summary_to_row(context_id: str, seq: int, s: Summary) -> tuple[Any, ...]:
    """The values of ``INSERT_SUMMARY``."""
    return (
        context_id, seq, s.summary_id, s.text, s.through_message_id, s.version, s.tokens,
        json_encode(s.subjects).decode(),
    )  # fmt: skip


# -- reads, run on a connection's thread --------------------------------------------------
