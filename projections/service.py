"""The contexts service: the one object the API (REST, WebSocket, MCP) and the CLI call.

Commands validate against the read model (cheap point lookups, never a whole history) and
append events with an expected version; they answer once the log has the events, and
whatever reads that context from the read model next waits for the projector to have
applied them (``Contexts._settle``), so a caller reads its own writes. Queries read the
read model (current state, windows: O(window)) or history (snapshots + at most K events
folded).

Every method takes the caller's ``tenant``: a context of another tenant reads as not found.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

import msgspec

from eventstore import (
    ANY,
    NO_STREAM,
    STREAM_EXISTS,
    Content,
    ContextCreated,
    ContextDeleted,
    ContextForked,
    ContextRolledBack,
    EventBase,
    EventMetadata,
    EventStore,
    ExpectedVersion,
    MessageAppended,
    MessageEdited,
    MessageRedacted,
    MetadataUpdated,
    RecordedEvent,
    Role,
    SQLiteRecorder,
    SummaryAdded,
    VersionConflict,
    WindowConfigured,
    WindowSettings,
    new_id,
)
from eventstore.sealing import sealable

from .acks import Acks
from .caches import WindowCache
from .context import validate
from .cursors import decode_cursor, encode_cursor
from .diff import StateDiff, diff
from .erasure import Erased, erase_subject
from .errors import (
    ContextIsDeleted,
    ContextNotFound,
    DuplicateMessage,
    InvalidCommand,
    InvalidVersion,
    MessageNotFound,
    ProjectionError,
)
from .history import SNAPSHOT_EVERY, History
from .readmodel import (
    ContextRow,
    ReadModel,
    context_sync,
    event_id_sync,
    forks_sync,
    message_info_sync,
    message_page_sync,
    page_sync,
    state_sync,
    window_sync,
)
from .runner import Progress, Projector
from .search import SearchPage, search_sync
from .state import ContextState, Message
from .tokens import TokenCounter
from .turns import Turns
from .window import Policy, Window, served_event


class Caller(msgspec.Struct, frozen=True):
    """Who is asking: the tenant and actor of the API key (None for an open server)."""

    tenant: str | None = None
    actor: str | None = None
    request_id: str | None = None


class NewMessage(msgspec.Struct, frozen=True, kw_only=True):
    """A message to append; ``message_id`` is generated when missing."""

    role: Role
    content: Content
    name: str | None = None
    metadata: dict[str, Any] = {}
    message_id: str | None = None


class Written(msgspec.Struct, frozen=True):
    """What a command stored: the context's new version, positions, and new message ids."""

    context_id: str
    version: int
    positions: list[int]
    message_ids: list[str] = []
    duplicate: bool = False


class ContextSize(msgspec.Struct, frozen=True):
    """How much a context holds now: what a listing shows without loading its messages."""

    message_count: int
    total_tokens: int


class ContextPage(msgspec.Struct, frozen=True):
    """A page of contexts, newest first, and the cursor of the next page (None at the end);
    ``sizes[i]`` is the size of ``contexts[i]`` (whose ``messages`` are left empty)."""

    contexts: list[ContextState]
    next_cursor: str | None
    sizes: list[ContextSize] = []


class Lineage(msgspec.Struct, frozen=True):
    """A context's ancestors (parent first) and direct forks."""

    context_id: str
    ancestors: list[tuple[str, int]]
    forks: list[tuple[str, int]]


NAMESPACE = uuid.UUID("6f1c3a2e-5b8d-4c1e-9a7f-2d4e8b0c9a31")
"""Name-based event ids (UUID v5) derive from (tenant, idempotency key, index) in this space."""

_RETRIES = 5
_KEEP = (None, ANY, STREAM_EXISTS)
"""Expected versions that let the service use the version it validated against (and retry
on a conflict with another writer) instead of failing the caller."""


