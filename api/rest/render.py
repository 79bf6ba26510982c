"""Projection states and events into response bodies, and request bodies into commands:
the only place where the API's shapes meet the layer below."""

from __future__ import annotations

from collections.abc import Iterable

import msgspec

from eventstore import RecordedEvent
from projections import ContextState, Message, SearchPage, StateDiff, Window
from projections.service import (
    Caller,
    ContextPage,
    Contexts,
    ContextSize,
    Lineage,
    MessagePage,
    NewMessage,
    Whole,
)

from .. import formats
from ..errors import invalid
from . import schemas
from .schemas import (
    MCP_DEFAULT_MAX_TOKENS,
    AppendMessages,
    ContextList,
    ContextListItem,
    ContextOut,
    EventOut,
    LineageOut,
    MessageIn,
    MessageOut,
    MessagePageOut,
    SummaryOut,
    VersionRef,
)


def render_window(window: Window, fmt: str | None = None) -> schemas.Window:
    """A window as the API's answer (its twin in ``schemas.reads``, field for field), with
    its ``messages`` in request format ``fmt`` when one is asked for."""
    out = msgspec.convert(window, schemas.Window, from_attributes=True)
    if fmt is None:
        return out
    rendered = formats.render(fmt, window)
    if fmt == "anthropic":
        return msgspec.structs.replace(out, messages=rendered.messages, system=rendered.system)
    return msgspec.structs.replace(out, messages=rendered.messages)


def window_body(window: Window, fmt: str | None = None) -> Window | schemas.Window:
    """What a window's answer encodes. Without a format, the window itself: its JSON is the
    API's ``schemas.Window`` field for field (tests/test_rest_window_body.py holds them
    equal), and converting it first cost a window read about a tenth of its time."""
    return window if fmt is None else render_window(window, fmt)


def render_diff(diff: StateDiff) -> schemas.StateDiff:
    """A diff as the API's answer."""
    return msgspec.convert(diff, schemas.StateDiff, from_attributes=True)


def render_search(page: SearchPage) -> schemas.SearchPage:
    """A page of search hits as the API's answer."""
    return msgspec.convert(page, schemas.SearchPage, from_attributes=True)


def render_message(m: Message) -> MessageOut:
    """A message of a state as a response body."""
    return MessageOut(
        id=m.message_id,
        role=m.role,
        content=m.content,
        name=m.name,
        metadata=m.metadata,
        version=m.version,
        tokens=m.tokens,
        edited_version=m.edited_version,
        redacted=m.redacted,
        content_hash=m.content_hash,
    )


def render_message_page(page: MessagePage) -> MessagePageOut:
    """A page of messages as a response body."""
    return MessagePageOut(
        context_id=page.context_id,
        version=page.version,
        total=page.total,
        messages=[render_message(m) for m in page.messages],
        seqs=page.seqs,
        next_after=page.next_after,
    )


def _parent(state: ContextState) -> VersionRef | None:
    p = state.parent
    return None if p is None else VersionRef(context_id=p.context_id, version=p.version)


def render_context(
    state: ContextState,
    *,
    mcp: bool = False,
    messages: bool = True,
    total_tokens: int | None = None,
    next_url: str | None = None,
) -> ContextOut:
    """A state as the context body; ``mcp`` adds ``metadata.mcp.window`` (rendered, not
    stored); ``messages=False`` leaves the messages out (``total_tokens`` then says what
    they add up to, when the state no longer holds them)."""
    metadata = state.metadata
    total = state.total_tokens if total_tokens is None else total_tokens
    if mcp:
        mcp_meta = metadata.get("mcp")
        mcp_meta = dict(mcp_meta) if isinstance(mcp_meta, dict) else {}
        mcp_meta["window"] = {
            "max_tokens": state.window.max_tokens or MCP_DEFAULT_MAX_TOKENS,
            "current_tokens": total,
        }
        metadata = {**metadata, "mcp": mcp_meta}
    return ContextOut(
        id=state.context_id,
        version=state.version,
        messages=[render_message(m) for m in state.messages] if messages else [],
        metadata=metadata,
        window=state.window,
        summaries=[
            SummaryOut(
                id=s.summary_id,
                text=s.text,
                through_message_id=s.through_message_id,
                version=s.version,
                tokens=s.tokens,
            )
            for s in state.summaries
        ],
        parent=_parent(state),
        token_encoding=state.token_encoding,
        total_tokens=total,
        created_at=state.created_at,
        updated_at=state.updated_at,
        updated_by=state.updated_by,
        next=next_url,
    )


_encode = msgspec.json.Encoder().encode
_NO_MESSAGES = b'"messages":[]'
PAGE = 1000
"""Messages per page of a ``next`` link (the most the messages endpoint gives)."""


def messages_after(context_id: str, version: int, given: int) -> str:
    """The link to the page of the context's messages (at ``version``) after the first
    ``given`` of them."""
    after = "" if not given else f"&after={given - 1}"
    return f"/api/v1/contexts/{context_id}/messages?version={version}{after}&limit={PAGE}"


