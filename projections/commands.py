"""The contexts service's commands: validate against the read model (cheap point lookups,
never a whole history), append events at the validated version, answer once the log has them.

``idempotency_key``: when given, event ids derive from (tenant, key, index), so a retried
command stores nothing new and returns the first result, also after a restart; the same key
with different content raises ``eventstore.DuplicateEventId``. Ids the service would generate
(a new context's, messages') derive from the key too, so a retry is identical.
``expected_version``: the If-Match of HTTP, and of every other door; it holds when nothing
but served windows' records was written since that version (``preconditions.admits``), and
raises ``eventstore.VersionConflict`` otherwise. Either way a command validates against the
version it read, appends at it, and retries if another writer got in between (with a
precondition, only while the precondition still holds).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
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
    ExpectedVersion,
    Lane,
    MessageAppended,
    MessageEdited,
    MessageRedacted,
    MetadataUpdated,
    SummaryAdded,
    VersionConflict,
    WindowConfigured,
    WindowSettings,
    new_id,
)

from .base import RETRIES, ServiceBase, conflict_pause, key_id
from .calls import Caller, NewMessage, Written
from .context import validate
from .errors import (
    ContextIsDeleted,
    DuplicateMessage,
    InvalidCommand,
    InvalidVersion,
    MessageNotFound,
    ProjectionError,
)
from .preconditions import admits
from .reads import event_id_sync, message_info_sync
from .tables import ContextRow


def _check_window(window: WindowSettings) -> None:
    # validate() checks a window when it comes with a creation; reuse that single rule set.
    validate(None, ContextCreated(window=window), context_id="-")


def _messages_sync(conn: Any, context_id: str, ids: list[str]) -> list[tuple[Any, ...] | None]:
    return [message_info_sync(conn, context_id, mid) for mid in ids]


Check = Callable[[ContextRow], Awaitable[None]]


class Commands(ServiceBase):
    """Every command of the contexts service."""

    async def _replayed(self, ids: list[str] | None) -> bool:
        """Whether a command with these (keyed) event ids was already applied."""
        if ids is None:
            return False
        await self._settle()
        return await self.readmodel.read_small(event_id_sync, ids[0]) is not None

    async def _command(
        self,
        caller: Caller,
        context_id: str,
        events: list[EventBase],
        check: Check,
        expected_version: ExpectedVersion | None,
        idempotency_key: str | None,
        message_ids: list[str] | None = None,
        *,
        shareable: bool = False,
    ) -> Written:
        """Validate against the read model, append at the validated version, read own write.

        ``shareable``: the command stays valid whatever other shareable commands on the
        context do meanwhile (appends of new messages): without a precondition, those share
        the context's turn and follow each other in one lane (``Turns``), so concurrent
        writers of one context join the same group commit and take consecutive versions."""
        ids = None
        if idempotency_key is not None:
            ids = [key_id(caller.tenant, idempotency_key, str(i)) for i in range(len(events))]
        mids = message_ids or []
        if await self._replayed(ids):  # the store answers with the first result, or refuses
            return await self._append(caller, context_id, events, ANY, ids, mids, replay=True)
        # Commands on one context take turns here (so do recorded windows), so writers in this
        # process never race each other into a conflict (another process can still; that
        # retries). A precondition is checked inside the turn, against what the writers before
        # it wrote. Appends without one share their turn: a queue of one append at a time
        # would cost each a commit of its own. Any conflict in the lane (another process
        # wrote, or an append of the lane was refused) takes the exclusive turn and retries.
        turn = self._turns.turn(context_id)
        if shareable and expected_version in (None, ANY, STREAM_EXISTS):  # no precondition
            try:
                async with turn.shared() as lane:
                    return await self._attempt(
                        caller, context_id, events, check, expected_version, ids, mids, lane
                    )
            except VersionConflict:
                turn = self._turns.turn(context_id)
        async with turn:
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
        lane: Lane | None = None,
    ) -> Written:
        for attempt in range(RETRIES):
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
                        return await self._append(
                            caller, context_id, events, ANY, ids, mids, replay=True
                        )
                raise
            if isinstance(expected_version, int) and not admits(
                expected_version, content_version=ctx.content_version, version=ctx.version
            ):
                raise VersionConflict(context_id, expected_version, ctx.version)
            # At the version validated against (a precondition, if any, admitted it).
            expected = NO_STREAM if expected_version is NO_STREAM else ctx.version
            try:
                return await self._append(
                    caller, context_id, events, expected, ids, mids, lane=lane
                )
            except VersionConflict:
                if lane is not None or attempt == RETRIES - 1:
                    raise
                if pause := conflict_pause(attempt):
                    await asyncio.sleep(pause)
                await self.projector.catch_up()  # the next turn checks the precondition again
        raise AssertionError("unreachable")  # pragma: no cover

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
        context_id = key_id(caller.tenant, idempotency_key, "context")
        ids = [key_id(caller.tenant, idempotency_key, "0")]
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
                else key_id(caller.tenant, idempotency_key, f"message\x00{i}")
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
            found = await self.readmodel.read_small(_messages_sync, context_id, chosen)
            for mid, info in zip(chosen, found, strict=True):
                if info is not None:
                    raise DuplicateMessage(context_id, mid)

        return await self._command(
            caller, context_id, events, check, expected_version, idempotency_key, mids,
            shareable=not chosen and idempotency_key is None,
        )  # fmt: skip

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
            info = await self.readmodel.read_small(message_info_sync, context_id, message_id)
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
            else key_id(caller.tenant, idempotency_key, "summary")
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
        fork_id = key_id(caller.tenant, idempotency_key, "context")
        ids = [key_id(caller.tenant, idempotency_key, "0")]
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
