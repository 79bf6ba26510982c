"""What each tool does: decode nothing, decide nothing, call the contexts service and shape
its answer into the tool's result Struct (the REST API's bodies where it has them)."""

from __future__ import annotations

import builtins
import uuid
from datetime import datetime

import msgspec

import projections as pj
from projections.overhead import DEFAULT_FORMAT
from projections.service import Caller, Contexts

from .. import formats
from ..rest import render, schemas
from . import schemas as s

_MESSAGES = msgspec.json.Decoder(builtins.list[schemas.MessageOut])
PAGE = 1000
"""Messages read at a time when a context answer continues past its first message."""


def _id(value: uuid.UUID) -> str:
    return str(value)


async def create(
    contexts: Contexts, caller: Caller, a: s.CreateContextArgs, budget: int
) -> msgspec.Struct:
    written = await contexts.create(
        caller,
        metadata=a.metadata,
        window=None if a.window is None else a.window.settings(),
        idempotency_key=a.idempotency_key,
    )
    state = await contexts.get(caller, written.context_id, version=written.version)
    return render.render_context(state)


async def append(
    contexts: Contexts, caller: Caller, a: s.AppendMessagesArgs, budget: int
) -> msgspec.Struct:
    context_id = _id(a.context_id)
    if a.format is None:
        if a.system is not None:
            raise formats.FormatError("system goes with format anthropic", "$.system")
        native = msgspec.convert({"messages": a.messages}, s.NativeMessages)
        messages = [render.new_message(m) for m in native.messages]
    else:
        messages, pending = formats.parse(a.format, a.messages, system=a.system)
        if not messages:
            raise formats.FormatError("give system or at least one message", "$.messages")
        await formats.check_answers(contexts, caller, context_id, pending)
    written = await contexts.append(
        caller,
        context_id,
        messages,
        expected_version=a.expected_version,
        idempotency_key=a.idempotency_key,
    )
    return s.Change(
        context_id=written.context_id, version=written.version, message_ids=written.message_ids
    )


async def get(
    contexts: Contexts, caller: Caller, a: s.GetContextArgs, budget: int
) -> msgspec.Struct:
    if a.version is not None and a.at is not None:
        raise pj.InvalidCommand("give version or at, not both")
    return await context_part(
        contexts, caller, _id(a.context_id), budget, version=a.version, at=a.at,
        start=a.messages_from,
    )  # fmt: skip


async def context_part(
    contexts: Contexts,
    caller: Caller,
    context_id: str,
    budget: int,
    *,
    version: int | None = None,
    at: datetime | None = None,
    start: int = 0,
) -> s.ContextPart:
    """The context (now, at ``version`` or as of ``at``) with as many of its messages from
    ``start`` on as ``budget`` bytes of their JSON take: the REST answer's rule, continued
    by ``next_messages_from`` instead of a link (an MCP client may speak nothing else).
    Now, from the first message: the assembled whole answer, O(what is returned)."""
    if version is None and at is None and start == 0:
        whole = await contexts.whole(caller, context_id, budget=budget)
        body = render.render_context(whole.state, messages=False, total_tokens=whole.total_tokens)
        shown = _MESSAGES.decode(b"[" + b",".join(whole.messages) + b"]")
        following = whole.count if whole.left else None
    else:
        state = await contexts.get(
            caller, context_id, version=version, at=at, include_messages=False
        )
        if state.messages:  # a past state, whole from history
            return part_of(state, start, budget)
        # Now: pages of the read model, O(what is returned).
        body = render.render_context(state, messages=False)
        shown, following = await _messages_within(
            contexts, caller, context_id, state.version, start, budget
        )
    return _part(body, shown, start, following)


def part_of(state: pj.ContextState, start: int, budget: int) -> s.ContextPart:
    """``context_part`` of a state that holds its messages (a past version's)."""
    shown, _ = render.fit(state.messages[start:], budget)
    following = start + len(shown) if start + len(shown) < len(state.messages) else None
    return _part(render.render_context(state, messages=False), shown, start, following)


def _part(
    body: schemas.ContextOut,
    shown: builtins.list[schemas.MessageOut],
    start: int,
    following: int | None,
) -> s.ContextPart:
    fields = {f: getattr(body, f) for f in body.__struct_fields__ if f not in ("messages", "next")}
    return s.ContextPart(
        **fields, messages=shown, messages_from=start, next_messages_from=following
    )


async def _messages_within(
    contexts: Contexts, caller: Caller, context_id: str, version: int, start: int, budget: int
) -> tuple[builtins.list[schemas.MessageOut], int | None]:
    """The messages from ``start`` on that fit ``budget`` bytes, read a page at a time, and
    where the next answer starts (None: they reach the last message)."""
    shown: builtins.list[schemas.MessageOut] = []
    left, after = budget + 1, start - 1  # + 1: the first message needs no comma
    while True:
        page = await contexts.messages(
            caller, context_id, after=after, limit=PAGE, version=version
        )
        fitted, left = render.fit(page.messages, left - 1)
        shown += fitted
        if len(fitted) < len(page.messages):
            return shown, start + len(shown)
        if page.next_after is None:
            return shown, None
        after = page.next_after


