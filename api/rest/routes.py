"""The whole API in one route table, and the handlers that describe the server itself.

Context handlers live in ``handlers.py``, WebSocket and SSE in ``live.py``; they are all
registered here, so this file is the one list of every path and method.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from aiohttp import web

from projections.retry import Health

from .. import appkeys, metrics
from . import checkpoints, docs, handlers, live, schemas, views, wire
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


def _health(request: web.Request, now: Health | None = None) -> web.Response:
    now = now or appkeys.health(request.app)
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
    "Readiness (for a load balancer): /healthz, and the projector within the lag limits",
    response=schemas.Health,
    tag="meta",
    public=True,
    also=(503,),
    description=_HEALTH_DESCRIPTION
    + " Also 503 `behind` while the read model is further behind the log than"
    " `ready_max_lag_seconds` or `ready_max_lag_events` allow, and `failed` while the log"
    " cannot be read.",
)
async def get_readiness(request: web.Request) -> web.Response:
    """200 ``ok`` when reads of the read model are served and it keeps up; 503 with the
    reason otherwise."""
    return _health(request, await appkeys.readiness(request.app))


@routes.get("/livez")
@operation(
    "Liveness (for a restart policy): the process answers; says nothing about the database",
    response=schemas.Health,
    tag="meta",
    public=True,
)
async def get_liveness(request: web.Request) -> web.Response:
    """Always 200 ``ok`` while the event loop answers."""
    body = schemas.Health(status="ok", version=request.app[appkeys.VERSION])
    return wire.json_response(body)


metrics_routes = web.RouteTableDef()
"""``/metrics``, in the table only when the metrics are on (``create_app``)."""


@metrics_routes.get("/metrics")
@operation(
    "Prometheus metrics (text format): requests, appends, commits, the projector, caches",
    response=str,
    content_type="text/plain",
    tag="meta",
    public=True,
    database=False,
    errors=(401,),
    notes={401: "`metrics_token` is set and the request does not carry it as a Bearer token"},
)
async def get_metrics(request: web.Request) -> web.Response:
    """Every metric in Prometheus's text exposition format (``api/metrics.py``)."""
    return await metrics.get_metrics(request)


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
    ("POST", "/contexts/{id}/checkpoints", checkpoints.save_checkpoint),
    ("POST", "/contexts/{id}/checkpoints/writes", checkpoints.record_writes),
    ("POST", "/contexts/{id}/checkpoints/remove", checkpoints.remove_checkpoints),
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

HOT_PATHS = (V1 + "/contexts/{id}/messages", V1 + "/contexts/{id}/window")
"""Paths an agent's every turn requests (appends and window reads), tried first."""


def registration_order(table: Iterable[web.AbstractRouteDef]) -> list[web.AbstractRouteDef]:
    """``table`` in the order to register it: the hot paths first, then every other path in
    its order, each path's methods together (one resource per path).

    Why: aiohttp tries the resources under one prefix (``/api/v1/contexts``: 16 of them) in
    the order they were added, a regular expression each, so a window read was matched after
    six others (5.5 us of a ~80 us request, measured with this table); first, 2.5 us. The
    OpenAPI document keeps the table's order; only the router sees this one.
    """
    table = list(table)
    first: dict[str, int] = {}
    for index, route in enumerate(table):
        first.setdefault(_path_of(route), index)

    def rank(item: tuple[int, web.AbstractRouteDef]) -> tuple[int, int, int]:
        index, route = item
        path = _path_of(route)
        hot = HOT_PATHS.index(path) if path in HOT_PATHS else len(HOT_PATHS)
        return hot, first[path], index

    return [route for _, route in sorted(enumerate(table), key=rank)]


def _path_of(route: web.AbstractRouteDef) -> str:
    return route.path if isinstance(route, web.RouteDef) else repr(route)
