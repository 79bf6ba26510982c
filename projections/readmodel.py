"""The read model: SQLite tables the projector keeps current, so reads cost O(window).

It lives in its own database (``<log>.readmodel`` beside a SQLite log, ``:memory:`` or a given
path otherwise), so the projector's transactions never contend with the event writer's. It is
disposable: a schema or token-encoding mismatch on open drops it and the projector replays the
log (``Projector.rebuild``).

Tables (every row is derived from the log, up to ``checkpoint.position``):

- ``checkpoint``: one row, the last log position applied and the token encoding of the counts.
  It is written in the same transaction as the rows of each batch, so a batch is applied
  exactly once across crashes and restarts.
- ``contexts``: one row per context: tenant, version, deleted, metadata and window (JSON),
  parent, times (µs), ``message_count``, ``total_tokens``, ``position`` (its first event, the
  listing order) and ``dirty`` (snapshot chunks changed since the last snapshot, see
  ``history``).
- ``messages``: one row per message of the current state; ``seq`` is its 0-based place in
  ``ContextState.messages`` and is dense (appends take ``message_count``; only a rollback or a
  fork rewrites a context's rows), so counting a seq range is arithmetic, not a scan.
  Each row keeps its own ``tokens``; there is deliberately no running token sum: an edit of
  an old message would have to rewrite every later sum (O(context)), while a window is read
  newest-first through ``window.select_tail`` and stops one unit past the budget, which is
  already O(window). Pinned system messages come from a partial index.
- ``summaries``: the context's summaries in order.
- ``snapshots`` and ``snapshot_chunks``: time-travel snapshots (owned by ``history``).
- ``messages_fts``: the full-text index of the messages, and ``search_deferred``, a row while a
  rebuild leaves that index for its end (see ``search``).
- ``event_ids``: events whose id is a name-based UUID (version 5: the service's idempotency
  keys), so a retried command finds its first result with one lookup.

All SQL is in the constants below; functions named ``*_sync`` run on a connection's thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, TypeVar

import aiosqlite
import msgspec

from eventstore import Content, Role, WindowSettings, to_datetime

from . import search
from .errors import ProjectionError
from .state import ContextState, Message, ParentRef, Summary
from .window import LeftOut, Policy, Window, compose, resolve

SCHEMA_VERSION = 4
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
    dirty          TEXT    NOT NULL
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
    PRIMARY KEY (context_id, seq)
);
CREATE UNIQUE INDEX IF NOT EXISTS messages_by_id ON messages (context_id, message_id);
CREATE INDEX IF NOT EXISTS messages_pinned ON messages (context_id, seq) WHERE role = 'system';
CREATE TABLE IF NOT EXISTS summaries (
    context_id         TEXT    NOT NULL,
    seq                INTEGER NOT NULL,
    summary_id         TEXT    NOT NULL,
    text               TEXT    NOT NULL,
    through_message_id TEXT    NOT NULL,
    version            INTEGER NOT NULL,
    tokens             INTEGER NOT NULL,
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
"""
SCHEMA += search.SCHEMA
TABLES = (
    "checkpoint", "contexts", "messages", "summaries", "snapshots", "snapshot_chunks", "event_ids",
    *search.TABLES,
)  # fmt: skip
DROP = "".join(f"DROP TABLE IF EXISTS {table};\n" for table in TABLES)