def fit(messages: Iterable[Message], budget: int) -> tuple[list[MessageOut], int]:
    """The first of ``messages`` whose JSON, comma-joined, fits ``budget`` bytes, and the
    budget left after them (negative: a message did not fit)."""
    shown: list[MessageOut] = []
    left = budget + 1  # the messages are joined by commas: the first one has none
    for message in messages:
        out = render_message(message)
        left -= len(_encode(out)) + 1
        if left < 0:
            break
        shown.append(out)
    return shown, left


def render_within(state: ContextState, budget: int) -> ContextOut:
    """A state as the context body with as many of its first messages as ``budget`` bytes
    of their JSON take (the whole answer's rule, for states from history: a past version, a
    replayed write), and a ``next`` link to the rest. O(what is returned)."""
    shown, _ = fit(state.messages, budget)
    cut = len(shown) < len(state.messages)
    next_url = messages_after(state.context_id, state.version, len(shown)) if cut else None
    body = render_context(state, messages=False, next_url=next_url)
    return msgspec.structs.replace(body, messages=shown)


def render_whole(whole: Whole) -> tuple[list[bytes], str | None]:
    """A whole-context answer as the pieces of its JSON, and its ``next`` link (None: every
    message is in it). The messages are the read model's stored JSON, put between the
    head's pieces, neither encoded again nor joined (``wire.json_pieces_response``)."""
    state = whole.state
    given = whole.count
    next_url = messages_after(state.context_id, state.version, given) if whole.left else None
    head = _encode(
        render_context(state, messages=False, total_tokens=whole.total_tokens, next_url=next_url)
    )
    if not given:
        return [head], next_url
    # The first '"messages":[]' is the field itself: it comes third, after an id and a
    # number, and a JSON string cannot hold it unescaped.
    at = head.index(_NO_MESSAGES) + len(_NO_MESSAGES) - 1
    pieces = [head[:at]]
    for run in whole.messages:
        pieces += (run, b",")
    pieces[-1] = head[at:]
    return pieces, next_url


def render_list(page: ContextPage) -> ContextList:
    """A page of contexts as the listing body (sizes from the page, not from messages: a
    listing does not load them)."""
    return ContextList(
        contexts=[_list_item(c, z) for c, z in zip(page.contexts, page.sizes, strict=True)],
        next_cursor=page.next_cursor,
    )


def _list_item(state: ContextState, size: ContextSize) -> ContextListItem:
    return ContextListItem(
        id=state.context_id,
        version=state.version,
        metadata=state.metadata,
        window=state.window,
        message_count=size.message_count,
        total_tokens=size.total_tokens,
        parent=_parent(state),
        created_at=state.created_at,
        updated_at=state.updated_at,
        updated_by=state.updated_by,
    )


def render_event(e: RecordedEvent, position: int, *, tenant: bool = False) -> EventOut:
    """A recorded event as a response body, at the ``position`` the caller is shown
    (``Contexts.positions``); the tenant is left out: it is the caller's.

    A caller with a ``tenant`` gets an empty ``hash``: the log's chain hash covers the event
    before, perhaps another tenant's, and the log position, which a tenant could recover by
    trying positions against two adjacent events of its own."""
    return EventOut(
        position=position,
        context_id=e.stream_id,
        version=e.version,
        id=e.event_id,
        type=e.type,
        data=e.event,
        actor=e.metadata.actor,
        metadata=msgspec.structs.replace(e.metadata, tenant=None),
        recorded_at=e.recorded_at,
        hash="" if tenant else e.hash,
    )


async def render_events(
    contexts: Contexts, caller: Caller, events: list[RecordedEvent]
) -> list[EventOut]:
    """``events`` (the caller's) as response bodies, at the positions the caller is shown."""
    positions = await contexts.positions(caller, events)
    tenant = caller.tenant is not None
    return [render_event(e, p, tenant=tenant) for e, p in zip(events, positions, strict=True)]


def render_lineage(lineage: Lineage) -> LineageOut:
    """A lineage as a response body."""
    return LineageOut(
        id=lineage.context_id,
        ancestors=[VersionRef(context_id=c, version=v) for c, v in lineage.ancestors],
        forks=[VersionRef(context_id=c, version=v) for c, v in lineage.forks],
    )


def new_message(m: MessageIn) -> NewMessage:
    """A request's message as the service's NewMessage."""
    return NewMessage(
        role=m.role,
        content=m.content,
        name=m.name,
        metadata=m.metadata,
        message_id=None if m.id is None else str(m.id),
    )


def new_messages(body: AppendMessages) -> list[NewMessage]:
    """The messages of an append body: ``messages`` or the one message given inline."""
    inline = body.role is not None or body.content is not None
    if body.messages is not None:
        if inline or body.name is not None or body.metadata is not None or body.id is not None:
            raise invalid("give either one message or messages: [...], not both", "$.messages")
        return [new_message(m) for m in body.messages]
    if body.role is None:
        raise invalid("a message needs a role (or give messages: [...])", "$.role")
    if body.content is None:
        raise invalid("a message needs content", "$.content")
    return [
        NewMessage(
            role=body.role,
            content=body.content,
            name=body.name,
            metadata=body.metadata or {},
            message_id=None if body.id is None else str(body.id),
        )
    ]
