"""The SQLite recorder: a write connection, a pool of WAL readers, driver errors translated here.

Every aiosqlite call costs a thread hand-off (about 100 µs on a small VM), so a write runs a
whole batch as one function (``sqlite_writes``), and readers fetch in chunks. Group commits and
small reads run on the event loop's thread instead when that pays (``inline``). The schema and
statements are in ``sqlite_schema``.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, Literal, TypeVar

import aiosqlite

from . import keystore
from .chain import GENESIS
from .errors import EventStoreError, SchemaTooNew, StoreClosed, StoreUnavailable
from .files import create_private, database_bytes
from .inline import CommitPlacement, busy
from .recorder import (
    AppendOutcome,
    LogFilter,
    LogPage,
    PendingAppend,
    Recorder,
    StoredEvent,
    StreamInfo,
    prefix_range,
)
from .sqlite_schema import (
    FILTER_ACTOR,
    FILTER_STREAM,
    FILTER_TENANT,
    FILTER_TYPES,
    ORDER_BY_POSITION,
    SCHEMA,
    SCHEMA_VERSION,
    SELECT_ALL,
    SELECT_ANY_TENANT,
    SELECT_HEAD,
    SELECT_RECORDED_AT,
    SELECT_STREAM_BACKWARD,
    SELECT_STREAM_FORWARD,
    SELECT_STREAM_RECORDED_AT,
    SELECT_STREAM_VERSION,
    SELECT_STREAMS,
    SELECT_STREAMS_STARTING,
    SELECT_TENANT_STREAMS,
)
from .sqlite_writes import VersionCache, checkpoint, commit_batch, import_rows

T = TypeVar("T")
Synchronous = Literal["FULL", "NORMAL"]


class SQLiteRecorder(Recorder):
    """The log in one SQLite file (WAL), or in memory for tests (``path=":memory:"``)."""

    def __init__(
        self,
        path: str,
        *,
        synchronous: Synchronous = "FULL",
        busy_timeout_ms: int = 5000,
        readers: int = 2,
    ) -> None:
        if synchronous not in ("FULL", "NORMAL"):
            raise ValueError("synchronous must be FULL or NORMAL")
        self.path = path
        self.synchronous = synchronous
        self.busy_timeout_ms = busy_timeout_ms
        self._reader_count = readers
        self._writer: aiosqlite.Connection | None = None
        self._readers: list[aiosqlite.Connection] = []
        self._idle: asyncio.Queue[aiosqlite.Connection] = asyncio.Queue()
        self._inline: sqlite3.Connection | None = None
        self._committer: sqlite3.Connection | None = None
        self._placement = CommitPlacement()
        self._versions = VersionCache()
        # An in-memory database is private to its connection, so it reads on the writer.
        self.supports_concurrent_reads = path != ":memory:"

    async def open(self) -> None:
        """Open the write connection, create or check the schema, then the readers.

        On failure every connection opened so far is closed: aiosqlite's threads are not
        daemons, and one left behind keeps the process from exiting.
        """
        try:
            await self._open()
        except BaseException:
            await self.close()
            raise

    async def _open(self) -> None:
        # Owner-only from the start (its WAL and index take its mode): it holds subject keys.
        create_private(self.path)
        with _translated():
            # Opened on this thread first, so that a file SQLite cannot open (its directory
            # missing or read-only) fails here: aiosqlite stops the thread of a connection
            # that failed without waiting for it, and it may then outlive the event loop
            # (a traceback at exit).
            sqlite3.connect(self.path).close()
            self._writer = await self._connect()
            await _run(self._writer, self._init_schema)
            if self.supports_concurrent_reads:
                for _ in range(self._reader_count):
                    reader = await self._connect()
                    await reader.execute("PRAGMA query_only = 1")
                    self._readers.append(reader)
                    self._idle.put_nowait(reader)
                # For reads of a few rows, run on the event loop's thread (see ``_read``);
                # busy only in rare moments (WAL recovery), when a reader thread waits instead.
                self._inline = sqlite3.connect(self.path, isolation_level=None)
                self._inline.execute("PRAGMA busy_timeout = 0")
                self._inline.execute("PRAGMA query_only = 1")
                # Group commits on the loop's thread (see ``inline``): never waits for a lock,
                # and leaves WAL checkpoints to the writer's thread.
                self._committer = sqlite3.connect(self.path, isolation_level=None)
                self._committer.execute("PRAGMA busy_timeout = 0")
                self._committer.execute(f"PRAGMA synchronous = {self.synchronous}")
                self._committer.execute("PRAGMA wal_autocheckpoint = 0")
            else:
                self._idle.put_nowait(self._writer)

    async def _connect(self) -> aiosqlite.Connection:
        conn = await aiosqlite.connect(self.path, isolation_level=None)
        try:
            await conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_ms)}")
        except BaseException:
            await conn.close()
            raise
        return conn

    def _init_schema(self, conn: sqlite3.Connection) -> None:
        found = conn.execute("PRAGMA user_version").fetchone()[0]
        if found > SCHEMA_VERSION:
            raise SchemaTooNew(found, SCHEMA_VERSION)
        if self.path != ":memory:":
            conn.execute("PRAGMA journal_mode = WAL")
        conn.execute(f"PRAGMA synchronous = {self.synchronous}")
        # Deleting a subject's key must overwrite its bytes, not just free the page.
        conn.execute("PRAGMA secure_delete = ON")
        conn.executescript(SCHEMA + keystore.SQLITE_SCHEMA)
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    async def close(self) -> None:
        """Close the readers, then the writer."""
        connections = [*self._readers, *([self._writer] if self._writer else [])]
        self._readers.clear()
        self._writer = None
        for inline in (self._inline, self._committer):
            if inline is not None:
                inline.close()
        self._inline = self._committer = None
        for conn in connections:
            with contextlib.suppress(sqlite3.Error, ValueError):
                await conn.close()

    # -- writing ----------------------------------------------------------------------------

    async def commit(
        self, batch: list[PendingAppend], now_us: int
    ) -> list[AppendOutcome | EventStoreError]:
        """Plan and insert the batch in one BEGIN IMMEDIATE transaction: on the event loop's
        thread when that pays (``inline``), else on the writer's thread."""
        if self._writer is None:
            raise StoreClosed("the store is closed")
        with _translated():
            conn, placement = self._committer, self._placement
            if conn is not None and placement.inline():
                try:
                    outcomes = commit_batch(conn, batch, now_us, self._versions, placement.commit)
                except sqlite3.OperationalError as e:
                    if not busy(e):
                        raise
                else:
                    self.last_sync = placement.last
                    if placement.checkpoint_due():
                        await _run(self._writer, checkpoint)
                    return outcomes
            outcomes = await _run(
                self._writer, commit_batch, batch, now_us, self._versions, placement.timed
            )
            self.last_sync = placement.last
            return outcomes

    async def import_rows(self, rows: list[StoredEvent]) -> None:
        """Check and insert the rows as given in one BEGIN IMMEDIATE transaction."""
        if self._writer is None:
            raise StoreClosed("the store is closed")
        with _translated():
            await _run(self._writer, import_rows, rows, self._versions)

    async def subject_key(
        self, tenant: str, subject: str, candidate: tuple[str, bytes], now_us: int
    ) -> tuple[str, bytes]:
        """Insert-or-read on the write connection (the only one that writes)."""
        if self._writer is None:
            raise StoreClosed("the store is closed")
        with _translated():
            return await _run(
                self._writer, keystore.sqlite_subject_key, tenant, subject, *candidate, now_us
            )

    async def keys_by_id(self, key_ids: list[str]) -> dict[str, bytes]:
        """One query per 500 ids on a reader."""
        async with self._reader() as conn:
            return await _run(conn, keystore.sqlite_keys_by_id, key_ids)

    async def destroy_subject_key(self, tenant: str, subject: str) -> list[str]:
        """Delete (securely) and checkpoint the WAL on the write connection."""
        if self._writer is None:
            raise StoreClosed("the store is closed")
        with _translated():
            return await _run(
                self._writer, keystore.sqlite_destroy, tenant, subject, self.path != ":memory:"
            )

    async def read_keys(self, after: str, limit: int) -> list[keystore.SubjectKey]:
        """One ranged query on the key id index, on a reader."""
        async with self._reader() as conn:
            return await _run(conn, keystore.sqlite_read_keys, after, limit)

    async def import_keys(self, keys: list[keystore.SubjectKey]) -> None:
        """Insert the keys as given in one BEGIN IMMEDIATE transaction."""
        if self._writer is None:
            raise StoreClosed("the store is closed")
        with _translated():
            await _run(self._writer, keystore.sqlite_import_keys, keys)

    # -- reading ----------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _reader(self) -> AsyncIterator[aiosqlite.Connection]:
        if self._writer is None:
            raise StoreClosed("the store is closed")
        conn = await self._idle.get()
        try:
            with _translated():
                yield conn
        finally:
            self._idle.put_nowait(conn)

    async def read_stream(
        self, stream_id: str, from_version: int | None, backward: bool, limit: int
    ) -> list[StoredEvent]:
        """One ranged query on the (stream_id, version) index."""
        if backward:
            sql, start = SELECT_STREAM_BACKWARD, (2**62 if from_version is None else from_version)
        else:
            sql, start = SELECT_STREAM_FORWARD, (from_version or 1)
        rows = await self._read(
            _fetch, sql, (stream_id, start, limit), inline=limit <= _INLINE_ROWS
        )
        return [StoredEvent(*row) for row in rows]

    async def _read(self, fn: Callable[..., T], *args: Any, inline: bool) -> T:
        """``fn(connection, *args)``; with ``inline`` (a read of at most ``_INLINE_ROWS``
        rows: a page of a stream) here, on the event loop's thread, else on a reader's.

        Why: the GIL serialises the Python half of a read wherever it runs, so a reader
        thread buys no parallelism for a small one, only two GIL hand-offs and a queue behind
        other reads; under load those cost many times the read itself. Reads that can be
        large (pages of the global log, a rebuild's) keep the reader threads.
        """
        conn = self._inline if inline else None
        if conn is not None:
            try:
                with _translated():
                    return fn(conn, *args)
            except StoreUnavailable as e:
                if not isinstance(e.__cause__, sqlite3.OperationalError) or not busy(e.__cause__):
                    raise
        if self._writer is None:
            raise StoreClosed("the store is closed")
        async with self._reader() as reader:
            return await _run(reader, fn, *args)

    async def read_all(self, after: int, limit: int, filter: LogFilter) -> LogPage:
        """Head and page read in one snapshot, so ``through`` is exact."""
        async with self._reader() as conn:
            return await _run(conn, _read_all, after, limit, filter)

    async def stream_version(self, stream_id: str) -> int:
        """max(version) on the unique index."""
        async with self._reader() as conn:
            rows = await conn.execute_fetchall(SELECT_STREAM_VERSION, (stream_id,))
        return next(iter(rows))[0] or 0

    async def streams_starting_with(self, prefix: str, limit: int) -> list[str]:
        """A range of the unique index on (stream_id, version)."""
        params = (*prefix_range(prefix), limit)
        async with self._reader() as conn:
            rows = await conn.execute_fetchall(SELECT_STREAMS_STARTING, params)
        return [row[0] for row in rows]

    async def stream_version_at(self, stream_id: str, at_us: int) -> int:
        """Bisection over the stream's gap-free versions: O(log n) point reads."""
        async with self._reader() as conn:
            return await _run(conn, _stream_version_at, stream_id, at_us)

    async def head(self) -> tuple[int, bytes]:
        """The last row's position and hash."""
        async with self._reader() as conn:
            rows = list(await conn.execute_fetchall(SELECT_HEAD))
        return (rows[0][0], rows[0][1]) if rows else (0, GENESIS)

    async def stored_bytes(self) -> int | None:
        """The file and its write-ahead log (committed appends not yet copied into it)."""
        return None if self.path == ":memory:" else database_bytes(self.path)

    async def has_tenants(self) -> bool:
        """One seek in the partial index of stream starts by tenant."""
        async with self._reader() as conn:
            rows = await conn.execute_fetchall(SELECT_ANY_TENANT)
        return bool(list(rows))

    async def list_streams(
        self, tenant: str | None, before: int | None, after: int | None, limit: int
    ) -> list[StreamInfo]:
        """A range of the partial index of stream starts."""
        params: list[str | int]
        sql, params = (SELECT_STREAMS, []) if tenant is None else (SELECT_TENANT_STREAMS, [tenant])
        if before is not None:
            sql += " AND position < ? ORDER BY position DESC LIMIT ?"
            params += [before, limit]
        else:
            sql += " AND position > ? ORDER BY position LIMIT ?"
            params += [after or 0, limit]
        async with self._reader() as conn:
            rows = await conn.execute_fetchall(sql, params)
        return [StreamInfo(*row) for row in rows]