async def window(
    contexts: Contexts, caller: Caller, a: s.GetWindowArgs, budget: int
) -> msgspec.Struct:
    window = await contexts.window(
        caller,
        _id(a.context_id),
        max_tokens=a.max_tokens,
        model=a.model,
        policy=a.policy,
        last_n=a.last_n,
        record=a.record,
        format_name=a.format or DEFAULT_FORMAT,
    )
    return render.render_window(window, a.format)


async def history(
    contexts: Contexts, caller: Caller, a: s.GetHistoryArgs, budget: int
) -> msgspec.Struct:
    backward = a.direction == "backward"
    events = await contexts.history(
        caller, _id(a.context_id), from_version=a.from_version, limit=a.limit, backward=backward
    )
    following = None
    if len(events) == a.limit:
        following = events[-1].version + (-1 if backward else 1)
        following = following if following >= 1 else None
    return schemas.EventPage(
        events=await render.render_events(contexts, caller, events), next_from_version=following
    )


async def rollback(
    contexts: Contexts, caller: Caller, a: s.RollbackArgs, budget: int
) -> msgspec.Struct:
    written = await contexts.rollback(
        caller,
        _id(a.context_id),
        a.to_version,
        reason=a.reason,
        expected_version=a.expected_version,
        idempotency_key=a.idempotency_key,
    )
    return s.Change(context_id=written.context_id, version=written.version)


async def fork(
    contexts: Contexts, caller: Caller, a: s.ForkArgs, budget: int
) -> msgspec.Struct:
    written = await contexts.fork(
        caller,
        _id(a.context_id),
        at_version=a.at_version,
        metadata=a.metadata,
        idempotency_key=a.idempotency_key,
    )
    state = await contexts.get(
        caller, written.context_id, version=written.version, include_messages=False
    )
    parent = state.parent
    assert parent is not None  # a fork's first event names its parent
    return s.Forked(
        context_id=written.context_id,
        version=written.version,
        parent_id=parent.context_id,
        parent_version=parent.version,
    )


async def diff(
    contexts: Contexts, caller: Caller, a: s.DiffArgs, budget: int
) -> msgspec.Struct:
    result = await contexts.diff(caller, _id(a.context_id), a.from_version, a.to_version)
    return render.render_diff(result)


async def summary(
    contexts: Contexts, caller: Caller, a: s.AddSummaryArgs, budget: int
) -> msgspec.Struct:
    # Named here so the result can say which summary it added.
    summary_id = str(uuid.uuid4()) if a.idempotency_key is None else None
    written = await contexts.add_summary(
        caller,
        _id(a.context_id),
        a.text,
        _id(a.through_message_id),
        expected_version=a.expected_version,
        idempotency_key=a.idempotency_key,
        summary_id=summary_id,
    )
    if summary_id is None:
        state = await contexts.get(
            caller, written.context_id, version=written.version, include_messages=False
        )
        summary_id = state.summaries[-1].summary_id if state.summaries else None
    return s.Change(context_id=written.context_id, version=written.version, summary_id=summary_id)


async def edit(
    contexts: Contexts, caller: Caller, a: s.EditMessageArgs, budget: int
) -> msgspec.Struct:
    written = await contexts.edit(
        caller,
        _id(a.context_id),
        _id(a.message_id),
        a.content,
        expected_version=a.expected_version,
        idempotency_key=a.idempotency_key,
    )
    return s.Change(
        context_id=written.context_id, version=written.version, message_ids=[_id(a.message_id)]
    )


async def redact(
    contexts: Contexts, caller: Caller, a: s.RedactMessageArgs, budget: int
) -> msgspec.Struct:
    written = await contexts.redact(
        caller,
        _id(a.context_id),
        _id(a.message_id),
        reason=a.reason,
        expected_version=a.expected_version,
        idempotency_key=a.idempotency_key,
    )
    return s.Change(
        context_id=written.context_id, version=written.version, message_ids=[_id(a.message_id)]
    )


async def search(
    contexts: Contexts, caller: Caller, a: s.SearchMessagesArgs, budget: int
) -> msgspec.Struct:
    page = await contexts.search(
        caller,
        a.query,
        context_id=None if a.context_id is None else _id(a.context_id),
        limit=a.limit,
        cursor=a.cursor,
    )
    return render.render_search(page)


async def list(
    contexts: Contexts, caller: Caller, a: s.ListContextsArgs, budget: int
) -> msgspec.Struct:
    page = await contexts.list(caller, cursor=a.cursor, limit=a.limit, metadata=a.metadata or None)
    return render.render_list(page)
