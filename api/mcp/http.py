"""MCP over Streamable HTTP at ``/mcp``: both protocol eras on one endpoint.

A POST whose ``MCP-Protocol-Version`` header names a stateless-era version (or one this server
has never heard of, so that it is told which it speaks) goes to ``stateless.py``; so does a
header-less POST carrying the stateless ``_meta`` envelope (to be told the header is missing).
Everything else is the handshake era (``handshake.py``): sessions, a GET event stream, DELETE.

After the gate every door shares (``api/gate.py``: Origin, API key, rate) a POST must be
``application/json`` (415), from a client that accepts JSON (406), within the REST API's body
limit (413). Bad input is always a 4xx, never a 5xx; a body that does not arrive in time is a
408, as for the REST API.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

from aiohttp import web

from .. import appkeys
from ..auth import caller
from ..errors import RENDERERS, ApiError, error_headers
from ..rest import openapi
from ..rest.openapi import operation
from . import handshake, stateless, streams
from .endpoint import ENDPOINT, PATH, SESSION_HEADER, VERSION_HEADER, Endpoint, accepts
from .protocol import HANDSHAKE_VERSIONS, MODERN_VERSIONS, RpcError, decode, has_envelope
from .replies import error_response, refuse

_RPC_ERROR = {
    "type": "object",
    "description": "A JSON-RPC error response (id null when the request's id was not read)",
    "required": ["jsonrpc", "id", "error"],
    "properties": {
        "jsonrpc": {"const": "2.0"},
        "id": {"type": ["string", "integer", "null"]},
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {"code": {"type": "integer"}, "message": {"type": "string"}, "data": {}},
        },
    },
}
_ERRORS = {"anyOf": [_RPC_ERROR, {"$ref": openapi.REF.format(name="ErrorOut")}]}
"""An error answer of /mcp: a JSON-RPC error object (``ErrorOut`` only where aiohttp itself
answers before the endpoint's code runs)."""
_NOTES = {
    202: "A notification or a response was accepted",
    400: "Malformed JSON-RPC, a bad envelope or headers, no session; or a JSON-RPC error "
    "of the stateless era",
    403: "The Origin header names an origin that may not use the endpoint",
    404: "An unknown or ended session; or, stateless, an unknown method (-32601)",
    405: "The stateless era has no sessions (POST only)",
    406: "The Accept header does not admit what the endpoint answers with",
    408: "The request body did not arrive in time",
    409: "The session's event stream is already open",
    429: "This API key has used up its requests for now (rate limiting), or holds as many "
    "sessions, or live connections (event streams, subscriptions), as it may; see Retry-After",
    503: "The server is catching up with the log or its database is unavailable, or it holds "
    "as many sessions or live connections as it may; see Retry-After",
}
"""What each status means at /mcp (the generic wording says it of the REST API)."""


@operation(
    "Model Context Protocol: send a JSON-RPC message",
    tag="mcp",
    body=dict[str, Any],
    contents={
        "application/json": {"schema": {"type": ["object", "array"]}},
        "text/event-stream": {"schema": {"type": "string"}},
    },
    answers=(200, 202, 400, 401, 403, 404, 406, 408, 413, 415, 429, 500, 503),
    notes=_NOTES,
    error_schema=_ERRORS,
    description=(
        "Streamable HTTP, both protocol eras: with `MCP-Protocol-Version: 2026-07-28` each "
        "request stands alone (`_meta` envelope, `Mcp-Method`/`Mcp-Name` headers); otherwise "
        "`initialize` opens a session (`Mcp-Session-Id`). 202 for notifications and "
        "responses; `subscriptions/listen` answers with an event stream. 403 for an Origin "
        "that is not allowed, 406 when the client does not accept JSON."
    ),
)
async def mcp_message(request: web.Request) -> web.StreamResponse:
    """One JSON-RPC message (or, for a 2025-03-26 session, a batch)."""
    if request.content_type != "application/json":
        return refuse(415, "the body must be application/json")
    if not accepts(request, "application/json"):
        return refuse(406, "the client must accept application/json")
    settings = request.app[appkeys.SETTINGS]
    try:
        async with asyncio.timeout(settings.body_timeout):
            body = await request.read()
    except web.HTTPRequestEntityTooLarge:
        return refuse(413, f"the body is over the limit of {settings.max_body_bytes} bytes")
    except TimeoutError:
        return refuse(408, f"the body did not arrive within {settings.body_timeout:g} s")
    try:
        value = decode(body)
    except RpcError as e:
        return error_response(400, e)
    version = request.headers.get(VERSION_HEADER)
    session_id = request.headers.get(SESSION_HEADER)
    envelope = isinstance(value, dict) and has_envelope(_params(value))
    if (version is not None and version not in HANDSHAKE_VERSIONS) or (
        version is None and session_id is None and envelope
    ):
        return await stateless.handle(request, caller(request), value)
    return await handshake.handle(request, caller(request), value)


def _params(value: dict[str, Any]) -> dict[str, Any]:
    params = value.get("params")
    return params if isinstance(params, dict) else {}


@operation(
    "Model Context Protocol: a session's event stream",
    tag="mcp",
    response=str,
    content_type="text/event-stream",
    # An event stream is a live connection: 429 past the key's, 503 past the server's.
    answers=(200, 400, 401, 403, 404, 405, 406, 409, 429, 500, 503),
    notes=_NOTES,
    error_schema=_ERRORS,
    description=(
        "Handshake era only: server-sent events carrying the session's notifications (resource "
        "updates). 405 in the stateless era, 406 without `Accept: text/event-stream`, 409 when "
        "the session already has one."
    ),
)
async def mcp_stream(request: web.Request) -> web.StreamResponse:
    """Open the event stream of the session the request names."""
    if not accepts(request, "text/event-stream"):
        return refuse(406, "the client must accept text/event-stream")
    if request.headers.get(VERSION_HEADER) in MODERN_VERSIONS:
        return refuse(405, "the stateless era has no GET stream", {"Allow": "POST"})
    session = await handshake.session_of(request, caller(request))
    if isinstance(session, web.Response):
        return session
    if session.streaming:
        return refuse(409, "this session's event stream is already open")
    return await streams.event_stream(request, session)


@operation(
    "Model Context Protocol: end a session",
    tag="mcp",
    status=204,
    answers=(204, 400, 401, 403, 404, 405, 429, 500),
    notes=_NOTES,
    error_schema=_ERRORS,
    description="Handshake era only: ends the session named by `Mcp-Session-Id`.",
)
async def mcp_end_session(request: web.Request) -> web.StreamResponse:
    """End the session the request names."""
    if request.headers.get(VERSION_HEADER) in MODERN_VERSIONS:
        return refuse(405, "the stateless era has no sessions", {"Allow": "POST"})
    session = await handshake.session_of(request, caller(request))
    if isinstance(session, web.Response):
        return session
    await request.app[ENDPOINT].sessions.close(session.id)
    return web.Response(status=204)


async def _shutdown(app: web.Application) -> None:
    await app[ENDPOINT].sessions.close_all()


def _render_error(error: ApiError, request_id: str) -> web.Response:
    """A refusal by the gate (or aiohttp) as a JSON-RPC error without an id."""
    return refuse(error.status, error.message, error_headers(error, request_id))


routes = [
    web.route("POST", PATH, mcp_message),
    web.route("GET", PATH, mcp_stream, allow_head=False),
    web.route("DELETE", PATH, mcp_end_session),
]
"""The MCP door's routes, joined with the REST API's in ``create_app``."""


async def _sweeping(app: web.Application) -> AsyncIterator[None]:
    # Idle sessions end (their followers with them) even when no request comes.
    sweeper = asyncio.create_task(app[ENDPOINT].sessions.run_sweeper(), name="ctxlog-mcp-sweeper")
    yield
    sweeper.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await sweeper


def sessions_of(app: web.Application) -> Callable[[], tuple[int, int]]:
    """(open sessions, their resource subscriptions) of the app's endpoint, for metrics."""
    sessions = app[ENDPOINT].sessions
    return lambda: (len(sessions), sessions.subscriptions())


def setup(app: web.Application) -> None:
    """Keep the endpoint's state (its sessions, its server) in the app, answer errors at
    ``/mcp`` in JSON-RPC's shape, end idle sessions as they expire and every session at
    shutdown."""
    app[ENDPOINT] = Endpoint(app)
    app[RENDERERS][PATH] = _render_error
    app.cleanup_ctx.append(_sweeping)
    app.on_shutdown.append(_shutdown)
