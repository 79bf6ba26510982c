"""The read model's connections: one writer (the projector's), reader threads, and an inline
connection for small reads on the event loop's thread.

It lives in its own database (``<log>.readmodel`` beside a SQLite log, ``:memory:`` or a given
path otherwise), so the projector's transactions never contend with the event writer's. It is
disposable: a schema or token-encoding mismatch on open drops it and the projector replays the
log (``Projector.rebuild``). The tables are described in ``tables``.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

import aiosqlite

from . import search
from .errors import ProjectionError
from .tables import DROP, SCHEMA, SCHEMA_VERSION, SELECT_CHECKPOINT, UPSERT_CHECKPOINT

T = TypeVar("T")


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
