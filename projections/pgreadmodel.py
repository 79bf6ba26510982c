"""The read model in PostgreSQL, beside a PostgreSQL log, shared by every node on that log.

It has ``ReadModel``'s surface (``open``, ``read``, ``read_small``, ``write``, ``close``), so
the projector and the queries run the same functions on it (``pgconn`` runs them; the tables
are in ``pgschema``). It lives in a schema of its own, ``<log schema>_readmodel``. A node
opens it and reads its checkpoint: no replay, whatever the size of the log.

``shared``: several nodes use it at once. One of them, elected (``Projector``), applies the
log; every write transaction begins by locking the checkpoint row (``SELECT … FOR UPDATE``),
so two appliers (a failover's old and new leader for a moment) take turns, and each skips
what the other applied (``apply_sync``). The transaction that moves the checkpoint also
sends a notification on ``channel`` (delivered at COMMIT): the other nodes wake on it
(``changed``) and read the new checkpoint, with a poll as a backstop.

A rebuild (``ctxlog rebuild``, ``Projector.rebuild``) empties the tables in place (TRUNCATE
under the checkpoint lock) and replays the log, by the elected projector only: meanwhile the
other nodes see the read model start again from 0 and wait for it like any follower.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import psycopg
from psycopg.pq import TransactionStatus

from eventstore.postgres import SCHEMA_BYTES_OF

from .dialect import twin
from .errors import ProjectionError
from .pgconn import PgConnection
from .pgschema import (
    DROP,
    LOCK_CHECKPOINT,
    SCHEMA,
    SEED_CHECKPOINT,
    SELECT_VERSION,
    SET_VERSION,
    TRUNCATE,
    VERSION,
)
from .readmodel import Damaged
from .tables import SELECT_CHECKPOINT, UPSERT_CHECKPOINT

T = TypeVar("T")

log = logging.getLogger("ctxlog.readmodel")

SUFFIX = "_readmodel"
READ = "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY"
"""A read sees one snapshot, as a SQLite read transaction does: never half a batch."""

# The statements the functions say in SQLite's words that mean something else here.
twin("BEGIN IMMEDIATE", "BEGIN; " + LOCK_CHECKPOINT)
# A rebuild's bulk mode (``bulk_sync``): the writer never waits for the flush anyway.
twin("PRAGMA synchronous = OFF", "SELECT 1")
twin("PRAGMA synchronous = NORMAL", "SELECT 1")
twin("PRAGMA cache_size = -262144", "SELECT 1")
twin("PRAGMA cache_size = -2000", "SELECT 1")
twin("PRAGMA user_version", "SELECT version FROM readmodel_version WHERE id = 1")
# The checkpoint moves, and the nodes sharing the read model hear of it at COMMIT.
twin(
    UPSERT_CHECKPOINT,
    "WITH moved AS (INSERT INTO checkpoint (id, position, encoding) VALUES (1, ?, ?)"
    " ON CONFLICT (id) DO UPDATE SET position = excluded.position, encoding = excluded.encoding"
    " RETURNING position)"
    " SELECT pg_notify('ctxlog_rm_' || md5(current_schema()), position::text) FROM moved",
)


def schema_of(log_schema: str) -> str:
    """The read model's schema beside the log's ``log_schema``."""
    name = log_schema + SUFFIX
    if len(name) > 63:
        raise ValueError(f"the log's schema name {log_schema!r} leaves no room for {SUFFIX}")
    return name


def channel_of(schema: str) -> str:
    """Where the checkpoint's moves in ``schema`` are announced (as the statement names it)."""
    return "ctxlog_rm_" + hashlib.md5(schema.encode()).hexdigest()  # noqa: S324 (a name)


