"""MCP over Streamable HTTP at ``/mcp``: both protocol eras on one endpoint.

A POST whose ``MCP-Protocol-Version`` header names a stateless-era version (or one this server
has never heard of, so that it is told which it speaks) goes to ``stateless.py``; so does a
header-less POST carrying the stateless ``_meta`` envelope (to be told the header is missing).
Everything else is the handshake era (``handshake.py``): sessions, a GET event stream, DELETE.

After the gates (``endpoint.py``: Origin, API key) a POST must be ``application/json`` (415),
from a client that accepts JSON (406), within the REST API's body limit (413). Bad input is
always a 4xx, never a 5xx; a body that does not arrive in time is a 408, as for the REST API.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from .. import appkeys
from ..rest import openapi
from ..rest.openapi import operation
from ..rest.routes import routes
from . import handshake, stateless, streams
from .endpoint import ENDPOINT, PATH, SESSION_HEADER, VERSION_HEADER, Endpoint, accepts, gate
from .protocol import HANDSHAKE_VERSIONS, MODERN_VERSIONS, RpcError, decode, has_envelope
from .replies import error_response, refuse


@operation(
    "Model Context Protocol: send a JSON-RPC message",
    tag="mcp",
    body=dict[str, Any],
    response=dict[str, Any],
    errors=(404,),
    description=(
        "Streamable HTTP, both protocol eras: with `MCP-Protocol-Version: 2026-07-28` each "
        "request stands alone (`_meta` envelope, `Mcp-Method`/`Mcp-Name` headers); otherwise "
        "`initialize` opens a session (`Mcp-Session-Id`). 202 for notifications and "
        "responses; `subscriptions/listen` answers with an event stream. 403 for an Origin "
        "that is not allowed, 406 when the client does not accept JSON."
    ),
)
async def post(request: web.Request) -> web.StreamResponse:
    """One JSON-RPC message (or, for a 2025-03-26 session, a batch)."""
    caller = gate(request)
    if isinstance(caller, web.Response):
        return caller
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
        return await stateless.handle(request, caller, value)
    return await handshake.handle(request, caller, value)


def _params(value: dict[str, Any]) -> dict[str, Any]:
    params = value.get("params")
    return params if isinstance(params, dict) else {}


@operation(
    "Model Context Protocol: a session's event stream",
    tag="mcp",
    response=str,
    content_type="text/event-stream",
    errors=(404,),
    description=(
        "Handshake era only: server-sent events carrying the session's notifications (resource "
        "updates). 405 in the stateless era, 406 without `Accept: text/event-stream`, 409 when "
        "the session already has one."
    ),
)
async def get(request: web.Request) -> web.StreamResponse:
    """Open the event stream of the session the request names."""
    caller = gate(request)
    if isinstance(caller, web.Response):
        return caller
    if not accepts(request, "text/event-stream"):
        return refuse(406, "the client must accept text/event-stream")
    if request.headers.get(VERSION_HEADER) in MODERN_VERSIONS:
        return refuse(405, "the stateless era has no GET stream", {"Allow": "POST"})
    session = await handshake.session_of(request, caller)
    if isinstance(session, web.Response):
        return session
    if session.streaming:
        return refuse(409, "this session's event stream is already open")
    return await streams.event_stream(request, session)


@operation(
    "Model Context Protocol: end a session",
    tag="mcp",
    status=204,
    errors=(404,),
    description="Handshake era only: ends the session named by `Mcp-Session-Id`.",
)
async def delete(request: web.Request) -> web.StreamResponse:
    """End the session the request names."""
    caller = gate(request)
    if isinstance(caller, web.Response):
        return caller
    if request.headers.get(VERSION_HEADER) in MODERN_VERSIONS:
        return refuse(405, "the stateless era has no sessions", {"Allow": "POST"})
    session = await handshake.session_of(request, caller)
    if isinstance(session, web.Response):
        return session
    await request.app[ENDPOINT].sessions.close(session.id)
    return web.Response(status=204)


async def _shutdown(app: web.Application) -> None:
    await app[ENDPOINT].sessions.close_all()


def setup(app: web.Application) -> None:
    """Serve MCP at ``/mcp`` (POST, GET, DELETE) and document it in the OpenAPI document."""
    app[ENDPOINT] = Endpoint(app)
    table = [
        web.route("POST", PATH, post),
        web.route("GET", PATH, get, allow_head=False),
        web.route("DELETE", PATH, delete),
    ]
    app.add_routes(table)
    app.on_shutdown.append(_shutdown)
    doc = openapi.document([*routes, *table], app[appkeys.VERSION])
    _document(doc["paths"][PATH])
    app[appkeys.OPENAPI] = doc


_ERROR_OUT = openapi.REF.format(name="ErrorOut")
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


_ANSWERS = {
    "post": (
        "200", "202", "400", "401", "403", "404", "406", "408", "413", "415", "429", "500", "503",
    ),
    "get": ("200", "400", "401", "403", "404", "405", "406", "409", "429", "500"),
    "delete": ("204", "400", "401", "403", "404", "405", "429", "500"),
}  # fmt: skip
"""Every status each method of /mcp answers with (and none it cannot: GET and DELETE never
need the contexts service)."""
_DESCRIPTIONS = {
    "202": "A notification or a response was accepted",
    "400": "Malformed JSON-RPC, a bad envelope or headers, no session; or a JSON-RPC error "
    "of the stateless era",
    "403": "The Origin header names an origin that may not use the endpoint",
    "404": "An unknown or ended session; or, stateless, an unknown method (-32601)",
    "405": "The stateless era has no sessions (POST only)",
    "406": "The Accept header does not admit what the endpoint answers with",
    "408": "The request body did not arrive in time",
    "409": "The session's event stream is already open",
    "429": "This API key has used up its requests for now (rate limiting); see Retry-After",
}


def _document(ops: dict[str, Any]) -> None:
    """What the generic operation document cannot say about a JSON-RPC endpoint: which
    statuses it answers with, and that its errors are JSON-RPC error objects."""
    errors = {"application/json": {"schema": {"anyOf": [_RPC_ERROR, {"$ref": _ERROR_OUT}]}}}
    for method, op in ops.items():
        known = op["responses"]
        answers: dict[str, Any] = {}
        for code in _ANSWERS[method]:
            described = _DESCRIPTIONS.get(code) or known[code]["description"]
            answers[code] = {**known.get(code, {}), "description": described}
            if code >= "400":
                answers[code]["content"] = errors
        op["responses"] = answers
    ops["post"]["responses"]["200"]["content"] = {
        "application/json": {"schema": {"type": ["object", "array"]}},
        "text/event-stream": {"schema": {"type": "string"}},
    }
