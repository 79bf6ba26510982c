"""The read-side endpoints: a context's history, window, diff and lineage; the audit query
over the whole log; and the MCP-compatible views. Each handler decodes, calls, encodes."""

from __future__ import annotations

import msgspec
from aiohttp import web

from eventstore import WindowSettings
from projections.audit import audit_filter

from . import appkeys, render, schemas, wire
from .auth import caller
from .openapi import operation
from .schemas import MCP_DEFAULT_MAX_TOKENS

# -- history and views ------------------------------------------------------------------------


@operation(
    "The context's raw events",
    query=schemas.HistoryQuery,
    response=schemas.EventPage,
    errors=(404,),
    tag="events",
)
async def history(request: web.Request) -> web.Response:
    """Events of one context, a page at a time, forward or backward."""
    context_id = wire.path_uuid(request)
    params = wire.query(request, schemas.HistoryQuery)
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
    "The context window a model would be shown, with its accounting",
    query=schemas.WindowQuery,
    response=schemas.WindowOut,
    errors=(404, 422),
    description="`record=true` appends a WindowServed event recording exactly what was shown.",
)
async def get_window(request: web.Request) -> web.Response:
    """The window under the context's settings or the query's overrides; O(window)."""
    context_id = wire.path_uuid(request)
    params = wire.query(request, schemas.WindowQuery)
    window = await appkeys.contexts(request).window(
        caller(request),
        context_id,
        max_tokens=params.max_tokens,
        model=params.model,
        policy=params.policy,
        last_n=params.last_n,
        record=params.record,
    )
    return wire.json_response(window, version=window.version)


@operation(
    "What changed between two versions",
    query=schemas.DiffQuery,
    response=schemas.DiffOut,
    errors=(404,),
)
async def get_diff(request: web.Request) -> web.Response:
    """The diff from version ``from`` to ``to`` (default: now)."""
    context_id = wire.path_uuid(request)
    params = wire.query(request, schemas.DiffQuery)
    result = await appkeys.contexts(request).diff(
        caller(request), context_id, params.from_, params.to
    )
    return wire.json_response(result)


@operation("Where the context came from, and its forks", response=schemas.LineageOut, errors=(404,))
async def get_lineage(request: web.Request) -> web.Response:
    """Ancestors (parent first) and direct forks."""
    context_id = wire.path_uuid(request)
    lineage = await appkeys.contexts(request).lineage(caller(request), context_id)
    return wire.json_response(render.render_lineage(lineage))


@operation(
    "Audit query over the whole log (the caller's tenant)",
    query=schemas.AuditQuery,
    response=schemas.AuditPage,
    tag="events",
    description=(
        "With API keys, positions (`after`, `next_after`, each event's `position`) number the "
        "caller's tenant's events 1, 2, 3, ...: nothing in them depends on other tenants."
    ),
)
async def audit(request: web.Request) -> web.Response:
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
async def mcp_create(request: web.Request) -> web.Response:
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
async def mcp_get(request: web.Request) -> web.Response:
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