class PgReadModel:
    """The read model in a PostgreSQL schema: one write connection (the projector's) and
    ``readers`` read connections, each used by one call at a time on a thread of its own."""

    shared = True
    """Other nodes use it too: one elected projector applies (``Projector``)."""
    on_file = False
    """A rebuild empties the tables in place."""

    def __init__(
        self, dsn: str, schema: str, *, readers: int = 2, drop_on_close: bool = False
    ) -> None:
        self.dsn = dsn
        self.schema = schema
        self.path = f"postgresql schema {schema}"
        self.channel = channel_of(schema)
        self.damaged: Damaged | None = None
        """Never set: a damaged table is the database administrator's to repair."""
        self.drop_on_close = drop_on_close
        self._reader_count = readers
        self._encoding = ""
        self._writer: PgConnection | None = None
        self._idle: asyncio.Queue[PgConnection] = asyncio.Queue()
        self._readers: list[PgConnection] = []
        self._pool: ThreadPoolExecutor
        self._writing: ThreadPoolExecutor
        self._threads()
        self._listener: psycopg.AsyncConnection[Any] | None = None
        self._listening: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()

    def _threads(self) -> None:
        """Threads for the calls (again after ``close`` shut them down)."""
        self._pool = ThreadPoolExecutor(self._reader_count + 1, "ctxlog-readmodel")
        self._writing = ThreadPoolExecutor(1, "ctxlog-readmodel-write")
        self._shut = False

    def _connect(self, *, writer: bool = False) -> PgConnection:
        # The writer commits without waiting for the WAL flush, as SQLite's read model runs
        # without syncs: it is derived data, and a crash of the server loses a tail of whole
        # transactions, rows and checkpoint together, which the projector applies again (the
        # other nodes see the checkpoint go back and forget what they cached).
        options = f"-c search_path={self.schema}"
        if writer:
            options += " -c synchronous_commit=off"
        return PgConnection.connect(
            self.dsn, autocommit=True, application_name="ctxlog-readmodel", options=options
        )

    async def open(self, encoding: str) -> int:
        """Open (creating, or on a schema mismatch recreating) the tables; returns the
        checkpoint position (0 when empty)."""
        self._encoding = encoding
        if self._shut:  # closed before: a reopen
            self._threads()
        loop = asyncio.get_running_loop()
        try:
            self._writer = await loop.run_in_executor(self._writing, self._connect_writer)
            position = await self.write(_init_sync, self.schema, encoding)
            for _ in range(self._reader_count):
                reader = await loop.run_in_executor(self._pool, self._connect)
                self._readers.append(reader)
                self._idle.put_nowait(reader)
            await self._listen()
        except psycopg.Error as e:
            await self.close()
            raise ProjectionError(f"the read model in PostgreSQL: {e}") from e
        return position

    async def attach(self) -> bool:
        """Open connections to the read model as it is, creating, changing and emptying
        nothing (``ctxlog verify``); False if there is none (its version table is missing)."""
        if self._shut:
            self._threads()
        loop = asyncio.get_running_loop()
        self._writer = await loop.run_in_executor(self._writing, self._connect)
        reader = await loop.run_in_executor(self._pool, self._connect)
        self._readers.append(reader)
        self._idle.put_nowait(reader)
        return bool(await self.read(_exists_sync))

    async def stored_bytes(self) -> int:
        """Every table of the read model's schema with its indexes and TOAST."""
        return await self.read(_bytes_sync)

    async def _listen(self) -> None:
        conn = await psycopg.AsyncConnection.connect(
            self.dsn, autocommit=True, application_name="ctxlog-readmodel-listen"
        )
        await conn.execute(f"LISTEN {self.channel}")
        self._listener = conn
        self._listening = asyncio.create_task(self._hear(conn), name="ctxlog-readmodel-listen")

    async def _hear(self, conn: psycopg.AsyncConnection[Any]) -> None:
        """Wake ``changed`` at each notification; when the connection is lost, connect
        again (backing off up to 5 s; the poll is the backstop meanwhile)."""
        delay = 0.05
        while True:
            with contextlib.suppress(psycopg.Error, OSError):
                async for _ in conn.notifies():
                    self._changed.set()
            self._changed.set()  # what was announced meanwhile is lost: read the checkpoint
            with contextlib.suppress(psycopg.Error):
                await conn.close()
            while True:
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                try:
                    conn = await psycopg.AsyncConnection.connect(
                        self.dsn, autocommit=True, application_name="ctxlog-readmodel-listen"
                    )
                    await conn.execute(f"LISTEN {self.channel}")
                except (psycopg.Error, OSError):
                    continue
                self._listener, delay = conn, 0.05
                break

    async def changed(self, within: float) -> None:
        """Return when the checkpoint may have moved (a notification), or after ``within``
        seconds."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._changed.wait(), within)
        self._changed.clear()

    async def checkpoint(self) -> int:
        """The committed checkpoint's position."""
        return await self.read(_checkpoint_sync)

    async def reset(self, encoding: str) -> None:
        """Empty every table, checkpoint 0 (what a rebuild starts from)."""
        await self.write(_reset_sync, encoding)

    async def close(self) -> None:
        """Close every connection (and drop the schema if asked to: tests)."""
        task, self._listening = self._listening, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, psycopg.Error):
                await task
        if self._listener is not None:
            with contextlib.suppress(psycopg.Error):
                await self._listener.close()
            self._listener = None
        loop = asyncio.get_running_loop()
        writer, self._writer = self._writer, None
        if writer is not None and self.drop_on_close:
            with contextlib.suppress(psycopg.Error):
                await loop.run_in_executor(self._writing, _drop_sync, writer, self.schema)
        for conn in [*self._readers, *([writer] if writer else [])]:
            with contextlib.suppress(psycopg.Error):
                await loop.run_in_executor(self._pool, conn.close)
        self._readers.clear()
        self._idle = asyncio.Queue()
        self._pool.shutdown(wait=False)
        self._writing.shutdown(wait=False)
        self._shut = True

    async def write(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(connection, *args)`` on the write connection's thread."""
        if self._writer is None:
            raise ProjectionError("the read model is closed")
        conn = self._writer
        loop = asyncio.get_running_loop()
        fresh = await loop.run_in_executor(self._writing, self._usable, conn)
        self._writer = fresh
        return await loop.run_in_executor(self._writing, _call, fresh, fn, args)

    async def read(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(connection, *args)`` in one read transaction (one snapshot) on a reader."""
        if self._writer is None:
            raise ProjectionError("the read model is closed")
        conn = await self._idle.get()
        loop = asyncio.get_running_loop()
        try:
            conn = await loop.run_in_executor(self._pool, self._usable, conn)
            return await loop.run_in_executor(self._pool, _in_read_txn, conn, fn, args)
        finally:
            self._idle.put_nowait(conn)

    read_small = read
    """No inline reads here: every read is a round trip to the server."""

    def _connect_writer(self) -> PgConnection:
        return self._connect(writer=True)

    def _usable(self, conn: PgConnection) -> PgConnection:
        """``conn``, or a new connection if the server or the network ended it."""
        if not conn.broken and not conn.closed:
            return conn
        with contextlib.suppress(psycopg.Error):
            conn.close()
        fresh = self._connect(writer=conn is self._writer)
        if conn in self._readers:
            self._readers[self._readers.index(conn)] = fresh
        return fresh


def _call(conn: PgConnection, fn: Callable[..., T], args: tuple[Any, ...]) -> T:
    try:
        return fn(conn, *args)
    except BaseException:
        if conn.in_transaction and not conn.broken:
            with contextlib.suppress(psycopg.Error):
                conn.execute("ROLLBACK")
        raise
    finally:
        conn.end_streams()


def _in_read_txn(conn: PgConnection, fn: Callable[..., T], args: tuple[Any, ...]) -> T:
    conn.execute(READ)
    try:
        return fn(conn, *args)
    finally:
        if not conn.broken:
            failed = conn.info.transaction_status == TransactionStatus.INERROR
            conn.execute("ROLLBACK" if failed else "COMMIT")
        conn.end_streams()


def _bytes_sync(conn: PgConnection) -> int:
    return int(_one(conn.execute(SCHEMA_BYTES_OF + "current_schema()", ()))[0])


def _exists_sync(conn: PgConnection) -> bool:
    return bool(_one(conn.execute("SELECT to_regclass('readmodel_version') IS NOT NULL", ()))[0])


def _checkpoint_sync(conn: PgConnection) -> int:
    row = conn.execute(SELECT_CHECKPOINT, ()).fetchone()
    return 0 if row is None else int(row[0])


def _init_sync(conn: PgConnection, schema: str, encoding: str) -> int:
    # Nodes opening a fresh database at once: one creates, the others wait and find it.
    conn.execute("BEGIN")
    try:
        key = int.from_bytes(hashlib.blake2b(schema.encode(), digest_size=8).digest(), "big")
        conn.execute("SELECT pg_advisory_xact_lock(?)", (key - (1 << 63),))
        conn.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
        exists = conn.execute("SELECT to_regclass('readmodel_version') IS NOT NULL", ())
        found = conn.execute(SELECT_VERSION, ()).fetchone() if _one(exists)[0] else None
        if found is None or found[0] != VERSION:
            conn.execute(DROP)
        conn.execute(SCHEMA)
        conn.execute(SET_VERSION, (VERSION,))
        conn.execute(SEED_CHECKPOINT, (encoding,))
        row = _one(conn.execute(SELECT_CHECKPOINT + " FOR UPDATE", ()))
        if row[1] != encoding:
            # Counts in another encoding: start over (every node must count alike).
            log.warning("the read model counted tokens in %s: emptied for %s", row[1], encoding)
            _empty(conn, encoding)
            position = 0
        else:
            position = int(row[0])
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return position


def _one(cursor: psycopg.Cursor[Any]) -> Any:
    row = cursor.fetchone()
    assert row is not None  # a statement that always gives a row
    return row


def _empty(conn: PgConnection, encoding: str) -> None:
    conn.execute(TRUNCATE)
    conn.execute(SEED_CHECKPOINT, (encoding,))


def _reset_sync(conn: PgConnection, encoding: str) -> None:
    conn.execute("BEGIN IMMEDIATE")
    try:
        _empty(conn, encoding)
        conn.execute(UPSERT_CHECKPOINT, (0, encoding))
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def _drop_sync(conn: PgConnection, schema: str) -> None:
    conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
