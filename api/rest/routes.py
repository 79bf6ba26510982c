"""The whole API in one route table, and the handlers that describe the server itself.

Context handlers live in ``handlers.py``, WebSocket and SSE in ``live.py``; they are all
registered here, so this file is the one list of every path and method.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from .. import appkeys
from . import docs, handlers, live, schemas, views, wire
from .openapi import operation

routes = web.RouteTableDef()

V1 = "/api/v1"


@routes.get("/")
@operation("What this server is", response=schemas.Root, tag="meta", public=True)
async def get_server_info(request: web.Request) -> web.Response:
    """Name, version and where the docs are."""
    body = schemas.Root(name="ctxlog", version=request.app[appkeys.VERSION], docs_url="/docs")
    return wire.json_response(body)


_HEALTH_DESCRIPTION = (
    "503 with status `starting` while the projector catches up at start, `behind` while it"
    " retries after a transient error (e.g. a full disk), `failed` while it retries after any"
    " other error or when the server could not start; `reason` says why, and `Retry-After`"
    " when to ask again."
)


def _health(request: web.Request) -> web.Response:
    now = appkeys.health(request.app)
    body = schemas.Health(
        status=now.status, version=request.app[appkeys.VERSION], reason=now.reason,
        retry_after=now.retry_after or None,
    )  # fmt: skip
    response = wire.json_response(body, 200 if now.status == "ok" else 503)
    if now.retry_after:
        response.headers["Retry-After"] = str(now.retry_after)
    return response


@routes.get("/healthz")
@operation(
    "Health: ok once the projector has caught up with the log and keeps applying it",
    response=schemas.Health,
    tag="meta",
    public=True,
    also=(503,),
    description=_HEALTH_DESCRIPTION,
)
async def get_health(request: web.Request) -> web.Response:
    """200 ``ok`` when ready; 503 ``starting``, ``behind`` or ``failed`` otherwise."""
    return _health(request)


@routes.get("/readyz")
@operation(
    "Readiness (for a load balancer): the same answer as /healthz",
    response=schemas.Health,
    tag="meta",
    public=True,
    also=(503,),
    description=_HEALTH_DESCRIPTION,
)
async def get_readiness(request: web.Request) -> web.Response:
    """200 ``ok`` when reads of the read model are served; 503 with the reason otherwise."""
    return _health(request)


@routes.get("/openapi.json")
@operation("This document", response=dict[str, Any], tag="meta", public=True)
async def get_openapi(request: web.Request) -> web.Response:
    """The OpenAPI 3.1 document, generated from the schemas."""
    return wire.json_response(request.app[appkeys.OPENAPI])


@routes.get("/docs")
@operation(
    "The API reference as HTML (works offline)",
    response=str,
    content_type="text/html",
    tag="meta",
    public=True,
)
async def get_docs(request: web.Request) -> web.Response:
    """A self-contained HTML page rendered from the OpenAPI document."""
    return web.Response(text=docs.render(request.app[appkeys.OPENAPI]), content_type="text/html")


_TABLE = [
    ("POST", "/contexts", handlers.create_context),
    ("GET", "/contexts", handlers.list_contexts),
    ("GET", "/contexts/{id}", handlers.get_context),
    ("DELETE", "/contexts/{id}", handlers.delete_context),
    ("POST", "/contexts/{id}/messages", handlers.append_messages),
    ("GET", "/contexts/{id}/messages", views.list_messages),
    ("PATCH", "/contexts/{id}/messages/{message_id}", handlers.edit_message),
    ("POST", "/contexts/{id}/messages/{message_id}/redact", handlers.redact_message),
    ("PATCH", "/contexts/{id}/metadata", handlers.patch_metadata),
    ("GET", "/contexts/{id}/window", views.get_window),
    ("POST", "/contexts/{id}/window", views.record_window),
    ("PUT", "/contexts/{id}/window", handlers.configure_window),
    ("POST", "/contexts/{id}/summaries", handlers.add_summary),
    ("POST", "/contexts/{id}/rollback", handlers.rollback),
    ("POST", "/contexts/{id}/fork", handlers.fork),
    ("GET", "/contexts/{id}/events", views.get_history),
    ("GET", "/contexts/{id}/diff", views.get_diff),
    ("GET", "/contexts/{id}/diff/parent", views.get_parent_diff),
    ("GET", "/contexts/{id}/lineage", views.get_lineage),
    ("GET", "/events", views.list_events),
    ("GET", "/search", views.search_messages),
    ("POST", "/subjects/{subject}/erase", handlers.erase_subject),
    ("GET", "/events/stream", live.stream_events),
    ("GET", "/ws/{id}", live.context_websocket),
    ("POST", "/mcp/contexts", views.mcp_create_context),
    ("GET", "/mcp/contexts/{id}", views.mcp_get_context),
    ("GET", "/mcp/capabilities", views.mcp_capabilities),
]

for _method, _path, _handler in _TABLE:
    routes.route(_method, V1 + _path)(_handler)