# -- functions run on a connection's thread ---------------------------------------------------


async def _run(conn: aiosqlite.Connection, fn: Callable[..., T], *args: Any) -> T:
    """Run ``fn(sqlite3_connection, *args)`` on the connection's thread in one hand-off.

    aiosqlite has no public call for this; ``_execute`` is how its own methods do it.
    """
    return await conn._execute(lambda: fn(conn._conn, *args))  # type: ignore[no-untyped-call,no-any-return]


_INLINE_ROWS = 1000


def _fetch(conn: sqlite3.Connection, sql: str, args: tuple[Any, ...]) -> list[Any]:
    return conn.execute(sql, args).fetchall()


def _read_all(conn: sqlite3.Connection, after: int, limit: int, filter: LogFilter) -> LogPage:
    conn.execute("BEGIN")
    try:
        row = conn.execute(SELECT_HEAD).fetchone()
        head = row[0] if row else 0
        after = max(after, _position_before(conn, filter.since, head))
        if filter.until is not None:
            head = min(head, _position_before(conn, filter.until, head))
        sql, params = SELECT_ALL, [after, head]
        if filter.types is not None:
            sql += FILTER_TYPES.format(marks=",".join("?" * len(filter.types)))
            params += filter.types
        for clause, value in (
            (FILTER_STREAM, filter.stream_id),
            (FILTER_TENANT, filter.tenant),
            (FILTER_ACTOR, filter.actor),
        ):
            if value is not None:
                sql += clause
                params.append(value)
        sql += ORDER_BY_POSITION
        params.append(limit)
        events = [StoredEvent(*row) for row in conn.execute(sql, params)]
    finally:
        conn.execute("COMMIT")
    return LogPage(events, events[-1].position if len(events) == limit else max(head, after))


