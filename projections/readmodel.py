"""The read model's connections: one writer (the projector's), reader threads, and an inline
connection for small reads on the event loop's thread.

It lives in its own database (``<log>.readmodel`` beside a SQLite log, ``:memory:`` or a given
path otherwise), so the projector's transactions never contend with the event writer's. It is
disposable: a schema or token-encoding mismatch on open drops it and the projector replays the
log (``Projector.rebuild``). The tables are described in ``tables``.

A rebuild of a read model on file writes a new file beside it (``<path>.rebuilding``) and
then swaps it in (``adopt``), so reads go on being served by the old one until the swap, and
nothing of the old one is carried over (erasure relies on that: the old file is unlinked, not
emptied page by page). A rebuild in memory empties the tables in place.

A file that cannot be opened as a read model (not a database, a damaged header or schema)
is set aside as ``<path>.damaged-<UTC time>`` (renamed, never deleted: someone may want to
look at it), a warning names it, and a new one is built from the log: it is derived data,
and a damaged copy of it must not make the log unservable.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import sqlite3
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any, NamedTuple, Protocol, TypeVar

import aiosqlite

from eventstore.files import PRIVATE, create_private

from . import search, tenants
from .errors import ProjectionError, ReadModelInUse
from .openmarks import OpenMark, fsync_path, remove_files
from .retry import transient
from .tables import DROP, SCHEMA, SCHEMA_VERSION, SELECT_CHECKPOINT, UPSERT_CHECKPOINT

T = TypeVar("T")

log = logging.getLogger("ctxlog.readmodel")

REBUILDING = ".rebuilding"
"""The suffix of the file a rebuild writes before it replaces the read model's."""
BUILDING_LOCK = ".rebuilding.lock"
"""Beside a read model file: locked (``flock``) while a process builds ``<path>.rebuilding``,
so a second builder is refused instead of deleting the first one's file under it, which the
first would then rename over the read model. It is never deleted: a lock file that is
removed and created again can be held by two processes at once."""


