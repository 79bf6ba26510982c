"""Audit support: the audit query's filter, states folded afresh from the log, and the check
that the read model equals a fresh fold for every context.

Nothing here writes. The read model is opened read-only, as a separate connection beside a
server that may be running: its projector keeps writing, so every context is compared as of
the checkpoint read in the same read transaction as the context's row.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, Self, TypeVar
from urllib.parse import quote

import msgspec

from eventstore import (
    EventStore,
    LogFilter,
    RecordedEvent,
    to_datetime,
    to_micros,
)

from .context import fold
from .errors import ContextNotFound, InvalidVersion
from .history import not_found_at
from .lineage import Pending, needs, resolve
from .readmodel import Model
from .reads import context_sync, state_sync
from .retry import transient
from .state import ContextState, TokenCounting
from .tables import SCHEMA_VERSION, SELECT_CHECKPOINT

T = TypeVar("T")
Progress = Callable[[int, int], None]

SELECT_CONTEXT_IDS = "SELECT context_id FROM contexts"
COUNT_DELETED = "SELECT count(*) FROM contexts WHERE deleted = 1"


def audit_filter(
    *,
    types: str | Sequence[str] | None = None,
    context_id: str | None = None,
    tenant: str | None = None,
    actor: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> LogFilter:
    """The filter of the audit query (``GET /api/v1/events`` and ``ctxlog audit``).

    ``types`` are event type tags, a sequence or one comma-separated string; ``since`` is
    inclusive and ``until`` exclusive; None (or empty) means 'any'.
    """
    if isinstance(types, str):
        types = types.split(",")
    wanted = tuple(t.strip() for t in types or () if t.strip())
    return LogFilter(
        types=wanted or None,
        stream_id=context_id,
        tenant=tenant,
        actor=actor,
        since=None if since is None else to_micros(since),
        until=None if until is None else to_micros(until),
    )


class Refold:
    """Context states folded afresh from the log: no read model, no snapshots.

    A fork's parent is folded the same way (and remembered, since forks of one parent share
    it), its ancestors first, by ``lineage.resolve`` (no recursion, whatever the depth).
    O(events of the context and its ancestors).
    """

    def __init__(self, store: EventStore, counter: TokenCounting) -> None:
        self.store = store
        self.counter = counter
        self._parents: dict[tuple[str, int], ContextState] = {}

    async def events(self, context_id: str, version: int | None = None) -> list[RecordedEvent]:
        """The context's events through ``version`` (default: all); ContextNotFound if it
        has none, InvalidVersion if it has not reached ``version``."""
        if version is not None and version < 1:
            raise InvalidVersion(context_id, version, await self.store.stream_version(context_id))
        events = [e async for e in self.store.iter_stream(context_id, 1, version)]
        if not events:
            raise ContextNotFound(context_id)
        if version is not None and len(events) < version:
            raise InvalidVersion(context_id, version, len(events))
        return events

    async def state(self, context_id: str, version: int | None = None) -> ContextState:
        """The context at ``version`` (default: its latest)."""
        return await self.fold(await self.events(context_id, version))

    async def state_at_time(self, context_id: str, at: datetime) -> ContextState:
        """The context as of ``at``; ContextNotYetCreated if it did not exist yet."""
        version = await self.store.stream_version_at(context_id, at)
        if version == 0:
            raise await not_found_at(self.store, context_id, at)
        return await self.state(context_id, version)

    async def fold(self, events: Sequence[RecordedEvent]) -> ContextState:
        """The state after ``events`` (one stream from version 1, consecutive)."""
        for key in sorted(needs(events, 1)):
            await resolve(key, self._load, self.counter, self._parents)
        parents = self._parents
        return fold(events, counter=self.counter, resolve=lambda c, v: parents[c, v])

    async def _load(self, context_id: str, version: int) -> Pending:
        events = await self.events(context_id, version)
        return Pending(None, events, needs(events, 1))


class ReadOnlyDatabase:
    """A SQLite file opened for reading only, never created; calls run in a worker thread."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    @classmethod
    async def open(cls, path: str) -> Self:
        """Open ``path``; FileNotFoundError if there is no such file."""

        def connect() -> sqlite3.Connection:
            if not Path(path).is_file():
                raise FileNotFoundError(path)
            uri = f"file:{quote(path)}?mode=rw"  # rw, not ro: WAL readers need the -shm file
            conn = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA busy_timeout = 5000")
            conn.execute("PRAGMA query_only = 1")
            return conn

        return cls(await asyncio.to_thread(connect))

    async def read(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(connection, *args)`` in one read transaction (one consistent snapshot)."""

        def run() -> T:
            self._conn.execute("BEGIN")
            try:
                return fn(self._conn, *args)
            finally:
                self._conn.execute("COMMIT")

        return await asyncio.to_thread(run)

    async def close(self) -> None:
        """Close the connection."""
        await asyncio.to_thread(self._conn.close)


class Mismatch(msgspec.Struct, frozen=True):
    """A context whose read-model row differs from the fold of its events."""

    context_id: str
    version: int
    reason: str


class ReadModelReport(msgspec.Struct, frozen=True, kw_only=True):
    """How the read model compares with a fresh fold of the log.

    ``status``: ``ok``; ``differs`` (see ``mismatches``, the first ones found, and
    ``differing``, how many in all); ``damaged`` (the file cannot be read as a read model:
    ``note`` says why; a server sets it aside and rebuilds it at start, as does
    ``ctxlog rebuild``); ``absent`` (no read model yet: it is built when the database is
    served or rebuilt); ``stale`` (another schema, encoding or log: a server drops and
    rebuilds it at start, ``note`` says why).
    """

    status: str
    path: str
    checkpoint: int = 0
    contexts: int = 0
    differing: int = 0
    mismatches: list[Mismatch] = []
    note: str | None = None

    @property
    def ok(self) -> bool:
        """False only when the read model differs from the fold or is damaged."""
        return self.status not in ("differs", "damaged")


def _header_sync(conn: sqlite3.Connection) -> tuple[int, tuple[int, str] | None]:
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version != SCHEMA_VERSION:
        return version, None
    return version, conn.execute(SELECT_CHECKPOINT).fetchone()


def _context_ids_sync(conn: sqlite3.Connection) -> list[str]:
    return [row[0] for row in conn.execute(SELECT_CONTEXT_IDS)]


def _row_at_checkpoint_sync(
    conn: sqlite3.Connection, context_id: str
) -> tuple[int, ContextState | None]:
    row = conn.execute(SELECT_CHECKPOINT).fetchone()
    return (0 if row is None else int(row[0])), state_sync(conn, context_id, True)


async def verify_readmodel(
    store: EventStore,
    path: str | Model,
    counter: TokenCounting,
    *,
    progress: Progress | None = None,
    keep: int = 20,
) -> ReadModelReport:
    """Compare every context of the read model at ``path`` (a SQLite file, or an open read
    model: the shared one in PostgreSQL) with a fresh fold of its events (as of the read
    model's checkpoint), and every context of the log up to it."""
    if not isinstance(path, str):  # open already, and not ours to close
        version, checkpoint = await path.read(_header_sync)
        stale = _stale(version, checkpoint, counter.encoding, await store.head())
        if stale is not None:
            return ReadModelReport(status="stale", path=path.path, note=stale)
        return await _compare(store, path, path.path, counter, progress, keep)
    try:
        db = await ReadOnlyDatabase.open(path)
    except FileNotFoundError:
        return ReadModelReport(status="absent", path=path)
    try:
        version, checkpoint = await db.read(_header_sync)
        stale = _stale(version, checkpoint, counter.encoding, await store.head())
        if stale is not None:
            return ReadModelReport(status="stale", path=path, note=stale)
        return await _compare(store, db, path, counter, progress, keep)
    except sqlite3.DatabaseError as e:
        if transient(e):
            raise
        return ReadModelReport(status="damaged", path=path, note=str(e) or type(e).__name__)
    finally:
        await db.close()


def _stale(version: int, checkpoint: Any, encoding: str, head: int) -> str | None:
    if version != SCHEMA_VERSION:
        return f"read model schema {version}, this ctxlog writes {SCHEMA_VERSION}"
    if checkpoint is None:
        return "the read model has no checkpoint yet"
    if checkpoint[1] != encoding:
        return f"token counts in {checkpoint[1]}, not {encoding}"
    if checkpoint[0] > head:
        return f"checkpoint {checkpoint[0]} is past the head of the log ({head}): another log's"
    return None


async def _compare(
    store: EventStore,
    db: ReadOnlyDatabase | Model,
    path: str,
    counter: TokenCounting,
    progress: Progress | None,
    keep: int,
) -> ReadModelReport:
    _, header = await db.read(_header_sync)
    assert header is not None  # _stale found a checkpoint
    start = header[0]
    ids = dict.fromkeys(await db.read(_context_ids_sync))
    after = 0
    while True:  # every stream the log had begun by the checkpoint
        streams = await store.list_streams(after=after, limit=1000)
        ids.update((s.stream_id, None) for s in streams if s.position <= start)
        if len(streams) < 1000 or streams[-1].position > start:
            break
        after = streams[-1].position
    refold = Refold(store, counter)
    mismatches: list[Mismatch] = []
    differing = 0
    checkpoint = start
    for done, context_id in enumerate(ids, start=1):
        checkpoint, stored = await db.read(_row_at_checkpoint_sync, context_id)
        problem = await _difference(refold, context_id, checkpoint, stored)
        if problem is not None:
            differing += 1
            if len(mismatches) < keep:
                mismatches.append(problem)
        if progress is not None:
            progress(done, len(ids))
    return ReadModelReport(
        status="differs" if differing else "ok", path=path, checkpoint=checkpoint,
        contexts=len(ids), differing=differing, mismatches=mismatches,
    )  # fmt: skip


async def _difference(
    refold: Refold, context_id: str, checkpoint: int, stored: ContextState | None
) -> Mismatch | None:
    events = [e async for e in refold.store.iter_stream(context_id) if e.position <= checkpoint]
    if not events:
        if stored is None:
            return None  # begun after the checkpoint: not applied yet, rightly
        return Mismatch(context_id, stored.version, "in the read model but not in the log")
    folded = await refold.fold(events)
    if stored is None:
        return Mismatch(context_id, folded.version, "in the log but not in the read model")
    if stored == folded:
        return None
    fields = [f for f in stored.__struct_fields__ if getattr(stored, f) != getattr(folded, f)]
    return Mismatch(
        context_id, folded.version, f"differs from the fold in {', '.join(fields) or 'state'}"
    )


class ContextSize(msgspec.Struct, frozen=True, kw_only=True):
    """One of the largest contexts: its events, and (from the read model) its current size."""

    context_id: str
    tenant: str | None
    events: int
    messages: int | None = None
    tokens: int | None = None
    deleted: bool | None = None


class LogStats(msgspec.Struct, frozen=True, kw_only=True):
    """What the log holds: counts by type and tenant, its time span, the largest contexts;
    ``deleted`` comes from the read model (None without one)."""

    events: int
    contexts: int
    tenants: int
    deleted: int | None
    first_at: datetime | None
    last_at: datetime | None
    by_type: dict[str, int]
    largest: list[ContextSize]


async def log_stats(
    store: EventStore,
    readmodel: str | Model | None,
    *,
    largest: int = 10,
    progress: Progress | None = None,
    chunk: int = 10_000,
) -> LogStats:
    """Scan the log once (raw rows, nothing decoded) and count; O(events). The largest
    contexts' messages and tokens, and the deleted count, come from ``readmodel`` (a SQLite
    file, or an open read model: the shared one in PostgreSQL) when it is current."""
    head = await store.head()
    by_type: dict[str, int] = {}
    per_stream: dict[str, int] = {}
    tenant_of: dict[str, str | None] = {}
    first = last = None
    after = 0
    while after < head:
        page = await store.recorder.read_all(after, min(chunk, head - after), LogFilter())
        if not page.events:
            break
        for row in page.events:
            by_type[row.type] = by_type.get(row.type, 0) + 1
            per_stream[row.stream_id] = per_stream.get(row.stream_id, 0) + 1
            if row.version == 1:
                tenant_of[row.stream_id] = row.tenant
        first = first if first is not None else page.events[0].recorded_at
        last = page.events[-1].recorded_at
        after = page.events[-1].position
        if progress is not None:
            progress(after, head)
    top = sorted(per_stream.items(), key=lambda item: (-item[1], item[0]))[:largest]
    sizes = [ContextSize(context_id=c, tenant=tenant_of.get(c), events=n) for c, n in top]
    deleted = None
    if readmodel is not None:
        sizes, deleted = await _sizes(readmodel, sizes)
    return LogStats(
        events=after, contexts=len(per_stream), tenants=len(set(tenant_of.values())),
        deleted=deleted, first_at=_time(first), last_at=_time(last),
        by_type=dict(sorted(by_type.items(), key=lambda item: -item[1])), largest=sizes,
    )  # fmt: skip


def _time(us: int | None) -> datetime | None:
    return None if us is None else to_datetime(us)


async def _sizes(
    readmodel: str | Model, sizes: list[ContextSize]
) -> tuple[list[ContextSize], int | None]:
    if not isinstance(readmodel, str):  # open already, and not ours to close
        return await _sizes_in(readmodel, sizes)
    try:
        db = await ReadOnlyDatabase.open(readmodel)
    except FileNotFoundError:
        return sizes, None
    try:
        return await _sizes_in(db, sizes)
    except sqlite3.DatabaseError as e:
        if transient(e):
            raise
        return sizes, None  # damaged: the log's counts stand alone
    finally:
        await db.close()


async def _sizes_in(
    db: ReadOnlyDatabase | Model, sizes: list[ContextSize]
) -> tuple[list[ContextSize], int | None]:
    version, _ = await db.read(_header_sync)
    if version != SCHEMA_VERSION:
        return sizes, None
    return await db.read(_sizes_sync, sizes)


def _sizes_sync(
    conn: sqlite3.Connection, sizes: list[ContextSize]
) -> tuple[list[ContextSize], int]:
    out = []
    for size in sizes:
        row = context_sync(conn, size.context_id)
        out.append(
            size if row is None else msgspec.structs.replace(
                size, messages=row.message_count, tokens=row.total_tokens, deleted=row.deleted,
            )
        )  # fmt: skip
    return out, conn.execute(COUNT_DELETED).fetchone()[0]
