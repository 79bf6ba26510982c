"""The contexts service's queries: the read model for what is current (a window costs
O(window)), history (a snapshot and at most K events folded) for what was."""

from __future__ import annotations

import asyncio
import builtins
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import msgspec

from eventstore import DuplicateEventId, LogFilter, RecordedEvent, VersionConflict, WindowServed

from .base import RETRIES, ServiceBase, key_id
from .caches import WindowParams, assemble
from .calls import Audited, Caller, ContextPage, ContextSize, Lineage, MessagePage, Whole
from .cursors import decode_cursor, encode_cursor
from .diff import StateDiff, diff
from .errors import ContextIsDeleted, ContextNotFound, InvalidCommand, InvalidVersion
from .overhead import DEFAULT_FORMAT
from .positions import NotNumbered, number_upto_sync, numbers_sync, position_sync
from .reads import (
    context_sync,
    event_id_sync,
    forks_sync,
    message_page_sync,
    page_sync,
    state_sync,
    whole_sync,
    window_sync,
)
from .search import SearchPage, search_sync
from .state import ContextState
from .tables import ContextRow
from .window import Policy, Window, served_event, window

MAX_METADATA_FILTERS = 20
"""Metadata filters one listing may combine: each is a condition SQLite evaluates per context
(about 1,000 made a statement too large for it)."""


def check_metadata_filter(metadata: Mapping[str, str]) -> None:
    """InvalidCommand for a metadata filter ``list`` cannot take: more than
    ``MAX_METADATA_FILTERS`` keys, or a key or value with a NUL (no stored metadata has one)."""
    if len(metadata) > MAX_METADATA_FILTERS:
        raise InvalidCommand(f"at most {MAX_METADATA_FILTERS} metadata filters")
    for key, value in metadata.items():
        if "\x00" in key or "\x00" in value:
            raise InvalidCommand("metadata filter keys and values cannot contain NUL characters")