def _position_before(conn: sqlite3.Connection, at_us: int | None, head: int) -> int:
    """The last position recorded before ``at_us``, by bisection: recorded_at never decreases."""
    if at_us is None:
        return 0
    lo, hi = 0, head  # invariant: position lo is before at_us (0 stands for 'none'), hi+1 is not
    while lo < hi:
        mid = (lo + hi + 1) // 2
        (recorded_at,) = conn.execute(SELECT_RECORDED_AT, (mid,)).fetchone()
        if recorded_at < at_us:
            lo = mid
        else:
            hi = mid - 1
    return lo


def _stream_version_at(conn: sqlite3.Connection, stream_id: str, at_us: int) -> int:
    top = conn.execute(SELECT_STREAM_VERSION, (stream_id,)).fetchone()[0] or 0
    lo, hi = 0, top
    while lo < hi:
        mid = (lo + hi + 1) // 2
        (recorded_at,) = conn.execute(SELECT_STREAM_RECORDED_AT, (stream_id, mid)).fetchone()
        if recorded_at <= at_us:
            lo = mid
        else:
            hi = mid - 1
    return lo


@contextlib.contextmanager
def _translated() -> Iterator[None]:
    """The one place where sqlite3's errors become the store's."""
    try:
        yield
    except sqlite3.Error as e:
        raise StoreUnavailable(f"database error: {e}") from e
    except ValueError as e:
        if "closed" in str(e).lower() or "no active connection" in str(e):
            raise StoreClosed("the store is closed") from e
        raise