class MessagePage(msgspec.Struct, frozen=True):
    """A page of a context's current messages; ``seqs`` are their 0-based places, and
    ``next_after`` continues the page (None at the end)."""

    context_id: str
    version: int
    messages: list[Message]
    seqs: list[int]
    next_after: int | None


def _key_id(tenant: str | None, key: str, what: str) -> str:
    return str(uuid.uuid5(NAMESPACE, f"{tenant or ''}\x00{key}\x00{what}"))


def _check_window(window: WindowSettings) -> None:
    # validate() checks a window when it comes with a creation; reuse that single rule set.
    validate(None, ContextCreated(window=window), context_id="-")


def _messages_sync(conn: Any, context_id: str, ids: list[str]) -> list[tuple[Any, ...] | None]:
    return [message_info_sync(conn, context_id, mid) for mid in ids]


Check = Callable[[ContextRow], Awaitable[None]]


class Contexts:
    """Commands and queries over contexts, on one event store and its read model.

    ``idempotency_key``: when given, event ids derive from (tenant, key, index), so a retried
    command stores nothing new and returns the first result, also after a restart; the same
    key with different content raises ``eventstore.DuplicateEventId``. Ids the service would
    generate (a new context's, messages') derive from the key too, so a retry is identical.
    ``expected_version``: the If-Match of HTTP; a mismatch raises ``eventstore.VersionConflict``.
    Without it, a command validates against the version it read and retries if another
    writer got in between.

    The read model is ``readmodel_path`` (default: ``<log>.readmodel`` beside a SQLite log
    file, else ``:memory:``, rebuilt from the log at each start). ``window_cache`` windows are
    kept by the version they were computed at (0: compute every window).
    """

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
    ) -> None:
        self.store = store
        self.counter = counter or TokenCounter()
        self.readmodel = ReadModel(readmodel_path or _default_path(store))
        self.time_travel = History(store, self.readmodel, self.counter)
        self.projector = Projector(
            store, self.readmodel, self.time_travel, self.counter,
            batch_size=batch_size, snapshot_every=snapshot_every, poll_interval=poll_interval,
        )  # fmt: skip
        self._windows = WindowCache(window_cache)
        self._acks = Acks()
        """What this service acknowledged to callers (see ``_settle``)."""
        self._turns = Turns()
        self._ready = False

    async def start(self) -> None:
        """Open the read model and catch the projector up to the head of the log."""
        checkpoint = await self.readmodel.open(self.counter.encoding)
        await self.projector.start(checkpoint)
        await self.projector.catch_up()
        self._ready = True

    async def close(self) -> None:
        """Let the projector apply what was acknowledged, then stop it and close the read
        model (stopping it mid-batch would only make the next start apply that batch again)."""
        self._ready = False
        if self.projector.running:
            with contextlib.suppress(Exception):  # a failed or stuck projector: stop anyway
                async with asyncio.timeout(self.projector.wait_timeout):
                    await self._settle()
        await self.projector.stop()
        await self.readmodel.close()

    @property
    def ready(self) -> bool:
        """True once the projector caught up at start (``/healthz`` says ``starting`` before)."""
        return self._ready and self.projector.running

    async def erase(self, caller: Caller, subject: str) -> Erased:
        """Crypto-shred ``subject`` in the caller's tenant (see ``erasure``); idempotent."""
        return await erase_subject(self, caller, subject)

    async def rebuild(self, progress: Progress | None = None) -> int:
        """Drop the read model and replay the log; returns the number of events applied."""
        self._windows.clear()
        return await self.projector.rebuild(progress)

    # -- command plumbing --------------------------------------------------------------------

    async def _visible(self, caller: Caller, context_id: str) -> ContextRow:
        """The context's row if the caller may see it; ContextNotFound otherwise."""
        ctx = await self._row(context_id)
        if ctx is None or ctx.tenant != caller.tenant:
            raise ContextNotFound(context_id)
        return ctx

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
            ctx = await self.readmodel.read(context_sync, context_id)
            if ctx is not None:
                headers.put_row(ctx)
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
    ) -> Written:
        subject = None
        if any(sealable(event) for event in events):
            # Content of the context's data subject is sealed with that subject's key.
            ctx = await self._row(stream_id)
            found = ctx.metadata.get("subject") if ctx is not None else None
            subject = found if isinstance(found, str) and found else None
        result = await self.store.append(
            stream_id, events, expected, metadata=self._metadata(caller), event_ids=ids,
            subject=subject,
        )  # fmt: skip
        self._acks.note(stream_id, result.positions[-1], self.projector.checkpoint)
        return Written(stream_id, result.version, result.positions, message_ids, result.duplicate)

    async def _replayed(self, ids: list[str] | None) -> bool:
        """Whether a command with these (keyed) event ids was already applied."""
        if ids is None:
            return False
        await self._settle()
        return await self.readmodel.read(event_id_sync, ids[0]) is not None

    async def _command(
        self,
        caller: Caller,
        context_id: str,
        events: list[EventBase],
        check: Check,
        expected_version: ExpectedVersion | None,
        idempotency_key: str | None,
        message_ids: list[str] | None = None,
    ) -> Written:
        """Validate against the read model, append at the validated version, read own write."""
        ids = None
        if idempotency_key is not None:
            ids = [_key_id(caller.tenant, idempotency_key, str(i)) for i in range(len(events))]
        mids = message_ids or []
        if await self._replayed(ids):  # the store answers with the first result, or refuses
            return await self._append(caller, context_id, events, ANY, ids, mids)
        if expected_version not in _KEEP:
            return await self._attempt(
                caller, context_id, events, check, expected_version, ids, mids
            )
        # Without a precondition the caller wants its command applied to whatever version
        # is current: commands on one context take turns here, so writers in this process
        # never race each other into a conflict (another process can still; that retries).
        async with self._turns.turn(context_id):
            return await self._attempt(
                caller, context_id, events, check, expected_version, ids, mids
            )

    async def _attempt(
        self,
        caller: Caller,
        context_id: str,
        events: list[EventBase],
        check: Check,
        expected_version: ExpectedVersion | None,
        ids: list[str] | None,
        mids: list[str],
    ) -> Written:
        for attempt in range(_RETRIES):
            ctx = await self._visible(caller, context_id)
            if isinstance(expected_version, int) and ctx.version < expected_version:
                await self.projector.catch_up()  # the caller saw a write we have not applied
                ctx = await self._visible(caller, context_id)
            try:
                if ctx.deleted:
                    raise ContextIsDeleted(context_id)
                await check(ctx)
            except ProjectionError:
                # A retry of a keyed command whose first attempt the read model has not
                # caught up with yet would fail validation (e.g. its message now exists).
                if ids is not None:
                    await self.projector.catch_up()
                    if await self._replayed(ids):
                        return await self._append(caller, context_id, events, ANY, ids, mids)
                raise
            expected = ctx.version if expected_version in _KEEP else expected_version
            try:
                return await self._append(caller, context_id, events, expected, ids, mids)
            except VersionConflict:
                if expected_version not in _KEEP or attempt == _RETRIES - 1:
                    raise
                await self.projector.catch_up()
        raise AssertionError("unreachable")  # pragma: no cover

    # -- commands ---------------------------------------------------------------------------

    async def create(
        self,
        caller: Caller,
        *,
        metadata: dict[str, Any] | None = None,
        window: WindowSettings | None = None,
        idempotency_key: str | None = None,
    ) -> Written:
        """A new context (id generated: a UUID)."""
        if window is not None:
            _check_window(window)
        events: list[EventBase] = [ContextCreated(metadata=metadata or {}, window=window)]
        if idempotency_key is None:
            return await self._append(caller, new_id(), events, NO_STREAM, None, [])
        context_id = _key_id(caller.tenant, idempotency_key, "context")
        ids = [_key_id(caller.tenant, idempotency_key, "0")]
        return await self._append(caller, context_id, events, NO_STREAM, ids, [])

    async def append(
        self,
        caller: Caller,
        context_id: str,
        messages: list[NewMessage],
        *,
        expected_version: ExpectedVersion | None = None,
        idempotency_key: str | None = None,
    ) -> Written:
        """Append messages atomically; O(1) in the context's length."""
        if not messages:
            raise InvalidCommand("an append needs at least one message")
        mids = [
            m.message_id
            or (
                new_id()
                if idempotency_key is None
                else _key_id(caller.tenant, idempotency_key, f"message\x00{i}")
            )
            for i, m in enumerate(messages)
        ]
        if len(set(mids)) != len(mids):
            raise InvalidCommand("message ids repeat within one append")
        events: list[EventBase] = [
            MessageAppended(
                message_id=mid, role=m.role, content=m.content, name=m.name, metadata=m.metadata
            )
            for mid, m in zip(mids, messages, strict=True)
        ]

        # Only ids the caller chose can already be there: a fresh UUID cannot, and a keyed
        # id's replay was answered before any check.
        chosen = [m.message_id for m in messages if m.message_id is not None]

        async def check(ctx: ContextRow) -> None:
            if not chosen:
                return
            found = await self.readmodel.read(_messages_sync, context_id, chosen)
            for mid, info in zip(chosen, found, strict=True):
                if info is not None:
                    raise DuplicateMessage(context_id, mid)

        return await self._command(
            caller, context_id, events, check, expected_version, idempotency_key, mids
        )

    async def _message_command(
        self,
        caller: Caller,
        context_id: str,
        message_id: str,
        event: EventBase,
        expected_version: ExpectedVersion | None,
        idempotency_key: str | None,
        *,
        editable: bool = False,
    ) -> Written:
        async def check(ctx: ContextRow) -> None:
            info = await self.readmodel.read(message_info_sync, context_id, message_id)
            if info is None:
                raise MessageNotFound(context_id, message_id)
            if editable and info[3]:
                raise InvalidCommand(f"message {message_id!r} is redacted; it cannot be edited")

        return await self._command(
            caller, context_id, [event], check, expected_version, idempotency_key
        )

    async def edit(
        self,
        caller: Caller,
        context_id: str,
        message_id: str,
        content: Content,
        *,
        expected_version: ExpectedVersion | None = None,
        idempotency_key: str | None = None,
    ) -> Written:
        """Replace a message's content."""
        event = MessageEdited(message_id=message_id, content=content)
        return await self._message_command(
            caller, context_id, message_id, event, expected_version, idempotency_key,
            editable=True,
        )  # fmt: skip

    async def redact(
        self,
        caller: Caller,
        context_id: str,
        message_id: str,
        *,
        reason: str | None = None,
        expected_version: ExpectedVersion | None = None,
        idempotency_key: str | None = None,
    ) -> Written:
        """Blank a message's content, keeping its place."""
        event = MessageRedacted(message_id=message_id, reason=reason)
        return await self._message_command(
            caller, context_id, message_id, event, expected_version, idempotency_key
        )

    async def add_summary(
        self,
        caller: Caller,
        context_id: str,
        text: str,
        through_message_id: str,
        *,
        expected_version: ExpectedVersion | None = None,
        idempotency_key: str | None = None,
        summary_id: str | None = None,
    ) -> Written:
        """Add a summary covering messages through ``through_message_id``."""
        sid = summary_id or (
            new_id()
            if idempotency_key is None
            else _key_id(caller.tenant, idempotency_key, "summary")
        )
        event = SummaryAdded(summary_id=sid, text=text, through_message_id=through_message_id)
        return await self._message_command(
            caller, context_id, through_message_id, event, expected_version, idempotency_key
        )

    async def _simple(
        self,
        caller: Caller,
        context_id: str,
        event: EventBase,
        expected_version: ExpectedVersion | None,
        idempotency_key: str | None,
    ) -> Written:
        async def check(ctx: ContextRow) -> None:
            if isinstance(event, ContextRolledBack) and not 1 <= event.to_version <= ctx.version:
                raise InvalidVersion(context_id, event.to_version, ctx.version)

        return await self._command(
            caller, context_id, [event], check, expected_version, idempotency_key
        )

    async def update_metadata(
        self,
        caller: Caller,
        context_id: str,
        patch: dict[str, Any],
        *,
        expected_version: ExpectedVersion | None = None,
        idempotency_key: str | None = None,
    ) -> Written:
        """Apply an RFC 7386 merge patch to the context's metadata."""
        event = MetadataUpdated(patch=patch)
        return await self._simple(caller, context_id, event, expected_version, idempotency_key)

    async def configure_window(
        self,
        caller: Caller,
        context_id: str,
        window: WindowSettings,
        *,
        expected_version: ExpectedVersion | None = None,
        idempotency_key: str | None = None,
    ) -> Written:
        """Set the context's default window settings."""
        _check_window(window)
        event = WindowConfigured(window=window)
        return await self._simple(caller, context_id, event, expected_version, idempotency_key)

    async def rollback(
        self,
        caller: Caller,
        context_id: str,
        to_version: int,
        *,
        reason: str | None = None,
        expected_version: ExpectedVersion | None = None,
        idempotency_key: str | None = None,
    ) -> Written:
        """Return the context to its state as of ``to_version`` (a new event)."""
        event = ContextRolledBack(to_version=to_version, reason=reason)
        return await self._simple(caller, context_id, event, expected_version, idempotency_key)

    async def delete(
        self,
        caller: Caller,
        context_id: str,
        *,
        reason: str | None = None,
        expected_version: ExpectedVersion | None = None,
        idempotency_key: str | None = None,
    ) -> Written:
        """Tombstone the context; its history stays."""
        event = ContextDeleted(reason=reason)
        return await self._simple(caller, context_id, event, expected_version, idempotency_key)

    async def fork(
        self,
        caller: Caller,
        context_id: str,
        *,
        at_version: int | None = None,
        metadata: dict[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> Written:
        """A new context starting as this one at ``at_version`` (default: current)."""
        parent = await self._visible(caller, context_id)
        if parent.deleted:
            raise ContextIsDeleted(context_id)
        at = parent.version if at_version is None else at_version
        if not 1 <= at <= parent.version:
            raise InvalidVersion(context_id, at, parent.version)
        events: list[EventBase] = [
            ContextForked(parent_id=context_id, parent_version=at, metadata=metadata or {})
        ]
        if idempotency_key is None:
            return await self._append(caller, new_id(), events, NO_STREAM, None, [])
        fork_id = _key_id(caller.tenant, idempotency_key, "context")
        ids = [_key_id(caller.tenant, idempotency_key, "0")]
        first = await self.store.read_stream(fork_id, 1, limit=1)
        stored = first[0].event if first and first[0].event_id == ids[0] else None
        if (
            at_version is None
            and isinstance(stored, ContextForked)
            and stored.parent_id == context_id
        ):
            # A retry of a fork "at the current version": the parent may have moved on since,
            # and the first attempt's fork point is the one the caller got (or would have).
            # The rest is this request's, so a key reused for another fork still conflicts.
            events = [msgspec.structs.replace(events[0], parent_version=stored.parent_version)]
        return await self._append(caller, fork_id, events, NO_STREAM, ids, [])

    # -- queries ----------------------------------------------------------------------------

    async def get(
        self,
        caller: Caller,
        context_id: str,
        *,
        version: int | None = None,
        at: datetime | None = None,
        include_messages: bool = True,
    ) -> ContextState:
        """The context now, at a version, or as it was at a time.

        Now: from the read model (ContextIsDeleted for a deleted context). At a version or
        time: from history (snapshot + at most K events; deleted contexts' pasts included).
        ``include_messages=False`` leaves ``messages`` empty (O(1) in the context's length).
        """
        ctx = await self._visible(caller, context_id)
        if at is not None:
            state = await self.time_travel.state_at_time(context_id, at)
            if version is None or version == state.version:
                return state
            raise InvalidCommand("give a version or a time, not both")
        if version is not None and version != ctx.version:
            if not 1 <= version <= ctx.version:
                raise InvalidVersion(context_id, version, ctx.version)
            return await self.time_travel.state_at(context_id, version)
        if ctx.deleted and version is None:
            raise ContextIsDeleted(context_id)
        state = await self.readmodel.read(state_sync, context_id, include_messages)
        if state is None:  # pragma: no cover (rows are never removed)
            raise ContextNotFound(context_id)
        return state

    async def messages(
        self,
        caller: Caller,
        context_id: str,
        *,
        after: int = -1,
        limit: int = 100,
        backward: bool = False,
    ) -> MessagePage:
        """A page of current messages: those after seq ``after``, oldest first, or with
        ``backward`` those before seq ``after`` (default: the end), newest first. O(limit)."""
        if not 1 <= limit <= 1000:
            raise InvalidCommand("limit must be between 1 and 1000")
        ctx = await self._visible(caller, context_id)
        if ctx.deleted:
            raise ContextIsDeleted(context_id)
        start = (ctx.message_count if after < 0 else after) if backward else after
        rows = await self.readmodel.read(message_page_sync, context_id, start, limit, backward)
        more = (rows[-1][0] > 0) if backward else (rows[-1][0] < ctx.message_count - 1)
        return MessagePage(
            context_id, ctx.version, [m for _, m in rows], [s for s, _ in rows],
            rows[-1][0] if rows and more else None,
        )  # fmt: skip

    async def window(
        self,
        caller: Caller,
        context_id: str,
        *,
        max_tokens: int | None = None,
        model: str | None = None,
        policy: Policy | None = None,
        last_n: int | None = None,
        record: bool = False,
    ) -> Window:
        """The current window, O(window); ``record`` appends WindowServed right after the
        version it was computed from (recomputed if another write got in between)."""
        if record:  # the record is a write: it takes its turn like any other command
            async with self._turns.turn(context_id):
                return await self._window(
                    caller, context_id, max_tokens, model, policy, last_n, record=True
                )
        return await self._window(caller, context_id, max_tokens, model, policy, last_n)

    async def _window(
        self,
        caller: Caller,
        context_id: str,
        max_tokens: int | None,
        model: str | None,
        policy: Policy | None,
        last_n: int | None,
        *,
        record: bool = False,
    ) -> Window:
        for attempt in range(_RETRIES):
            ctx = await self._visible(caller, context_id)
            if ctx.deleted:
                raise ContextIsDeleted(context_id)
            result = self._windows.get((context_id, ctx.version, max_tokens, model, policy, last_n))
            if result is None:
                result = await self.readmodel.read(
                    _window_sync, context_id, max_tokens, model, policy, last_n
                )
                if result is None:  # pragma: no cover (deleted between the two reads)
                    continue
                key = (context_id, result.version, max_tokens, model, policy, last_n)
                self._windows.put(key, result)
            if not record:
                return result
            try:
                await self._append(
                    caller, context_id, [served_event(result)], result.version, None, []
                )
            except VersionConflict:
                if attempt == _RETRIES - 1:
                    raise
                await self.projector.catch_up()
                continue
            return result
        raise ContextNotFound(context_id)  # pragma: no cover

    async def history(
        self,
        caller: Caller,
        context_id: str,
        *,
        from_version: int | None = None,
        limit: int = 100,
        backward: bool = False,
    ) -> list[RecordedEvent]:
        """The context's raw events."""
        await self._visible(caller, context_id)
        return await self.store.read_stream(
            context_id, from_version, backward=backward, limit=limit
        )

    async def _state(self, caller: Caller, context_id: str, version: int | None) -> ContextState:
        """The state at ``version`` (None: current), deleted or not."""
        ctx = await self._visible(caller, context_id)
        if version is None or version == ctx.version:
            state = await self.readmodel.read(state_sync, context_id, True)
            assert state is not None
            return state
        if not 1 <= version <= ctx.version:
            raise InvalidVersion(context_id, version, ctx.version)
        return await self.time_travel.state_at(context_id, version)

    async def diff(
        self, caller: Caller, context_id: str, from_version: int, to_version: int | None = None
    ) -> StateDiff:
        """What changed between two versions (``to_version`` default: current)."""
        a = await self._state(caller, context_id, from_version)
        return diff(a, await self._state(caller, context_id, to_version))

    async def diff_parent(
        self, caller: Caller, context_id: str, *, parent_version: int | None = None
    ) -> StateDiff:
        """What a fork has that its parent (at ``parent_version``, default: the parent's
        current version) has not; InvalidCommand if the context is not a fork."""
        ctx = await self._visible(caller, context_id)
        if ctx.parent_id is None:
            raise InvalidCommand(f"context {context_id!r} is not a fork")
        a = await self._state(caller, ctx.parent_id, parent_version)
        return diff(a, await self._state(caller, context_id, None))

    async def lineage(self, caller: Caller, context_id: str) -> Lineage:
        """Where the context came from (parent first) and its direct forks (oldest first)."""
        ctx = await self._visible(caller, context_id)
        ancestors: list[tuple[str, int]] = []
        row: ContextRow | None = ctx
        while row is not None and row.parent_id is not None and row.parent_version is not None:
            ancestors.append((row.parent_id, row.parent_version))
            row = await self._row(row.parent_id)
        await self._settle()  # forks are other contexts, written after this one perhaps
        forks = await self.readmodel.read(forks_sync, context_id)
        visible = [(fid, at) for fid, at, tenant in forks if tenant == caller.tenant]
        return Lineage(context_id, ancestors, visible)

    async def list(
        self,
        caller: Caller,
        *,
        cursor: str | None = None,
        limit: int = 50,
        metadata: dict[str, str] | None = None,
    ) -> ContextPage:
        """The caller's live contexts, newest first, optionally by metadata key = value.

        The states are headers: ``messages`` and ``summaries`` are empty (``get`` one for
        them). A filter value matches a string equal to it or a JSON value whose text it is.
        """
        if not 1 <= limit <= 1000:
            raise InvalidCommand("limit must be between 1 and 1000")
        before = 2**62 if cursor is None else decode_cursor("p", cursor)
        await self._settle()
        rows = await self.readmodel.read(
            page_sync, caller.tenant, before, limit + 1, metadata or {}
        )
        more = len(rows) > limit
        rows = rows[:limit]
        return ContextPage(
            [r.state() for r in rows],
            encode_cursor("p", rows[-1].position) if more else None,
            [ContextSize(r.message_count, r.total_tokens) for r in rows],
        )

    async def search(
        self,
        caller: Caller,
        query: str,
        *,
        context_id: str | None = None,
        limit: int = 20,
        cursor: str | None = None,
    ) -> SearchPage:
        """Messages of the caller's live contexts (or of one context) holding every word of
        ``query``, best match first (SQLite FTS5, bm25); a trailing ``*`` matches a prefix."""
        if not 1 <= limit <= 100:
            raise InvalidCommand("limit must be between 1 and 100")
        if context_id is not None:
            await self._visible(caller, context_id)
        offset = 0 if cursor is None else decode_cursor("s", cursor)
        await self._settle()
        return await self.readmodel.read(
            search_sync, caller.tenant, query, context_id, limit, offset
        )


def _window_sync(
    conn: Any,
    context_id: str,
    max_tokens: int | None,
    model: str | None,
    policy: Policy | None,
    last_n: int | None,
) -> Window | None:
    ctx = context_sync(conn, context_id)
    if ctx is None or ctx.deleted:
        return None
    return window_sync(conn, ctx, max_tokens, model, policy, last_n)


def _default_path(store: EventStore) -> str:
    recorder = store.recorder
    if isinstance(recorder, SQLiteRecorder) and recorder.path != ":memory:":
        return recorder.path + ".readmodel"
    return ":memory:"
