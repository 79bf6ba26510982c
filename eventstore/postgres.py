"""The PostgreSQL recorder (asyncpg): the SQLite contract on a server, for more than one machine.

Everything lives in one schema (``ctxlog`` by default). Writers from every process serialize
on one advisory lock per schema, the counterpart of SQLite's BEGIN IMMEDIATE; readers use
the rest of the pool, and a page of the log is read in one REPEATABLE READ snapshot.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import re
from collections.abc import AsyncIterator, Callable, Iterator

import asyncpg
from msgspec.structs import astuple

from . import keystore
from .batch import Head, plan_batch
from .chain import GENESIS
from .continuity import Continuity
from .errors import (
    EventStoreError,
    SchemaTooNew,
    StoreClosed,
    StoreUnavailable,
)
from .recorder import (
    AppendOutcome,
    LogFilter,
    LogPage,
    PendingAppend,
    Recorder,
    StoredEvent,
    StreamInfo,
    ids_to_look_up,
    keys_to_check,
    prefix_range,
)

SCHEMA_VERSION = 1
"""Kept in ``{schema}.schema_version``; a schema with a higher number is refused."""

# Every statement names its tables as {schema}.table: the schema, validated and quoted once in
# the constructor, is the only thing ever formatted into SQL. Values are always $n parameters.
DDL = """
CREATE SCHEMA IF NOT EXISTS {schema};
-- Same columns and meaning as SQLite. (stream_id, version) is unique, so optimistic
-- concurrency is enforced by the table itself; positions are assigned by plan_batch.
CREATE TABLE IF NOT EXISTS {schema}.events (
    position    BIGINT  PRIMARY KEY,
    stream_id   TEXT    NOT NULL,
    version     INTEGER NOT NULL,
    event_id    TEXT    NOT NULL UNIQUE,
    type        TEXT    NOT NULL,
    data        BYTEA   NOT NULL,
    metadata    BYTEA   NOT NULL,
    tenant      TEXT,
    actor       TEXT,
    recorded_at BIGINT  NOT NULL,
    hash        BYTEA   NOT NULL,
    UNIQUE (stream_id, version)
);
-- One entry per stream (its first event): listing streams never scans the log.
CREATE INDEX IF NOT EXISTS events_stream_starts ON {schema}.events (position) WHERE version = 1;
CREATE INDEX IF NOT EXISTS events_tenant_stream_starts
    ON {schema}.events (tenant, position) WHERE version = 1;
-- The log is append-only; the hash chain catches whoever disables these triggers first.
CREATE OR REPLACE FUNCTION {schema}.events_immutable() RETURNS trigger
    LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'events are immutable'; END $$;
CREATE OR REPLACE TRIGGER events_no_update BEFORE UPDATE ON {schema}.events
    FOR EACH ROW EXECUTE FUNCTION {schema}.events_immutable();
CREATE OR REPLACE TRIGGER events_no_delete BEFORE DELETE ON {schema}.events
    FOR EACH ROW EXECUTE FUNCTION {schema}.events_immutable();
CREATE OR REPLACE TRIGGER events_no_truncate BEFORE TRUNCATE ON {schema}.events
    FOR EACH STATEMENT EXECUTE FUNCTION {schema}.events_immutable();