class Queries(ServiceBase):
    """Every query of the contexts service (``window(record=True)`` also writes a record of
    what it served)."""

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
        current = await self.readmodel.read(state_sync, context_id, include_messages)
        if current is None:  # pragma: no cover (rows are never removed)
            raise ContextNotFound(context_id)
        return current

    async def whole(self, caller: Caller, context_id: str, *, budget: int) -> Whole:
        """The context now, for a whole-context answer: its messages as stored JSON (copied,
        not decoded and encoded again), as many as fit ``budget`` bytes; ContextIsDeleted
        for a deleted context. A context answered before costs a copy of what was answered
        then, plus the messages appended since."""
        ctx = await self._visible(caller, context_id)
        if ctx.deleted:
            raise ContextIsDeleted(context_id)
        cache = self._assembled
        while True:
            entry = cache.get(context_id)
            if entry is not None and ctx.reshaped <= entry.version >= ctx.version:
                runs, given = entry.cut(budget)
                return Whole(entry.state, runs, given, entry.total_tokens, entry.count - given)
            # One read of a context at a time: whoever asks meanwhile waits for it and
            # answers with what it read (a later version is as good: the caller's writes
            # are in it), instead of reading the same messages again.
            reading = self._assembling.get(context_id)
            if reading is None:
                break
            await reading.wait()
        self._assembling[context_id] = reading = asyncio.Event()
        try:
            generation = cache.generation
            known, after = (-1, 0) if entry is None else (entry.version, entry.count)
            found = await self.readmodel.read(whole_sync, context_id, known, after, budget)
            if found is None:  # pragma: no cover (rows are never removed)
                raise ContextNotFound(context_id)
            row, state, start, parts, complete = found
            base = entry if entry is not None and start == after else None
            entry = assemble(base, parts, row.version, state, row.total_tokens)
            if complete:
                cache.put(context_id, entry, generation)
        finally:
            del self._assembling[context_id]
            reading.set()
        runs, given = entry.cut(budget)
        return Whole(entry.state, runs, given, entry.total_tokens, row.message_count - given)

    async def size(self, caller: Caller, context_id: str) -> tuple[int, ContextSize]:
        """The context's current version and how much it holds then: O(1)."""
        ctx = await self._visible(caller, context_id)
        return ctx.version, ContextSize(ctx.message_count, ctx.total_tokens)

    async def messages(
        self,
        caller: Caller,
        context_id: str,
        *,
        after: int = -1,
        limit: int = 100,
        backward: bool = False,
        version: int | None = None,
    ) -> MessagePage:
        """A page of the messages: those after seq ``after``, oldest first, or with
        ``backward`` those before seq ``after`` (default: the end), newest first. Now: from
        the read model, O(limit). At ``version``: from history (a snapshot and at most K
        events folded), then the page of it."""
        if not 1 <= limit <= 1000:
            raise InvalidCommand("limit must be between 1 and 1000")
        ctx = await self._visible(caller, context_id)
        if version is not None and version != ctx.version:
            if not 1 <= version <= ctx.version:
                raise InvalidVersion(context_id, version, ctx.version)
            state = await self.time_travel.state_at(context_id, version)
            return _page_of(state, after, limit, backward)
        if ctx.deleted:
            raise ContextIsDeleted(context_id)
        start = (ctx.message_count if after < 0 else after) if backward else after
        page = (context_id, start, limit, backward)
        rows = await self.readmodel.read_small(message_page_sync, *page)
        if not rows:
            return MessagePage(context_id, ctx.version, [], [], None, ctx.message_count)
        more = (rows[-1][0] > 0) if backward else (rows[-1][0] < ctx.message_count - 1)
        return MessagePage(
            context_id, ctx.version, [m for _, m in rows], [s for s, _ in rows],
            rows[-1][0] if more else None, ctx.message_count,
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
        format_name: str = DEFAULT_FORMAT,
        idempotency_key: str | None = None,
    ) -> Window:
        """The current window, O(window), its framing that of request format ``format_name``;
        ``record`` appends WindowServed right after the version it was computed from
        (recomputed if another write got in between). A record keyed ``idempotency_key``
        is written once: its retry answers the window it recorded, recording nothing."""
        params = (max_tokens, model, policy, last_n, format_name)
        if record:  # the record is a write: it takes its turn like any other command
            ids = None if idempotency_key is None else [key_id(caller.tenant, idempotency_key, "0")]
            async with self._turns.turn(context_id):
                if ids is not None:
                    recorded = await self._recorded_window(caller, context_id, params, ids[0])
                    if recorded is not None:
                        return recorded
                return await self._window(caller, context_id, params, record=True, ids=ids)
        return await self._window(caller, context_id, params)

    async def _recorded_window(
        self, caller: Caller, context_id: str, params: WindowParams, event_id: str
    ) -> Window | None:
        """The window the record ``event_id`` showed, if it exists (recomputed at the version
        it was computed from: windows are a pure function of a state); DuplicateEventId when
        the key recorded something else (another context, other parameters)."""
        await self._visible(caller, context_id)
        await self._settle()
        found = await self.readmodel.read_small(event_id_sync, event_id)
        if found is None:
            return None
        recs, _ = await self.store.read_all(found[1] - 1, 1)
        rec = recs[0] if recs else None
        if rec is None or rec.stream_id != context_id or not isinstance(rec.event, WindowServed):
            raise DuplicateEventId(event_id)
        max_tokens, model, policy, last_n, format_name = params
        state = await self.time_travel.state_at(context_id, rec.version - 1)
        shown = window(
            state, max_tokens, model=model, policy=policy, last_n=last_n, format_name=format_name
        )
        again, stored = served_event(shown), rec.event
        if (again.message_ids, again.summary_id, again.max_tokens, again.policy, again.model,
                again.format) != (stored.message_ids, stored.summary_id, stored.max_tokens,
                stored.policy, stored.model, stored.format):  # fmt: skip
            raise DuplicateEventId(event_id)
        return shown

    async def _window(
        self,
        caller: Caller,
        context_id: str,
        params: WindowParams,
        *,
        record: bool = False,
        ids: builtins.list[str] | None = None,
    ) -> Window:
        for attempt in range(RETRIES):
            ctx = await self._visible(caller, context_id)
            if ctx.deleted:
                raise ContextIsDeleted(context_id)
            key = (context_id, ctx.content_version, *params)
            result = self._windows.get(key)
            if result is None:
                generation = self._windows.generation
                result = await self.readmodel.read_small(_window_sync, context_id, *params)
                if result is None:  # pragma: no cover (deleted between the two reads)
                    continue
                if result.version == ctx.version:  # else its content version is not known
                    self._windows.put(key, result, generation)
            elif result.version < ctx.version:
                # Only served windows' records since: the same window, at today's version,
                # kept in its place (what a door keeps by the window's identity still serves).
                result = msgspec.structs.replace(result, version=ctx.version)
                self._windows.put(key, result)
            if not record:
                return result
            try:
                written = await self._append(
                    caller, context_id, [served_event(result)], result.version, ids, []
                )
            except VersionConflict:
                if attempt == RETRIES - 1:
                    raise
                await self.projector.catch_up()
                continue
            except DuplicateEventId:
                if ids is None:
                    raise
                written = None
            if ids is not None and (written is None or written.duplicate):
                # The key's record is in the log but was not in this read model (another
                # node or process wrote it): answer the window it recorded, as a replay.
                await self.projector.catch_up()
                recorded = await self._recorded_window(caller, context_id, params, ids[0])
                if recorded is None:  # pragma: no cover (the log has it, the model applied it)
                    raise DuplicateEventId(ids[0])
                return recorded
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
        them). A filter value matches a string equal to it or a JSON value whose text it is;
        a filter key is a top-level key as written (not a path). ``check_metadata_filter``
        says which filters are refused.
        """
        if not 1 <= limit <= 1000:
            raise InvalidCommand("limit must be between 1 and 1000")
        check_metadata_filter(metadata or {})
        await self._settle()
        # The cursor holds the position (as the caller is shown it) of the last context's
        # first event: "p" the log's, for a caller without a tenant; "n" its tenant's.
        kind = "p" if caller.tenant is None else "n"
        before = 2**62 if cursor is None else decode_cursor(kind, cursor)
        if cursor is not None and caller.tenant is not None:
            found = await self.readmodel.read_small(position_sync, caller.tenant, before)
            if found is None or before == 0:
                raise InvalidCommand(f"invalid cursor {cursor!r}")
            before = found
        rows = await self.readmodel.read(
            page_sync, caller.tenant, before, limit + 1, metadata or {}
        )
        more = len(rows) > limit
        rows = rows[:limit]
        following = None
        if more:
            (following,) = await self.positions(caller, [rows[-1].position])
        return ContextPage(
            [r.state() for r in rows],
            None if following is None else encode_cursor(kind, following),
            [ContextSize(r.message_count, r.total_tokens) for r in rows],
        )

    async def positions(
        self, caller: Caller, events: Sequence[RecordedEvent | int]
    ) -> builtins.list[int]:
        """The positions ``caller`` is shown for its ``events`` (or log positions): the log's
        for a caller without a tenant, else its tenant's numbering (``positions``)."""
        logged = [e if isinstance(e, int) else e.position for e in events]
        if caller.tenant is None or not logged:
            return logged
        await self.projector.wait_for(max(logged))
        numbers = await self.readmodel.read_small(numbers_sync, caller.tenant, logged)
        missing = [p for p in logged if p not in numbers]
        if missing:  # not the caller's: never shown, whatever asked for it
            raise NotNumbered(missing[0])
        return [numbers[p] for p in logged]

    async def shown_at(self, caller: Caller, position: int) -> int:
        """The position ``caller`` is shown for the log's ``position``: its last event at or
        before it (``positions``), 0 when it has none."""
        if caller.tenant is None:
            return position
        await self.projector.wait_for(position)
        return await self.readmodel.read_small(number_upto_sync, caller.tenant, position)

    async def log_position(self, caller: Caller, position: int) -> int | None:
        """The log position of what ``caller`` was shown as ``position`` (``positions``);
        None when its tenant has no such event yet."""
        if caller.tenant is None:
            return position
        found = await self.readmodel.read_small(position_sync, caller.tenant, position)
        if found is None:  # perhaps written, not numbered yet
            await self.projector.catch_up()
            found = await self.readmodel.read_small(position_sync, caller.tenant, position)
        return found

    async def audit(self, caller: Caller, after: int, limit: int, filter: LogFilter) -> Audited:
        """The caller's events after ``after`` (a position as it is shown them) that pass
        ``filter`` (its tenant's only, whatever the filter says): at most ``limit``, with
        their positions and the position to continue after."""
        if caller.tenant is not None:
            filter = msgspec.structs.replace(filter, tenant=caller.tenant)
        start = await self.log_position(caller, after)
        if start is None:  # past the tenant's last event: nothing yet, and nothing to say
            return Audited([], [], after)
        events, through = await self.store.read_all(start, limit, filter)
        positions = await self.positions(caller, events)
        if caller.tenant is None:
            return Audited(events, positions, through)
        if len(events) == limit:  # a full page ends at its last event
            following = positions[-1]
        else:  # read through ``through``: continue after the tenant's last event by then
            await self.projector.wait_for(through)
            following = await self.readmodel.read_small(number_upto_sync, caller.tenant, through)
        return Audited(events, positions, max(following, after))

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


def _page_of(state: ContextState, after: int, limit: int, backward: bool) -> MessagePage:
    """``Queries.messages``'s page, cut from a whole state (a past version)."""
    total = len(state.messages)
    if backward:
        end = total if after < 0 else min(after, total)
        seqs = list(range(end - 1, max(0, end - limit) - 1, -1))
        following = seqs[-1] if seqs and seqs[-1] > 0 else None
    else:
        seqs = list(range(after + 1, min(total, after + 1 + limit)))
        following = seqs[-1] if seqs and seqs[-1] < total - 1 else None
    messages = [state.messages[i] for i in seqs]
    return MessagePage(state.context_id, state.version, messages, seqs, following, total)


def _window_sync(
    conn: Any,
    context_id: str,
    max_tokens: int | None,
    model: str | None,
    policy: Policy | None,
    last_n: int | None,
    format_name: str,
) -> Window | None:
    ctx = context_sync(conn, context_id)
    if ctx is None or ctx.deleted:
        return None
    return window_sync(conn, ctx, max_tokens, model, policy, last_n, format_name)
