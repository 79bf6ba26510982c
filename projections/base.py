"""The ground every command and query of the contexts service stands on: its parts, and
reading one's own writes (a command answers once the log has its events; what reads the read
model afterwards waits here for the projector to have applied them)."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import Callable

from eventstore import (
    CheckpointSaved,
    CheckpointWritesRecorded,
    EventBase,
    EventMetadata,
    EventStore,
    ExpectedVersion,
    Lane,
    MessageAppended,
    MessageEdited,
    SQLiteRecorder,
    SummaryAdded,
    WindowServed,
)
from eventstore.errors import DriverMissing, InvalidStreamId
from eventstore.recorder import check_stream_id
from eventstore.sealing import sealable

from . import subjects
from .acks import Acks
from .caches import AssembledCache, WindowCache
from .calls import Caller, Written
from .errors import ContextNotFound, InvalidVersion
from .history import SNAPSHOT_EVERY, History
from .readmodel import Model, ReadModel
from .reads import (
    context_sync,
    event_id_sync,
    message_info_sync,
    shown_subjects_sync,
    subjects_upto_sync,
)
from .runner import Progress, Projector
from .tables import ContextRow
from .tokens import TokenCounter
from .turns import Turns

RETRIES = 12
"""Attempts of a command that lost its version to another writer: within one node commands
on a context take turns, but nodes on one database race, and on a hot context a few lose
several times in a row (``conflict_pause``)."""


NAMESPACE = uuid.UUID("6f1c3a2e-5b8d-4c1e-9a7f-2d4e8b0c9a31")
"""Name-based event ids (UUID v5) derive from (tenant, idempotency key, index) in this space."""


def key_id(tenant: str | None, key: str, what: str) -> str:
    """The event id a command keyed ``key`` gives its event ``what``: a retry of it (same
    tenant, same key) has the same ids, so the log stores it once."""
    return str(uuid.uuid5(NAMESPACE, f"{tenant or ''}\x00{key}\x00{what}"))


def conflict_pause(attempt: int) -> float:
    """Seconds to wait before attempt ``attempt + 1`` after a version conflict: none for the
    first retries (a conflict within a node is settled by catching up), then a random,
    growing pause, so that racing nodes stop colliding in lockstep."""
    return 0.0 if attempt < 2 else random.uniform(0, 0.002 * 2 ** min(attempt, 8))


class ServiceBase:
    """The service's parts and the plumbing its commands and queries share (see
    ``service.Contexts`` for the arguments)."""

    def __init__(
        self,
        store: EventStore,
        *,
        readmodel_path: str | None = None,
        counter: TokenCounter | None = None,
        snapshot_every: int = SNAPSHOT_EVERY,
        batch_size: int = 1000,
        poll_interval: float = 1.0,
        window_cache: int = 1024,
        min_version_wait: float = 5.0,
    ) -> None:
        self.store = store
        self.counter = counter or TokenCounter()
        self.readmodel = open_readmodel(store, readmodel_path)
        self.time_travel = History(store, self.readmodel, self.counter)
        self.projector = Projector(
            store, self.readmodel, self.time_travel, self.counter,
            batch_size=batch_size, snapshot_every=snapshot_every, poll_interval=poll_interval,
        )  # fmt: skip
        self._windows = WindowCache(window_cache)
        self.projector.forgetting.append(self._windows.clear)
        self._assembled = AssembledCache()
        self._assembling: dict[str, asyncio.Event] = {}
        """Contexts being read whole for ``_assembled``, so that others wait for it."""
        self.projector.forgetting.append(self._assembled.clear)
        self._acks = Acks()
        """What this service acknowledged to callers (see ``_settle``)."""
        self._turns = Turns()
        self._ready = False
        self.min_version_wait = min_version_wait
        """Seconds ``reach`` waits for a version this read model does not hold yet."""

    async def reach(self, caller: Caller, context_id: str, version: int | None) -> None:
        """Return once this read model holds ``version`` of the context (one a client saw,
        perhaps answered by another node on the same log): read-your-writes across nodes.

        The log says where that version is; the projector is waited for up to
        ``min_version_wait`` seconds (ProjectorBehind after: 503, try again). A version the
        log does not hold is InvalidVersion (ContextNotFound for a context the caller may
        not see, or that does not exist)."""
        if version is None:
            return
        ctx = await self._row(context_id)
        if ctx is not None and ctx.version >= version:
            return
        rows = await self.store.recorder.read_stream(check_stream_id(context_id), version, False, 1)
        if not rows:
            await self._visible(caller, context_id)
            raise InvalidVersion(context_id, version, await self.store.stream_version(context_id))
        await self.projector.wait_for(rows[0].position, self.min_version_wait)

    def on_forget(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` whenever content read from this service must be forgotten: an
        erasure changed it without a new version, or a rebuild replaced the read model (what
        ``window``, ``whole`` and ``get`` answered before may hold it). For a cache above."""
        self.projector.forgetting.append(callback)

    async def rebuild(self, progress: Progress | None = None) -> int:
        """Drop the read model and replay the log; returns the number of events applied.
        The caches are emptied when the new read model is in place (``Projector.rebuild``)."""
        return await self.projector.rebuild(progress)

    async def _visible(self, caller: Caller, context_id: str) -> ContextRow:
        """The context's row if the caller may see it; ContextNotFound otherwise."""
        ctx = await self._row(context_id)
        if ctx is None and await self._created_elsewhere(context_id):
            ctx = await self._row(context_id)
        if ctx is None or ctx.tenant != caller.tenant:
            raise ContextNotFound(context_id)
        return ctx

    async def _created_elsewhere(self, context_id: str) -> bool:
        """Whether the log holds a context whose row was not found (another node created it
        a moment ago): then wait, up to ``min_version_wait`` seconds, until this read model
        has applied it. Only a context not found pays for this look at the log."""
        try:
            check_stream_id(context_id)
        except InvalidStreamId:
            return False
        rows = await self.store.recorder.read_stream(context_id, 1, False, 1)
        if not rows:
            return False
        # Applied already or not, the row is read again: the projector may have applied it
        # while the log was looked at, after the row was found missing.
        await self.projector.wait_for(rows[0].position, self.min_version_wait)
        return True

    async def _settle(self, context_id: str | None = None) -> None:
        """Wait until the read model holds every write this service acknowledged for
        ``context_id`` (None: for any context).

        A command answers as soon as the log has its events (durable), without waiting for the
        projector; whatever reads the read model afterwards (a query, the next command's
        validation) waits here instead, so every caller still reads its own writes. What
        reads one context waits only for that context's writes: the projector's checkpoint
        is one position in the log, so reaching them means everything before them too. When
        the projector is caught up, as it mostly is, this is one comparison."""
        target = self._acks.newest if context_id is None else self._acks.of(context_id)
        if self.projector.checkpoint < target:
            await self.projector.wait_for(target)

    async def _row(self, context_id: str) -> ContextRow | None:
        """The context's committed row: from memory when recently touched (no read-model
        round trip on the hot path), else read and remembered."""
        await self._settle(context_id)
        headers = self.projector.headers
        ctx = headers.get(context_id)
        if ctx is None:
            # Another node's projector may move the row on while it is read (``sharing``):
            # what was read before the cache forgot it is not kept.
            generation = headers.generation
            ctx = await self.readmodel.read_small(context_sync, context_id)
            if ctx is not None:
                headers.put_row(ctx, generation)
        return ctx

    def _metadata(self, caller: Caller) -> EventMetadata:
        return EventMetadata(actor=caller.actor, tenant=caller.tenant, request_id=caller.request_id)

    async def _append(
        self,
        caller: Caller,
        stream_id: str,
        events: list[EventBase],
        expected: ExpectedVersion,
        ids: list[str] | None,
        message_ids: list[str],
        *,
        replay: bool = False,
        lane: Lane | None = None,
    ) -> Written:
        """Append (``replay``: a retry of a keyed command the read model has applied;
        ``lane``: after the lane's previous append, ``expected`` starting it)."""
        # A write is acknowledged once the log has it, and its answer reads it back from the
        # read model: while the projector cannot apply anything, refuse before writing
        # (503, nothing written) rather than write what cannot be read back.
        self.projector.check()
        subjects = await self._stored_subjects(ids) if replay and ids else None
        if subjects is None:
            subjects = await self._subjects(stream_id, events)
        result = await self.store.append(
            stream_id, events, expected, metadata=self._metadata(caller), event_ids=ids,
            subjects=subjects, lane=lane,
        )  # fmt: skip
        self._acks.note(stream_id, result.positions[-1], self.projector.checkpoint)
        return Written(stream_id, result.version, result.positions, message_ids, result.duplicate)

    async def _stored_subjects(self, ids: list[str]) -> list[list[str]] | None:
        """The subjects the stored events of a replayed command were sealed for: the retry
        is sealed for the same ones, whatever changed since (a message rolled away, a
        subject erased), so the store can tell it is the same command. None when the log
        does not say (rows of an older ctxlog)."""
        found = await self.readmodel.read_small(event_id_sync, ids[0])
        if found is None:
            return None
        recs, _ = await self.store.read_all(found[1] - 1, len(ids))
        stored = {rec.event_id: rec for rec in recs}
        subjects = []
        for event_id in ids:
            rec = stored.get(event_id)
            if rec is None or any(not ref.subject for ref in rec.sealed_by):
                return None
            subjects.append([ref.subject for ref in rec.sealed_by])
        return subjects

    async def _subjects(self, stream_id: str, events: list[EventBase]) -> list[list[str]]:
        """Whose keys seal each event's content (``subjects`` says why): the subjects of
        what it carries, read from the read model as the command validated against it."""
        if not any(sealable(event) for event in events):
            return [[] for _ in events]
        ctx = await self._row(stream_id)
        meta = ctx.metadata if ctx is not None else {}
        read = self.readmodel.read_small
        found: list[list[str]] = []
        for event in events:
            match event:
                case MessageAppended(metadata=own):
                    found.append(subjects.for_message(own, meta))
                case MessageEdited(message_id=mid):
                    info = await read(message_info_sync, stream_id, mid)
                    found.append(subjects.for_edit(None if info is None else info[8], meta))
                case SummaryAdded(through_message_id=mid):
                    info = await read(message_info_sync, stream_id, mid)
                    covered = (
                        [] if info is None else await read(subjects_upto_sync, stream_id, info[0])
                    )
                    found.append(subjects.covering(covered, meta))
                case WindowServed(message_ids=ids, summary_id=sid):
                    shown = await read(shown_subjects_sync, stream_id, ids, sid)
                    found.append(subjects.covering(shown, meta))
                case CheckpointSaved() | CheckpointWritesRecorded():
                    # A framework's state: the context's (its thread's) subject.
                    found.append(subjects.for_message({}, meta))
                case _:
                    found.append([])
        return found


def open_readmodel(store: EventStore, path: str | None) -> Model:
    """The read model at ``path``; by default ``<log>.readmodel`` beside a SQLite log file,
    the shared one in PostgreSQL beside a PostgreSQL log, else in memory."""
    if path is not None:
        return ReadModel(path)
    recorder = store.recorder
    if isinstance(recorder, SQLiteRecorder):
        memory = recorder.path == ":memory:"
        return ReadModel(":memory:" if memory else recorder.path + ".readmodel")
    dsn = getattr(recorder, "dsn", None)
    if dsn is not None:  # PostgreSQL (imported only then: psycopg is the postgres extra's)
        try:
            from .pgreadmodel import PgReadModel, schema_of  # noqa: PLC0415
        except ModuleNotFoundError as e:  # an upgrade that did not bring the extra's psycopg
            raise DriverMissing(e.name or "psycopg") from e

        schema = schema_of(recorder.schema)  # type: ignore[attr-defined]
        drop = bool(getattr(recorder, "drop_schema_on_close", False))
        return PgReadModel(dsn, schema, drop_on_close=drop)
    return ReadModel(":memory:")