CREATE TABLE IF NOT EXISTS {schema}.schema_version (
    only_row BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (only_row),
    version  INTEGER NOT NULL
);
"""
SCHEMA_VERSION_TABLE = "SELECT to_regclass(format('%I.schema_version', $1::text)) IS NOT NULL"
SELECT_SCHEMA_VERSION = "SELECT version FROM {schema}.schema_version"
SET_SCHEMA_VERSION = (
    "INSERT INTO {schema}.schema_version (version) VALUES ($1)"
    " ON CONFLICT (only_row) DO UPDATE SET version = excluded.version"
)
DROP_SCHEMA = "DROP SCHEMA IF EXISTS {schema} CASCADE"

# Held until COMMIT by every write transaction (and by schema creation) on this schema.
LOCK_WRITES = "SELECT pg_advisory_xact_lock($1)"
# Held by the session that took it until the session ends (a duty's leader: ``lead``).
TRY_LEAD = "SELECT pg_try_advisory_lock($1)"

COLUMNS = (
    "position, stream_id, version, event_id, type, data, metadata, tenant, actor, recorded_at, hash"
)
# One round trip for the whole batch: the rows go in as one array per column.
INSERT = (
    f"INSERT INTO {{schema}}.events ({COLUMNS}) SELECT * FROM unnest($1::bigint[], $2::text[],"
    " $3::integer[], $4::text[], $5::text[], $6::bytea[], $7::bytea[], $8::text[], $9::text[],"
    " $10::bigint[], $11::bytea[])"
)
# The same insert, then a notification carrying the new head, in one round trip: a data-
# modifying CTE runs whether or not the outer query reads it, and PostgreSQL delivers the
# notification at COMMIT (never for a rollback), to every session listening on the channel.
INSERT_NOTIFY = "WITH inserted AS (" + INSERT + ") SELECT pg_notify($12, $13)"
SELECT_HEAD = (
    "SELECT position, hash, recorded_at FROM {schema}.events ORDER BY position DESC LIMIT 1"
)
SELECT_BY_IDS = f"SELECT {COLUMNS} FROM {{schema}}.events WHERE event_id = ANY($1::text[])"
# Each stream's version is one backward probe of the (stream_id, version) index.
SELECT_STREAM_VERSIONS = (
    "SELECT s.stream_id, (SELECT max(version) FROM {schema}.events e"
    " WHERE e.stream_id = s.stream_id) FROM unnest($1::text[]) AS s (stream_id)"
)
SELECT_STREAM_VERSION = "SELECT max(version) FROM {schema}.events WHERE stream_id = $1"
# A range (recorder.prefix_range) of events_stream_ids, in byte order: collation "C" compares
# UTF-8 bytes, as SQLite's BINARY does. The look-up reads only the ids with the prefix (it
# scanned every stream's first event before); under the database's own collation a range
# need not hold them alone.
SELECT_STREAMS_STARTING = (
    "SELECT stream_id FROM {schema}.events WHERE version = 1"
    ' AND stream_id COLLATE "C" >= $1 AND stream_id COLLATE "C" < $2'
    ' ORDER BY stream_id COLLATE "C" LIMIT $3'
)
# Added beside schema version 1 (older readers ignore it), so created on every open: the
# first open of an existing log after the upgrade builds it (one pass over the log).
STREAM_IDS_INDEX = (
    "CREATE INDEX IF NOT EXISTS events_stream_ids"
    ' ON {schema}.events (stream_id COLLATE "C") WHERE version = 1'
)
SELECT_STREAM_FORWARD = (
    f"SELECT {COLUMNS} FROM {{schema}}.events WHERE stream_id = $1 AND version >= $2::bigint"
    " ORDER BY version LIMIT $3"
)
SELECT_STREAM_BACKWARD = (
    f"SELECT {COLUMNS} FROM {{schema}}.events WHERE stream_id = $1 AND version <= $2::bigint"
    " ORDER BY version DESC LIMIT $3"
)
# The same bisections as SQLite's, run server-side in one round trip: each step of the
# recursive query is one primary-key probe at the midpoint, O(log n) in all. They rely on
# positions (and a stream's versions) being gap-free and recorded_at never decreasing.
# POSITION_BEFORE: the last position in 1..$2 recorded before $1 (0 for none).
POSITION_BEFORE = """
WITH RECURSIVE probe (lo, hi) AS (
    SELECT 0::bigint, $2::bigint
    UNION ALL
    SELECT CASE WHEN e.recorded_at < $1 THEN e.position ELSE probe.lo END,
           CASE WHEN e.recorded_at < $1 THEN probe.hi ELSE e.position - 1 END
    FROM probe JOIN {schema}.events e ON e.position = (probe.lo + probe.hi + 1) / 2
    WHERE probe.lo < probe.hi
)
SELECT lo FROM probe WHERE lo = hi
"""
# STREAM_VERSION_AT: the last version of stream $1 recorded at or before $2 (0 for none).
STREAM_VERSION_AT = """
WITH RECURSIVE probe (lo, hi) AS (
    SELECT 0, coalesce(max(version), 0) FROM {schema}.events WHERE stream_id = $1
    UNION ALL
    SELECT CASE WHEN e.recorded_at <= $2 THEN e.version ELSE probe.lo END,
           CASE WHEN e.recorded_at <= $2 THEN probe.hi ELSE e.version - 1 END
    FROM probe JOIN {schema}.events e
        ON e.stream_id = $1 AND e.version = (probe.lo + probe.hi + 1) / 2
    WHERE probe.lo < probe.hi
)
SELECT lo FROM probe WHERE lo = hi
"""
SELECT_ALL = f"SELECT {COLUMNS} FROM {{schema}}.events WHERE position > $1 AND position <= $2"
# Each filter takes the next parameter number; only "$n" is formatted in, never a value.
FILTER_TYPES = " AND type = ANY(${n}::text[])"
FILTER_STREAM = " AND stream_id = ${n}"
FILTER_TENANT = " AND tenant = ${n}"
FILTER_ACTOR = " AND actor = ${n}"
ORDER_BY_POSITION = " ORDER BY position LIMIT ${n}"
SELECT_STREAMS = (
    "SELECT stream_id, position, tenant, recorded_at FROM {schema}.events WHERE version = 1"
)
SELECT_TENANT_STREAMS = (
    "SELECT stream_id, position, tenant, recorded_at FROM {schema}.events"
    " WHERE version = 1 AND tenant = $1"
)
# The tables (with their indexes and TOAST) of the schema the statement ends with: the log's
# ($1), or the shared read model's (current_schema() on its connections).
SCHEMA_BYTES_OF = (
    "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0)::bigint FROM pg_class c"
    " JOIN pg_namespace n ON n.oid = c.relnamespace"
    " WHERE c.relkind IN ('r', 'p', 'm') AND n.nspname = "
)
SCHEMA_BYTES = SCHEMA_BYTES_OF + "$1"
SELECT_ANY_TENANT = (
    "SELECT EXISTS (SELECT 1 FROM {schema}.events WHERE version = 1 AND tenant IS NOT NULL)"
)

MISSED = 2**62
"""The position ``on_head`` is given when notifications may have been missed: past any head,
so every follower reads the log."""
RECONNECT_CAP = 5.0
"""Seconds at most between attempts to get the listening connection back."""

log = logging.getLogger("ctxlog.postgres")

# Lower case only, so that an unquoted name in psql (or a test) means the same schema.
_SCHEMA_NAME = re.compile(r"(?!pg_)[a-z_][a-z0-9_]{0,62}")


def _key(name: str) -> int:
    """A signed 64-bit advisory lock key for ``name``: every process computes the same one."""
    digest = hashlib.blake2b(name.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def quote_identifier(name: str) -> str:
    """``name`` as a double-quoted SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