CONTEXT_COLUMNS = (
    "context_id, tenant, position, version, deleted, metadata, window, parent_id, parent_version,"
    " created_at, updated_at, message_count, total_tokens, token_encoding, dirty"
)
MESSAGE_COLUMNS = (
    "message_id, role, content, name, metadata, version, tokens, edited_version, redacted,"
    " content_hash"
)
SELECT_CHECKPOINT = "SELECT position, encoding FROM checkpoint WHERE id = 1"
UPSERT_CHECKPOINT = (
    "INSERT INTO checkpoint (id, position, encoding) VALUES (1, ?, ?)"
    " ON CONFLICT (id) DO UPDATE SET position = excluded.position, encoding = excluded.encoding"
)
SELECT_CONTEXT = f"SELECT {CONTEXT_COLUMNS} FROM contexts WHERE context_id = ?"
UPSERT_CONTEXT = (
    f"INSERT OR REPLACE INTO contexts ({CONTEXT_COLUMNS})"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
SELECT_MESSAGES = f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE context_id = ? ORDER BY seq"
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
SELECT_TAIL = (
    f"SELECT {MESSAGE_COLUMNS}, seq FROM messages"
    " WHERE context_id = ? AND (role != 'system' OR seq = ?) ORDER BY seq DESC"
)
SELECT_PINNED = (
    f"SELECT {MESSAGE_COLUMNS}, seq FROM messages INDEXED BY messages_pinned"
    " WHERE context_id = ? AND role = 'system' ORDER BY seq"
)
SELECT_MESSAGE_INFO = (
    "SELECT seq, role, name, redacted, content, content_hash, tokens, rowid FROM messages"
    " WHERE context_id = ? AND message_id = ?"
)
SELECT_NEWEST_UNPINNED_UPTO = (
    "SELECT message_id FROM messages WHERE context_id = ? AND seq <= ? AND role != 'system'"
    " ORDER BY seq DESC LIMIT 1"
)
SELECT_SUMMARIES = (
    "SELECT summary_id, text, through_message_id, version, tokens FROM summaries"
    " WHERE context_id = ? ORDER BY seq"
)
# The newest summary whose covered message is still there (ContextState.latest_summary).
SELECT_LATEST_SUMMARY = (
    "SELECT s.summary_id, s.text, s.through_message_id, s.version, s.tokens, m.seq"
    " FROM summaries s JOIN messages m"
    " ON m.context_id = s.context_id AND m.message_id = s.through_message_id"
    " WHERE s.context_id = ? ORDER BY s.seq DESC LIMIT 1"
)
SELECT_FORKS = (
    "SELECT context_id, parent_version, tenant FROM contexts INDEXED BY contexts_by_parent"
    " WHERE parent_id = ? ORDER BY position"
)
SELECT_PAGE = (
    f"SELECT {CONTEXT_COLUMNS} FROM contexts INDEXED BY contexts_by_tenant"
    " WHERE tenant IS ? AND deleted = 0 AND position < ?"
)
# A filter value matches a string equal to it, or another JSON value whose text it is.
FILTER_METADATA = (
    " AND (CASE json_type(metadata, ?) WHEN 'text' THEN json_extract(metadata, ?)"
    " WHEN 'true' THEN 'true' WHEN 'false' THEN 'false' WHEN 'null' THEN 'null'"
    " ELSE CAST(json_extract(metadata, ?) AS TEXT) END) = ?"
)
ORDER_PAGE = " ORDER BY position DESC LIMIT ?"
SELECT_EVENT_ID = "SELECT context_id, position FROM event_ids WHERE event_id = ?"

json_encode = msgspec.json.Encoder().encode
content_decoder = msgspec.json.Decoder(Content)
metadata_decoder = msgspec.json.Decoder(dict[str, Any])
window_decoder = msgspec.json.Decoder(WindowSettings)
T = TypeVar("T")


class ContextRow(msgspec.Struct, kw_only=True):
    """A context's row: everything about it but its messages and summaries (mutable: the
    projector updates one per batch and writes it back once)."""

    context_id: str
    tenant: str | None
    position: int
    version: int
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

    @classmethod
    def from_row(cls, row: tuple[Any, ...]) -> ContextRow:
        """Decode a ``SELECT {CONTEXT_COLUMNS}`` row."""
        return cls(
            context_id=row[0], tenant=row[1], position=row[2], version=row[3],
            deleted=bool(row[4]), metadata=metadata_decoder.decode(row[5]),
            window=window_decoder.decode(row[6]), parent_id=row[7], parent_version=row[8],
            created_at=row[9], updated_at=row[10], message_count=row[11], total_tokens=row[12],
            token_encoding=row[13], dirty=set(msgspec.json.decode(row[14], type=list[int])),
        )  # fmt: skip

    def to_row(self) -> tuple[Any, ...]:
        """The values of ``UPSERT_CONTEXT``."""
        return (
            self.context_id, self.tenant, self.position, self.version, int(self.deleted),
            json_encode(self.metadata).decode(), json_encode(self.window).decode(),
            self.parent_id, self.parent_version, self.created_at, self.updated_at,
            self.message_count, self.total_tokens, self.token_encoding,
            json_encode(sorted(self.dirty)).decode(),
        )  # fmt: skip

    def state(
        self, messages: tuple[Message, ...] = (), summaries: tuple[Summary, ...] = ()
    ) -> ContextState:
        """A ContextState of this row with the given messages and summaries."""
        parent = None if self.parent_id is None else ParentRef(self.parent_id, self.parent_version)
        return ContextState(
            context_id=self.context_id,
            version=self.version,
            messages=messages,
            metadata=self.metadata,
            window=self.window,
            summaries=summaries,
            parent=parent,
            deleted=self.deleted,
            created_at=to_datetime(self.created_at),
            updated_at=to_datetime(self.updated_at),
            tenant=self.tenant,
            token_encoding=self.token_encoding,
        )


def message_from_row(row: tuple[Any, ...]) -> Message:
    """Decode a ``SELECT {MESSAGE_COLUMNS}`` row (extra trailing columns are ignored)."""
    role: Role = row[1]
    return Message(
        message_id=row[0], role=role, content=content_decoder.decode(row[2]), name=row[3],
        metadata=metadata_decoder.decode(row[4]), version=row[5], tokens=row[6],
        edited_version=row[7], redacted=bool(row[8]), content_hash=row[9],
    )  # fmt: skip


def message_to_row(context_id: str, seq: int, m: Message) -> tuple[Any, ...]:
    """The values of an INSERT into ``messages``."""
    return (
        context_id, seq, m.message_id, m.role, json_encode(m.content).decode(), m.name,
        json_encode(m.metadata).decode(), m.version, m.tokens, m.edited_version,
        int(m.redacted), m.content_hash,
    )  # fmt: skip


def summary_from_row(row: tuple[Any, ...]) -> Summary:
    """Decode a ``SELECT_SUMMARIES`` row."""
    return Summary(
        summary_id=row[0], text=row[1], through_message_id=row[2], version=row[3], tokens=row[4]
    )


# -- reads, run on a connection's thread --------------------------------------------------


def context_sync(conn: sqlite3.Connection, context_id: str) -> ContextRow | None:
    """The context's row, or None."""
    row = conn.execute(SELECT_CONTEXT, (context_id,)).fetchone()
    return None if row is None else ContextRow.from_row(row)


def summaries_sync(conn: sqlite3.Connection, context_id: str) -> tuple[Summary, ...]:
    """The context's summaries, in order."""
    return tuple(summary_from_row(r) for r in conn.execute(SELECT_SUMMARIES, (context_id,)))


def state_sync(
    conn: sqlite3.Connection, context_id: str, with_messages: bool = True
) -> ContextState | None:
    """The context's current state (O(messages); without them, O(summaries))."""
    ctx = context_sync(conn, context_id)
    if ctx is None:
        return None
    messages: tuple[Message, ...] = ()
    if with_messages:
        messages = tuple(message_from_row(r) for r in conn.execute(SELECT_MESSAGES, (context_id,)))
    return ctx.state(messages, summaries_sync(conn, context_id))


def message_page_sync(
    conn: sqlite3.Connection, context_id: str, after: int, limit: int, backward: bool
) -> list[tuple[int, Message]]:
    """(seq, message) pairs after ``after`` (or before it, newest first, with ``backward``)."""
    if backward:
        rows = conn.execute(SELECT_MESSAGES_BACKWARD, (context_id, after, limit))
        return [(r[-1], message_from_row(r)) for r in rows]
    # seq is dense, so a forward page is a key range, not an OFFSET.
    rows = conn.execute(SELECT_MESSAGE_RANGE, (context_id, after + 1, after + 1 + limit))
    return [(after + 1 + i, message_from_row(r)) for i, r in enumerate(rows)]


def message_info_sync(
    conn: sqlite3.Connection, context_id: str, message_id: str
) -> tuple[Any, ...] | None:
    """(seq, role, name, redacted, content, content_hash, tokens, rowid) of a message, or
    None."""
    return conn.execute(SELECT_MESSAGE_INFO, (context_id, message_id)).fetchone()  # type: ignore[no-any-return]


def event_id_sync(conn: sqlite3.Connection, event_id: str) -> tuple[str, int] | None:
    """(context_id, position) of an event with a name-based id, if applied."""
    return conn.execute(SELECT_EVENT_ID, (event_id,)).fetchone()  # type: ignore[no-any-return]


def page_sync(
    conn: sqlite3.Connection,
    tenant: str | None,
    before: int,
    limit: int,
    metadata: dict[str, str],
) -> list[ContextRow]:
    """Live contexts of ``tenant`` with position < ``before``, newest first, filtered."""
    sql, params = SELECT_PAGE, [tenant, before]
    for key, value in metadata.items():
        path = '$."' + key.replace('"', '\\"') + '"'
        sql += FILTER_METADATA
        params += [path, path, path, value]
    rows = conn.execute(sql + ORDER_PAGE, [*params, limit])
    return [ContextRow.from_row(r) for r in rows]


def forks_sync(conn: sqlite3.Connection, context_id: str) -> list[tuple[str, int, str | None]]:
    """(fork id, parent version, tenant) of the context's direct forks, oldest first."""
    return list(conn.execute(SELECT_FORKS, (context_id,)))


# -- the database --------------------------------------------------------------------------


class ReadModel:
    """The read-model database: one write connection (the projector's) and WAL readers.

    ``:memory:`` uses one connection for both; every call runs whole on the connection's
    thread, so a reader never sees half a batch either way.
    """

    def __init__(self, path: str, *, readers: int = 2) -> None:
        self.path = path
        self._reader_count = readers
        self._writer: aiosqlite.Connection | None = None
        self._readers: list[aiosqlite.Connection] = []
        self._idle: asyncio.Queue[aiosqlite.Connection] = asyncio.Queue()
        self._inline: sqlite3.Connection | None = None

    async def open(self, encoding: str) -> int:
        """Open (creating or, on a schema or encoding mismatch, recreating) the tables;
        returns the checkpoint position (0 when empty)."""
        self._writer = await self._connect()
        position = await self.write(_init_sync, self.path, encoding)
        if self.path != ":memory:":
            for _ in range(self._reader_count):
                reader = await self._connect()
                await reader.execute("PRAGMA query_only = 1")
                self._readers.append(reader)
                self._idle.put_nowait(reader)
            # Busy only in rare moments (WAL recovery): then wait on a reader thread instead.
            self._inline = sqlite3.connect(self.path, isolation_level=None)
            self._inline.execute("PRAGMA busy_timeout = 0")
            self._inline.execute("PRAGMA query_only = 1")
        else:
            self._idle.put_nowait(self._writer)
        return position

    async def _connect(self) -> aiosqlite.Connection:
        conn = await aiosqlite.connect(self.path, isolation_level=None)
        await conn.execute("PRAGMA busy_timeout = 5000")
        return conn

    async def close(self) -> None:
        """Close every connection."""
        connections = [*self._readers, *([self._writer] if self._writer else [])]
        self._readers.clear()
        self._writer = None
        if self._inline is not None:
            self._inline.close()
            self._inline = None
        for conn in connections:
            with contextlib.suppress(sqlite3.Error, ValueError):
                await conn.close()

    async def write(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(sqlite3_connection, *args)`` on the write connection's thread."""
        if self._writer is None:
            raise ProjectionError("the read model is closed")
        conn = self._writer
        return await conn._execute(lambda: fn(conn._conn, *args))

    async def read(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(sqlite3_connection, *args)`` in one read transaction on a reader."""
        if self._writer is None:
            raise ProjectionError("the read model is closed")
        async with self._reader() as conn:
            return await conn._execute(lambda: _in_read_txn(conn._conn, fn, args))

    async def read_small(self, fn: Callable[..., T], *args: Any) -> T:
        """``read`` for a read that costs about as much as handing it to a thread: a point
        lookup, or a window (O(window) rows). It runs here, on the event loop's thread.

        Why: the GIL serialises the Python half of a read wherever it runs, so a reader
        thread buys no parallelism for these, only two GIL hand-offs and a queue behind
        other readers. Measured under 64 concurrent write-then-read clients: a window
        costs 0.27 ms computed here and waited 150 ms (p50) queued for the two readers.
        Bigger reads (whole states, listings, search, history) keep the threads.
        """
        conn = self._inline
        if conn is None:  # in memory: one connection, the writer's thread
            return await self.read(fn, *args)
        try:
            return _in_read_txn(conn, fn, args)
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) and "busy" not in str(e):
                raise
            return await self.read(fn, *args)

    @contextlib.asynccontextmanager
    async def _reader(self) -> AsyncIterator[aiosqlite.Connection]:
        conn = await self._idle.get()
        try:
            yield conn
        finally:
            self._idle.put_nowait(conn)


def _in_read_txn(conn: sqlite3.Connection, fn: Callable[..., T], args: tuple[Any, ...]) -> T:
    conn.execute("BEGIN")
    try:
        return fn(conn, *args)
    finally:
        conn.execute("COMMIT")


def _init_sync(conn: sqlite3.Connection, path: str, encoding: str) -> int:
    if path != ":memory:":
        conn.execute("PRAGMA journal_mode = WAL")
    # Disposable data: a lost tail of transactions is replayed from the log (the checkpoint
    # is lost with it), so fsync at checkpoints only.
    conn.execute("PRAGMA synchronous = NORMAL")
    found = conn.execute("PRAGMA user_version").fetchone()[0]
    if found != SCHEMA_VERSION:
        conn.executescript(DROP)
    conn.executescript(SCHEMA)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    row = conn.execute(SELECT_CHECKPOINT).fetchone()
    if row is not None and (row[1] != encoding or search.deferred_sync(conn)):
        # Counts in another encoding, or a rebuild cut off before its search index: start over.
        reset_sync(conn, encoding)
        return 0
    return 0 if row is None else int(row[0])


def bulk_sync(conn: sqlite3.Connection, on: bool) -> None:
    """Switch the write connection in (or out of) bulk mode for a rebuild: no syncs and a
    large page cache. Only a crash of the machine itself (not of the process) during a
    rebuild could then damage the file, and a rebuild is what would repair it anyway."""
    conn.execute(f"PRAGMA synchronous = {'OFF' if on else 'NORMAL'}")
    conn.execute(f"PRAGMA cache_size = {-262_144 if on else -2000}")


def reset_sync(conn: sqlite3.Connection, encoding: str) -> None:
    """Drop and recreate every table, checkpoint 0 (what ``rebuild`` starts from)."""
    conn.executescript(DROP + SCHEMA)
    conn.execute(UPSERT_CHECKPOINT, (0, encoding))


def window_sync(
    conn: sqlite3.Connection,
    ctx: ContextRow,
    max_tokens: int | None,
    model: str | None,
    policy: Policy | None,
    last_n: int | None,
) -> Window:
    """``window.window`` of the context's current state, read in O(window): the pinned
    messages and the summary by index, the tail newest-first only as far as it reaches.

    ``left_out`` counts come from seq arithmetic (seq is dense) minus the pinned messages.
    """
    policy, max_tokens, last_n, model, exact = resolve(
        ctx.window, ctx.token_encoding, max_tokens, model, policy, last_n
    )
    cid = ctx.context_id
    row = conn.execute(SELECT_LATEST_SUMMARY, (cid,)).fetchone()
    summary = None if row is None else summary_from_row(row)
    covered_end = -1 if row is None else int(row[-1])
    pinned_rows = conn.execute(SELECT_PINNED, (cid,)).fetchall()
    pinned = [message_from_row(r) for r in pinned_rows]
    pinned_seqs = [r[-1] for r in pinned_rows]
    seq_of: dict[str, int] = {}

    def newest_first() -> Iterator[Message]:
        for r in conn.execute(SELECT_TAIL, (cid, covered_end)):
            seq_of[r[0]] = r[-1]
            yield message_from_row(r)

    result, tail = compose(
        context_id=cid, version=ctx.version, pinned=pinned, summary=summary,
        newest_first=newest_first(), policy=policy, max_tokens=max_tokens, last_n=last_n,
        model=model, encoding=ctx.token_encoding, exact=exact,
    )  # fmt: skip

    def unpinned(first: int, last: int) -> int:  # non-system messages with seq in [first, last]
        return (last - first + 1) - sum(1 for s in pinned_seqs if first <= s <= last)

    left: list[LeftOut] = []
    if tail.stop is not None:
        newest = tail.blocked[-1]
        count = unpinned(covered_end + 1, seq_of[newest.message_id])
        left.append(LeftOut(reason=tail.stop, count=count, newest_message_id=newest.message_id))
    if summary is not None:
        count = unpinned(0, covered_end) + len(tail.covered_results)
        if count:
            if tail.covered_results:
                newest_id = tail.covered_results[-1].message_id
            else:
                (newest_id,) = conn.execute(
                    SELECT_NEWEST_UNPINNED_UPTO, (cid, covered_end)
                ).fetchone()
            left.append(
                LeftOut(reason="covered_by_summary", count=count, newest_message_id=newest_id)
            )
    return msgspec.structs.replace(result, left_out=tuple(left))
