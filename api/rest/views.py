"""The read-side endpoints: a context's history, window, diff and lineage; the audit query
over the whole log; and the MCP-compatible views. Each handler decodes, calls, encodes."""

from __future__ import annotations

import msgspec
from aiohttp import web

import projections as pj
from eventstore import WindowSettings
from projections.audit import audit_filter
from projections.overhead import DEFAULT_FORMAT

from .. import appkeys
from ..auth import caller
from ..errors import invalid
from . import render, schemas, wire
from .consistency import context_query, reached
from .openapi import operation
from .schemas import MCP_DEFAULT_MAX_TOKENS

# -- history and views ------------------------------------------------------------------------


@operation(
    "The context's raw events",
    query=schemas.HistoryQuery,
    response=schemas.EventPage,
    errors=(404,),
    tag="history",
)
async def get_history(request: web.Request) -> web.Response:
    """Events of one context, a page at a time, forward or backward."""
    context_id, params = await context_query(request, schemas.HistoryQuery)
    backward = params.direction == "backward"
    events = await appkeys.contexts(request).history(
        caller(request),
        context_id,
        from_version=params.from_version,
        limit=params.limit,
        backward=backward,
    )
    following = None
    if len(events) == params.limit:
        following = events[-1].version + (-1 if backward else 1)
        following = following if following >= 1 else None
    body = schemas.EventPage(
        events=await render.render_events(appkeys.contexts(request), caller(request), events),
        next_from_version=following,
    )
    return wire.json_response(body)


@operation(
    "A page of the context's messages, now or as they were at a version",
    query=schemas.MessagesQuery,
    response=schemas.MessagePageOut,
    errors=(404,),
    tag="messages",
    description=(
        "Now: O(limit) from the read model. At a version: from history (a snapshot and at"
        " most a few events folded), then the page of it. A 10,000-message context is read"
        " a page at a time instead of in one answer."
    ),
)
async def list_messages(request: web.Request) -> web.Response:
    """Messages after (or, backward, before) a place, oldest or newest first."""
    context_id, params = await context_query(request, schemas.MessagesQuery)
    backward = params.direction == "backward"
    page = await appkeys.contexts(request).messages(
        caller(request),
        context_id,
        after=-1 if params.after is None else params.after,
        limit=params.limit,
        backward=backward,
        version=params.version,
    )
    return wire.json_response(render.render_message_page(page), version=page.version)


@operation(
    "The context window a model would be shown, with its accounting",
    tag="windows",
    query=schemas.WindowQuery,
    response=schemas.Window,
    errors=(404, 422),
    description=(
        "Reads only: to record what a model is shown (a window.served event), POST the same "
        "parameters to this path (`record_window`)."
    ),
)
async def get_window(request: web.Request) -> web.Response:
    """The window under the context's settings or the query's overrides; O(window)."""
    if "record" in request.query:
        # It once was a query parameter; a GET must not write (a link or a prefetch would).
        raise invalid(
            "a GET never writes: POST these parameters to this path to record the window",
            "$.record",
            "query",
        )
    params = wire.query(request, schemas.WindowQuery)
    return await _window(request, params, record=False)


@operation(
    "Serve a window and record it: what the model is shown, as a window.served event",
    tag="windows",
    body=schemas.RecordWindow,
    body_required=False,
    response=schemas.Window,
    headers=("Idempotency-Key",),
    errors=(404, 422),
    description=(
        "The answer's version (and ETag) is the one the window was computed at, so"
        " `?version=` of it is exactly what the model saw. The record comes right after it,"
        " and a write with that ETag as If-Match still goes on (only recorded windows came"
        " since): append the model's reply with it, and a change by anyone else in between"
        " is a 412. With an Idempotency-Key the record is written once: a retry answers"
        " the window it recorded (computed again at the version it was computed at) and"
        " records nothing."
    ),
)
async def record_window(request: web.Request) -> web.Response:
    """The window under the body's overrides, recorded in the context's history; O(window)."""
    params = await wire.read_optional_json(request, schemas.RecordWindow)
    return await _window(request, params, record=True)


async def _window(
    request: web.Request, params: schemas.WindowQuery, *, record: bool
) -> web.Response:
    context_id = wire.path_uuid(request)
    await reached(request, context_id, params)
    answers = request.app[appkeys.WINDOW_ANSWERS]
    generation = answers.generation
    window = await appkeys.contexts(request).window(
        caller(request),
        context_id,
        max_tokens=params.max_tokens,
        model=params.model,
        policy=params.policy,
        last_n=params.last_n,
        record=record,
        format_name=params.format or DEFAULT_FORMAT,
        idempotency_key=wire.idempotency_key(request) if record else None,
    )
    body = answers.encoded(window, params.format, generation)
    return wire.json_pieces_response([body], version=window.version)


@operation(
    "What changed between two versions",
    tag="history",
    query=schemas.DiffQuery,
    response=schemas.StateDiff,
    errors=(404,),
)
async def get_diff(request: web.Request) -> web.Response:
    """The diff from version ``from`` to ``to`` (default: now)."""
    context_id, params = await context_query(request, schemas.DiffQuery)
    result = await appkeys.contexts(request).diff(
        caller(request), context_id, params.from_, params.to
    )
    return wire.json_response(render.render_diff(result))