class PostgresRecorder(Recorder):
    """The log in one schema of a PostgreSQL database, through an asyncpg pool."""

    def __init__(
        self,
        dsn: str,
        *,
        schema: str = "ctxlog",
        drop_schema_on_close: bool = False,
        pool_size: int = 4,
        lock_timeout_ms: int = 5000,
    ) -> None:
        if not _SCHEMA_NAME.fullmatch(schema):
            raise ValueError(
                f"invalid schema name {schema!r}: 1-63 characters of a-z 0-9 _,"
                " not starting with a digit or pg_"
            )
        if pool_size < 1:
            raise ValueError("pool_size must be at least 1")
        self.schema = schema
        self.drop_schema_on_close = drop_schema_on_close
        self.pool_size = pool_size
        self.lock_timeout_ms = lock_timeout_ms
        self._dsn = dsn
        self.dsn = dsn
        """Where the database is (the shared read model connects there too)."""
        self._quoted = quote_identifier(schema)
        # Every process writing to this schema computes the same key; other schemas (and,
        # but for a 2**-64 chance, other applications' advisory locks) do not contend.
        digest = hashlib.blake2b(f"ctxlog events {schema}".encode(), digest_size=8).digest()
        self._lock_key = _key(f"ctxlog events {schema}")
        # Channel names are identifiers (63 bytes at most); the schema's digest always fits.
        self.channel = f"ctxlog_{digest.hex()}"
        """Where every commit on this schema is announced, with its last position."""
        self._pool: asyncpg.Pool | None = None
        self._closed = False
        self._on_head: Callable[[int], None] | None = None
        self._listener: asyncpg.Connection | None = None
        self._reconnecting: asyncio.Task[None] | None = None
        self._leading: set[int] = set()
        """The duties' keys this process holds, on its listening connection."""
        self._asking = asyncio.Lock()
        """One query at a time on the listening connection."""

    def _sql(self, template: str) -> str:
        return template.format(schema=self._quoted)

    async def open(self) -> None:
        """Open the pool, then create the schema when missing or refuse a newer one."""
        self._closed = False
        with self._translated():
            pool = await asyncpg.create_pool(
                self._dsn,
                min_size=1,
                max_size=self.pool_size,
                # lock_timeout is SQLite's busy_timeout: a writer that waits longer for the
                # write lock fails with StoreUnavailable instead of hanging.
                server_settings={
                    "application_name": "ctxlog",
                    "lock_timeout": str(int(self.lock_timeout_ms)),
                },
            )
            try:
                async with pool.acquire() as conn:
                    await self._init_schema(conn)
            except BaseException:
                await pool.close()
                raise
        self._pool = pool

    async def _init_schema(self, conn: asyncpg.pool.PoolConnectionProxy) -> None:
        async with conn.transaction():
            # Two processes opening a fresh database at once must not both run the DDL.
            await conn.execute(LOCK_WRITES, self._lock_key)
            found = 0
            if await conn.fetchval(SCHEMA_VERSION_TABLE, self.schema):
                found = await conn.fetchval(self._sql(SELECT_SCHEMA_VERSION)) or 0
            if found > SCHEMA_VERSION:
                raise SchemaTooNew(found, SCHEMA_VERSION)
            if found < SCHEMA_VERSION:
                await conn.execute(self._sql(DDL))
                await conn.execute(self._sql(SET_SCHEMA_VERSION), SCHEMA_VERSION)
            # Added beside schema version 1 (older readers ignore them), so created on every
            # open.
            await conn.execute(self._sql(keystore.POSTGRES_SCHEMA))
            await conn.execute(self._sql(STREAM_IDS_INDEX))

    async def listen(self, on_head: Callable[[int], None]) -> bool:
        """LISTEN on the schema's channel on a connection of its own (outside the pool, which
        would hand it to a query); when that connection is lost, connect again and call
        ``on_head(MISSED)``, as notifications sent meanwhile are gone."""
        self._on_head = on_head
        with self._translated():
            await self._connect_listener()
        return True

    async def _connect_listener(self) -> None:
        conn = await asyncpg.connect(
            self._dsn, server_settings={"application_name": "ctxlog-listen"}
        )
        try:
            await conn.add_listener(self.channel, self._notified)
        except BaseException:
            await conn.close()
            raise
        conn.add_termination_listener(self._lost)
        self._listener = conn

    def _notified(
        self,
        conn: asyncpg.Connection | asyncpg.pool.PoolConnectionProxy,
        pid: int,
        channel: str,
        payload: object,
    ) -> None:
        del conn, pid, channel
        if self._on_head is not None and isinstance(payload, str) and payload.isdigit():
            self._on_head(int(payload))

    async def lead(self, duty: str) -> bool:
        """A session-level advisory lock per duty, taken on the listening connection: it is
        released when that session ends (the process dies, its connection is cut, it
        closes), and the next call of another process takes it. False while not listening.

        Asked of the server at every call, never remembered: a session the server has
        already ended (and whose lock another node took) may not have been noticed here
        yet, and the query is what notices it. Taking a lock the session holds again only
        counts it once more, and the session's end releases every count."""
        key = _key(f"ctxlog lead {self.schema} {duty}")
        async with self._asking:
            conn = self._listener
            if conn is None:
                return False
            try:
                with self._translated():
                    held = bool(await conn.fetchval(TRY_LEAD, key))
            except (StoreUnavailable, asyncpg.InterfaceError, asyncpg.InternalClientError):
                # The connection is gone, so is the lock (``_lost`` reconnects). A session the
                # server ended can also leave asyncpg's protocol mid-message until it notices:
                # that refuses the query with a client error rather than a connection error.
                held = False
            if held and conn is self._listener:
                self._leading.add(key)
            else:
                self._leading.discard(key)
        return key in self._leading

    def _lost(self, conn: object) -> None:
        del conn
        if self._leading and not self._closed:
            log.warning("lost the connection that held this node's duties; they are free")
        self._leading.clear()  # the session, and its advisory locks, are gone
        self._listener = None
        if not self._closed and self._reconnecting is None:
            self._reconnecting = asyncio.get_running_loop().create_task(
                self._reconnect(), name="ctxlog-listen-reconnect"
            )

    async def _reconnect(self) -> None:
        delay = 0.05
        log.warning("lost the connection that listens for commits; reconnecting")
        try:
            while not self._closed:
                try:
                    await self._connect_listener()
                except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError):
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, RECONNECT_CAP)
                    continue
                log.warning("listening for commits again")
                if self._on_head is not None:
                    self._on_head(MISSED)
                return
        finally:
            self._reconnecting = None

    async def _stop_listening(self) -> None:
        task, self._reconnecting = self._reconnecting, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        conn, self._listener = self._listener, None
        self._leading.clear()  # closing the session releases its advisory locks
        if conn is not None:
            with contextlib.suppress(asyncpg.InterfaceError, OSError, TimeoutError):
                await conn.close(timeout=5)

    async def close(self) -> None:
        """Stop listening, drop the schema if asked to (tests), then close the pool."""
        self._closed = True
        await self._stop_listening()
        pool = self._pool
        if pool is None:
            return
        try:
            if self.drop_schema_on_close:
                with self._translated():
                    async with pool.acquire() as conn:
                        await conn.execute(self._sql(DROP_SCHEMA))
        finally:
            self._pool, self._closed = None, True
            with self._translated():
                await pool.close()

    @contextlib.asynccontextmanager
    async def _connection(self) -> AsyncIterator[asyncpg.pool.PoolConnectionProxy]:
        if self._pool is None:
            raise StoreClosed("the store is closed")
        with self._translated():
            async with self._pool.acquire() as conn:
                yield conn

    @contextlib.contextmanager
    def _translated(self) -> Iterator[None]:
        """The one place where asyncpg's (and the network's) errors become the store's."""
        try:
            yield
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError) as e:
            if self._closed:  # closed while the operation was in flight
                raise StoreClosed("the store is closed") from e
            raise StoreUnavailable(f"database error: {e}") from e

    # -- writing ----------------------------------------------------------------------------

    async def commit(
        self, batch: list[PendingAppend], now_us: int
    ) -> list[AppendOutcome | EventStoreError]:
        """Plan and insert the batch in one transaction, holding the schema's write lock."""
        async with self._connection() as conn, conn.transaction():
            # The counterpart of SQLite's BEGIN IMMEDIATE: one writer per schema at a time,
            # across processes. Positions are head + 1, so without it two writers would take
            # the same position; and because the lock is released only after the commit is
            # visible, rows become visible in position order. That is what subscribers rely
            # on: once position p is visible, so is everything before it, and a reader that
            # moved its cursor to p can never miss a row committed below p later (which a
            # sequence, whose numbers commit out of order, would allow).
            await conn.execute(LOCK_WRITES, self._lock_key)
            # READ COMMITTED (the default, not REPEATABLE READ): each statement from here on
            # takes a fresh snapshot, so it sees everything committed before the lock was ours.
            row = await conn.fetchrow(self._sql(SELECT_HEAD))
            head = Head(*row) if row else Head(0, GENESIS, 0)
            ids = ids_to_look_up(batch)
            stored = await conn.fetch(self._sql(SELECT_BY_IDS), ids) if ids else []
            stored_by_id = {row["event_id"]: StoredEvent(*row) for row in stored}
            # plan_batch asks for versions synchronously, so every stream of the batch is
            # read up front, in one query.
            streams = list(dict.fromkeys(append.stream_id for append in batch))
            found = await conn.fetch(self._sql(SELECT_STREAM_VERSIONS), streams)
            versions = {stream_id: version or 0 for stream_id, version in found}
            sealing = keys_to_check(batch)
            gone: set[str] = set()
            if sealing:
                found = await conn.fetch(self._sql(keystore.POSTGRES_SELECT_IDS), sealing)
                gone = set(sealing) - {row[0] for row in found}
            rows, outcomes = plan_batch(
                batch, now_us, head, stored_by_id, versions.__getitem__, gone
            )
            if rows:
                columns = [list(column) for column in zip(*map(astuple, rows), strict=True)]
                head_now = str(rows[-1].position)
                await conn.execute(self._sql(INSERT_NOTIFY), *columns, self.channel, head_now)
        return outcomes

    async def import_rows(self, rows: list[StoredEvent]) -> None:
        """Check and insert the rows as given in one transaction, holding the write lock."""
        async with self._connection() as conn, conn.transaction():
            await conn.execute(LOCK_WRITES, self._lock_key)
            head = await conn.fetchrow(self._sql(SELECT_HEAD))
            end = Continuity(*head) if head else Continuity()
            ids = [row.event_id for row in rows]
            stored = {row["event_id"] for row in await conn.fetch(self._sql(SELECT_BY_IDS), ids)}
            streams = list(dict.fromkeys(row.stream_id for row in rows))
            found = await conn.fetch(self._sql(SELECT_STREAM_VERSIONS), streams)
            versions = {stream_id: version or 0 for stream_id, version in found}
            end.check(rows, stored, versions.__getitem__)
            if rows:
                columns = [list(column) for column in zip(*map(astuple, rows), strict=True)]
                await conn.execute(self._sql(INSERT), *columns)

    async def subject_key(
        self, tenant: str, subject: str, candidate: tuple[str, bytes], now_us: int
    ) -> tuple[str, bytes]:
        """Insert-or-read; concurrent callers all get the key that won."""
        async with self._connection() as conn:
            await conn.execute(
                self._sql(keystore.POSTGRES_INSERT), candidate[0], tenant, subject,
                candidate[1], now_us,
            )  # fmt: skip
            row = await conn.fetchrow(self._sql(keystore.POSTGRES_SELECT), tenant, subject)
        assert row is not None  # the insert above, or the concurrent one that beat it, made it
        return row[0], bytes(row[1])

    async def keys_by_id(self, key_ids: list[str]) -> dict[str, bytes]:
        """One query for all ids."""
        async with self._connection() as conn:
            rows = await conn.fetch(self._sql(keystore.POSTGRES_SELECT_IDS), key_ids)
        return {row[0]: bytes(row[1]) for row in rows}

    async def destroy_subject_key(self, tenant: str, subject: str) -> list[str]:
        """Delete, then VACUUM the table so the dead tuple's space is reclaimed (PostgreSQL
        gives no guarantee that the freed bytes are overwritten; see the README)."""
        async with self._connection() as conn:
            # Under the write lock: an append checks that its keys exist in its own write
            # transaction, so none commits sealed with a key destroyed before it.
            async with conn.transaction():
                await conn.execute(LOCK_WRITES, self._lock_key)
                rows = await conn.fetch(self._sql(keystore.POSTGRES_DELETE), tenant, subject)
            if rows:
                await conn.execute(self._sql(keystore.POSTGRES_VACUUM))
        return [row[0] for row in rows]

    async def read_keys(self, after: str, limit: int) -> list[keystore.SubjectKey]:
        """One ranged query on the key id index."""
        async with self._connection() as conn:
            rows = await conn.fetch(self._sql(keystore.POSTGRES_SELECT_PAGE), after, limit)
        return [keystore.SubjectKey(r[0], r[1], r[2], bytes(r[3]), r[4]) for r in rows]

    async def import_keys(self, keys: list[keystore.SubjectKey]) -> None:
        """Insert the keys as given in one transaction."""
        async with self._connection() as conn, conn.transaction():
            try:
                await conn.executemany(self._sql(keystore.POSTGRES_RESTORE), map(astuple, keys))
            except asyncpg.UniqueViolationError as e:
                raise keystore.KeyConflict(f"a subject key is already stored: {e}") from e

    # -- reading ----------------------------------------------------------------------------

    async def read_stream(
        self, stream_id: str, from_version: int | None, backward: bool, limit: int
    ) -> list[StoredEvent]:
        """One ranged query on the (stream_id, version) index."""
        if backward:
            sql, start = SELECT_STREAM_BACKWARD, (2**62 if from_version is None else from_version)
        else:
            sql, start = SELECT_STREAM_FORWARD, (from_version or 1)
        async with self._connection() as conn:
            rows = await conn.fetch(self._sql(sql), stream_id, start, limit)
        return [StoredEvent(*row) for row in rows]

    async def read_all(self, after: int, limit: int, filter: LogFilter) -> LogPage:
        """Head and page read in one snapshot, so ``through`` is exact."""
        async with (
            self._connection() as conn,
            conn.transaction(isolation="repeatable_read", readonly=True),
        ):
            row = await conn.fetchrow(self._sql(SELECT_HEAD))
            head = row["position"] if row else 0
            if filter.since is not None:
                before = await conn.fetchval(self._sql(POSITION_BEFORE), filter.since, head)
                after = max(after, before or 0)
            if filter.until is not None:
                before = await conn.fetchval(self._sql(POSITION_BEFORE), filter.until, head)
                head = min(head, head if before is None else before)
            sql, params = self._sql(SELECT_ALL), [after, head]
            for clause, value in (
                (FILTER_TYPES, None if filter.types is None else list(filter.types)),
                (FILTER_STREAM, filter.stream_id),
                (FILTER_TENANT, filter.tenant),
                (FILTER_ACTOR, filter.actor),
            ):
                if value is not None:
                    params.append(value)
                    sql += clause.format(n=len(params))
            params.append(limit)
            sql += ORDER_BY_POSITION.format(n=len(params))
            events = [StoredEvent(*row) for row in await conn.fetch(sql, *params)]
        return LogPage(events, events[-1].position if len(events) == limit else max(head, after))

    async def stream_version(self, stream_id: str) -> int:
        """max(version) on the unique index."""
        async with self._connection() as conn:
            version = await conn.fetchval(self._sql(SELECT_STREAM_VERSION), stream_id)
        return version or 0

    async def streams_starting_with(self, prefix: str, limit: int) -> list[str]:
        """The stream starts whose id starts with ``prefix``."""
        async with self._connection() as conn:
            rows = await conn.fetch(
                self._sql(SELECT_STREAMS_STARTING), *prefix_range(prefix), limit
            )
        return [row[0] for row in rows]

    async def stream_version_at(self, stream_id: str, at_us: int) -> int:
        """Bisection over the stream's gap-free versions: O(log n) probes, one round trip."""
        async with self._connection() as conn:
            version = await conn.fetchval(self._sql(STREAM_VERSION_AT), stream_id, at_us)
        return version or 0

    async def head(self) -> tuple[int, bytes]:
        """The last row's position and hash."""
        async with self._connection() as conn:
            row = await conn.fetchrow(self._sql(SELECT_HEAD))
        return (row["position"], row["hash"]) if row else (0, GENESIS)

    async def stored_bytes(self) -> int | None:
        """Every table of the log's schema with its indexes and TOAST (the catalog's sizes)."""
        async with self._connection() as conn:
            return int(await conn.fetchval(SCHEMA_BYTES, self.schema))

    async def has_tenants(self) -> bool:
        """One probe of the partial index of stream starts by tenant."""
        async with self._connection() as conn:
            return bool(await conn.fetchval(self._sql(SELECT_ANY_TENANT)))

    async def list_streams(
        self, tenant: str | None, before: int | None, after: int | None, limit: int
    ) -> list[StreamInfo]:
        """A range of the partial index of stream starts."""
        params: list[str | int]
        sql, params = (SELECT_STREAMS, []) if tenant is None else (SELECT_TENANT_STREAMS, [tenant])
        if before is not None:
            params += [before, limit]
            sql += f" AND position < ${len(params) - 1} ORDER BY position DESC LIMIT ${len(params)}"
        else:
            params += [after or 0, limit]
            sql += f" AND position > ${len(params) - 1} ORDER BY position LIMIT ${len(params)}"
        async with self._connection() as conn:
            rows = await conn.fetch(self._sql(sql), *params)
        return [StreamInfo(*row) for row in rows]