class Model(Protocol):
    """What the projector and the queries need of a read model: ``ReadModel`` (SQLite, this
    node's own) or ``pgreadmodel.PgReadModel`` (PostgreSQL, shared by the nodes on a log)."""

    path: str
    damaged: Damaged | None

    @property
    def on_file(self) -> bool:
        """False: a rebuild empties the tables in place."""

    @property
    def shared(self) -> bool:
        """True: other nodes use it too, and one elected projector applies the log."""

    async def open(self, encoding: str) -> int:
        """Open it; returns its checkpoint."""

    async def close(self) -> None:
        """Close it."""

    async def reset(self, encoding: str) -> None:
        """Empty it, checkpoint 0."""

    async def write(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(connection, *args)`` on the write connection."""

    async def read(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(connection, *args)`` in one read transaction."""

    async def read_small(self, fn: Callable[..., T], *args: Any) -> T:
        """``read`` for a point lookup or a window."""


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
        self._encoding = ""
        self._swapped: asyncio.Event | None = None
        """Unset while ``adopt`` swaps the files: reads wait for it."""
        self._mark = OpenMark(path)
        self._building: int | None = None
        """The descriptor holding ``BUILDING_LOCK``, on a fresh read model until it is
        adopted or discarded."""
        self.damaged: Damaged | None = None
        """The damaged file the last ``open`` set aside, if it did."""

    async def open(self, encoding: str) -> int:
        """Open (creating or, on a schema or encoding mismatch, recreating) the tables;
        returns the checkpoint position (0 when empty)."""
        self._encoding = encoding
        unsynced = False
        if self.on_file:
            await asyncio.to_thread(self._mark.claim)
            unsynced = self._mark.unsynced
        self.damaged = None
        try:
            self._writer = await self._connect()
            position = await self.write(_init_sync, self.path, encoding, unsynced)
        except sqlite3.DatabaseError as e:
            if not self.on_file or transient(e):
                raise
            await self._set_aside(e)
            self._writer = await self._connect()
            position = await self.write(_init_sync, self.path, encoding, unsynced)
        if self.on_file:
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

    async def _set_aside(self, error: sqlite3.DatabaseError) -> None:
        """Rename the file that cannot be opened (and its write-ahead log) out of the way."""
        if self._writer is not None:
            with contextlib.suppress(sqlite3.Error, ValueError):
                await self._writer.close()
            self._writer = None
        reason = str(error) or type(error).__name__
        moved = await asyncio.to_thread(_set_aside_files, self.path)
        self.damaged = Damaged(self.path, moved, reason)
        log.warning(
            "the read model %s cannot be opened (%s): set aside as %s; rebuilding it from"
            " the log", self.path, reason, moved,
        )  # fmt: skip

    @property
    def on_file(self) -> bool:
        """False for ``:memory:`` (a rebuild then empties the tables in place)."""
        return self.path != ":memory:"

    @property
    def shared(self) -> bool:
        """False: this node's projector applies (a file another process shares on one log is
        handled by ``apply_sync`` skipping what the other applied)."""
        return False

    async def reset(self, encoding: str) -> None:
        """Drop and recreate every table, checkpoint 0 (``reset_sync``)."""
        await self.write(reset_sync, encoding)

    async def fresh(self) -> ReadModel:
        """A new, empty read model in ``<path>.rebuilding`` (what a crashed rebuild left
        there is discarded), with one connection and no rollback journal until ``adopt``:
        it is thrown away whole if the rebuild fails. ReadModelInUse while another process
        builds one (``BUILDING_LOCK``)."""
        fresh = ReadModel(self.path + REBUILDING, readers=0)
        fresh._building = await asyncio.to_thread(_lock_building, self.path)
        try:
            remove_files(fresh.path)
            fresh._encoding = self._encoding
            fresh._writer = await fresh._connect()
            await fresh.write(_init_fresh_sync, self._encoding)
        except BaseException:
            await fresh.discard()
            raise
        fresh._idle.put_nowait(fresh._writer)  # its reads (history of a fork) go there too
        return fresh

    async def discard(self) -> None:
        """Close and delete this (fresh) read model."""
        await self.close()
        remove_files(self.path)
        self._unlock_building()

    def _unlock_building(self) -> None:
        fd, self._building = self._building, None
        if fd is not None:
            os.close(fd)  # and with it the lock

    async def adopt(self, fresh: ReadModel) -> int:
        """Replace this read model with ``fresh`` (a finished rebuild); returns its checkpoint.

        Reads in flight finish first and reads that arrive meanwhile wait. Refused (the old
        read model stays) while another process has this one open: the file would change
        under it, and its write-ahead log would be replayed onto the new file.
        """
        await fresh.write(_finish_fresh_sync)
        await fresh.close()
        # The rebuild ran without syncs: its pages reach the disk before the rename makes
        # them the read model, and the rename before anything builds on it.
        await asyncio.to_thread(fsync_path, fresh.path)
        gate = self._swapped = asyncio.Event()
        try:
            for _ in self._readers:  # wait until every reader is back, then close them all
                await self._idle.get()
            await self.close()
            try:
                swapped = await asyncio.to_thread(_swap_files, fresh.path, self.path)
            finally:  # swapped, refused or failed: this read model serves again
                fresh._unlock_building()
                position = await self.open(self._encoding)
        finally:
            self._swapped = None
            gate.set()
        if not swapped:
            raise ReadModelInUse(self.path)
        return position

    async def _connect(self) -> aiosqlite.Connection:
        create_private(self.path)  # plaintext of every message: owner-only, WAL and index too
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
        await asyncio.to_thread(self._mark.release)

    async def write(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(sqlite3_connection, *args)`` on the write connection's thread."""
        if self._writer is None:
            raise ProjectionError("the read model is closed")
        conn = self._writer
        return await conn._execute(lambda: fn(conn._conn, *args))  # type: ignore[no-untyped-call,no-any-return]

    async def read(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(sqlite3_connection, *args)`` in one read transaction on a reader."""
        if self._swapped is not None:
            await self._swapped.wait()
        if self._writer is None:
            raise ProjectionError("the read model is closed")
        async with self._reader() as conn:
            return await conn._execute(lambda: _in_read_txn(conn._conn, fn, args))  # type: ignore[no-untyped-call,no-any-return]

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


class Damaged(NamedTuple):
    """A read model file that could not be opened, and where it was set aside."""

    path: str
    moved_to: str
    reason: str


def _set_aside_files(path: str) -> str:
    """Rename ``path`` (and its ``-wal``) to a new ``<path>.damaged-<time>``; drop its
    ``-shm`` (an index of that log, rebuilt by SQLite); returns the new name."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    target, n = f"{path}.damaged-{stamp}", 1
    while os.path.exists(target):
        n += 1
        target = f"{path}.damaged-{stamp}-{n}"
    os.replace(path, target)
    with contextlib.suppress(FileNotFoundError):
        os.replace(path + "-wal", target + "-wal")
    with contextlib.suppress(FileNotFoundError):
        os.remove(path + "-shm")
    fsync_path(os.path.dirname(os.path.abspath(path)))
    return target


def _in_read_txn(conn: sqlite3.Connection, fn: Callable[..., T], args: tuple[Any, ...]) -> T:
    conn.execute("BEGIN")
    try:
        return fn(conn, *args)
    finally:
        conn.execute("COMMIT")


def _init_sync(conn: sqlite3.Connection, path: str, encoding: str, unsynced: bool) -> int:
    if path != ":memory:":
        conn.execute("PRAGMA journal_mode = WAL")
    # Disposable data: a lost tail of transactions is replayed from the log (the checkpoint
    # is lost with it). No syncs at all where a machine crash can be told (``openmarks``),
    # else fsync at checkpoints only.
    conn.execute(f"PRAGMA synchronous = {'OFF' if unsynced else 'NORMAL'}")
    found = conn.execute("PRAGMA user_version").fetchone()[0]
    if found != SCHEMA_VERSION:
        tenants.drop_sync(conn)
        conn.executescript(DROP)
    conn.executescript(SCHEMA)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    row = conn.execute(SELECT_CHECKPOINT).fetchone()
    if row is not None and (row[1] != encoding or search.deferred_sync(conn)):
        # Counts in another encoding, or a rebuild cut off before its search index: start over.
        reset_sync(conn, encoding)
        return 0
    return 0 if row is None else int(row[0])


def _init_fresh_sync(conn: sqlite3.Connection, encoding: str) -> None:
    # No journal: a failed rebuild throws the whole file away, so nothing is rolled back
    # (ROLLBACK without a journal leaves the file undefined; it is never used again).
    # Without WAL every page is written once, not twice (WAL, then the checkpoint).
    conn.execute("PRAGMA journal_mode = OFF")
    conn.execute("PRAGMA locking_mode = EXCLUSIVE")
    conn.executescript(SCHEMA)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    conn.execute(UPSERT_CHECKPOINT, (0, encoding))


def _finish_fresh_sync(conn: sqlite3.Connection) -> None:
    conn.execute("PRAGMA locking_mode = NORMAL")
    conn.execute("PRAGMA journal_mode = WAL")  # also hands the exclusive lock back


def _lock_building(path: str) -> int:
    """Hold ``<path>.rebuilding.lock``; ReadModelInUse if another process holds it."""
    fd = os.open(path + BUILDING_LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, PRIVATE)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise ReadModelInUse(path, building=True) from None
    return fd


def _swap_files(fresh: str, path: str) -> bool:
    """Rename ``fresh`` over ``path`` (every connection to it closed); False, and ``fresh``
    removed, if ``path`` still has a write-ahead log: the last connection to close deletes
    it, so another process holds it open."""
    if os.path.exists(path + "-wal"):
        remove_files(fresh)
        return False
    with contextlib.suppress(FileNotFoundError):
        os.remove(path + "-shm")  # the index of a log that is gone
    os.replace(fresh, path)
    fsync_path(os.path.dirname(os.path.abspath(path)))
    return True


def bulk_sync(conn: sqlite3.Connection, on: bool) -> None:
    """Switch the write connection in (or out of) bulk mode for a rebuild: no syncs and a
    large page cache. Only a crash of the machine itself (not of the process) during a
    rebuild could then damage the file, and a rebuild is what would repair it anyway."""
    conn.execute(f"PRAGMA synchronous = {'OFF' if on else 'NORMAL'}")
    conn.execute(f"PRAGMA cache_size = {-262_144 if on else -2000}")


def reset_sync(conn: sqlite3.Connection, encoding: str) -> None:
    """Drop and recreate every table, checkpoint 0 (what ``rebuild`` starts from)."""
    tenants.drop_sync(conn)
    conn.executescript(DROP + SCHEMA)
    conn.execute(UPSERT_CHECKPOINT, (0, encoding))