@operation(
    "What a fork has that its parent has not",
    tag="history",
    query=schemas.ParentDiffQuery,
    response=schemas.StateDiff,
    errors=(404, 422),
    notes={422: "The context is not a fork"},
)
async def get_parent_diff(request: web.Request) -> web.Response:
    """The diff from the fork's parent (at ``parent_version``, default: now) to the fork now."""
    context_id, params = await context_query(request, schemas.ParentDiffQuery)
    result = await appkeys.contexts(request).diff_parent(
        caller(request), context_id, parent_version=params.parent_version
    )
    return wire.json_response(render.render_diff(result))


@operation(
    "Where the context came from, and its forks",
    response=schemas.LineageOut,
    errors=(404,),
    tag="history",
)
async def get_lineage(request: web.Request) -> web.Response:
    """Ancestors (parent first) and direct forks."""
    context_id = wire.path_uuid(request)
    lineage = await appkeys.contexts(request).lineage(caller(request), context_id)
    return wire.json_response(render.render_lineage(lineage))


@operation(
    "Full-text search over the current messages of the caller's contexts",
    query=schemas.SearchQuery,
    response=schemas.SearchPage,
    errors=(404,),
    notes={404: "context_id names no context of the caller's (or a deleted one)"},
    tag="messages",
    description=(
        "Every word of `q` must appear (a trailing `*` matches a prefix); best match first"
        " (SQLite FTS5, bm25). Only what contexts hold now is found: an edited message by its"
        " new text, a redacted one not at all."
    ),
)
async def search_messages(request: web.Request) -> web.Response:
    """A page of hits in the caller's live contexts (or in ``context_id``'s)."""
    params = wire.query(request, schemas.SearchQuery)
    if not params.q.split():
        raise invalid("q needs at least one word", "$.q", "query")
    try:
        page = await appkeys.contexts(request).search(
            caller(request),
            params.q,
            context_id=None if params.context_id is None else str(params.context_id),
            limit=params.limit,
            cursor=params.cursor,
        )
    except pj.InvalidCommand as e:  # what is left once q has words: a cursor it did not issue
        raise invalid(str(e), "$.cursor", "query") from None
    return wire.json_response(render.render_search(page))


@operation(
    "Audit query over the whole log (the caller's tenant)",
    query=schemas.AuditQuery,
    response=schemas.AuditPage,
    tag="audit",
    description=(
        "With API keys, positions (`after`, `next_after`, each event's `position`) number the "
        "caller's tenant's events 1, 2, 3, ...: nothing in them depends on other tenants."
    ),
)
async def list_events(request: web.Request) -> web.Response:
    """Events after a position, filtered by type, context, actor and time."""
    who = caller(request)
    params = wire.query(request, schemas.AuditQuery)
    flt = audit_filter(  # the same filter as ``ctxlog audit``
        types=params.type,
        context_id=None if params.context_id is None else str(params.context_id),
        tenant=who.tenant,
        actor=params.actor,
        since=params.since,
        until=params.until,
    )
    service = appkeys.log_reader(request, who.tenant)
    page = await service.audit(who, params.after, params.limit, flt)
    tenant = who.tenant is not None
    body = schemas.AuditPage(
        events=[
            render.render_event(e, p, tenant=tenant)
            for e, p in zip(page.events, page.positions, strict=True)
        ],
        next_after=page.next_after,
    )
    return wire.json_response(body)


# -- MCP-compatible views ---------------------------------------------------------------------


@operation(
    "Create a context (MCP view: metadata.mcp.window)",
    body=schemas.CreateContext,
    body_required=False,
    response=schemas.ContextOut,
    status=201,
    headers=("Idempotency-Key",),
    errors=(422,),
    tag="mcp",
)
async def mcp_create_context(request: web.Request) -> web.Response:
    """Like ``POST /contexts``, with a 4096-token window unless one is given."""
    body = await wire.read_optional_json(request, schemas.CreateContext)
    window = WindowSettings() if body.window is None else body.window.settings()
    if window.max_tokens is None:
        window = msgspec.structs.replace(window, max_tokens=MCP_DEFAULT_MAX_TOKENS)
    service = appkeys.contexts(request)
    who = caller(request)
    written = await service.create(
        who,
        metadata=body.metadata,
        window=window,
        idempotency_key=wire.idempotency_key(request),
    )
    state = await service.get(who, written.context_id, version=written.version)
    response = wire.json_response(
        render.render_context(state, mcp=True), 201, version=state.version,
        replayed=written.duplicate,
    )  # fmt: skip
    response.headers["Location"] = f"/api/v1/mcp/contexts/{state.context_id}"
    return response


@operation(
    "Get a context (MCP view: metadata.mcp.window)",
    response=schemas.ContextOut,
    errors=(404,),
    tag="mcp",
)
async def mcp_get_context(request: web.Request) -> web.Response:
    """The context with ``metadata.mcp.window = {max_tokens, current_tokens}``."""
    context_id = wire.path_uuid(request)
    state = await appkeys.contexts(request).get(caller(request), context_id)
    return wire.json_response(render.render_context(state, mcp=True), version=state.version)


@operation(
    "What this server can do (MCP view)",
    response=schemas.Capabilities,
    tag="mcp",
    database=False,
)
async def mcp_capabilities(request: web.Request) -> web.Response:
    """The capability list MCP clients look for."""
    body = schemas.Capabilities(
        version=request.app[appkeys.VERSION], capabilities=schemas.MCP_CAPABILITIES
    )
    return wire.json_response(body)
