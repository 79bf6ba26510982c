"""What every MCP request over HTTP goes through: the endpoint's state, the gates, and the
running of one request with the HTTP status its era gives the outcome.

The gates come first, in order: ``Origin`` (403 unless absent, a loopback origin, or
configured: DNS rebinding protection), then the API key (401, as the REST API: same keys, same
tenants), then the key's request rate (429 with ``Retry-After``: the REST API's buckets, so a
key cannot get round its limit by speaking MCP). A JSON-RPC error is answered with 200 in the
handshake era, and in the stateless era with the status the 2026-07-28 revision gives it (400;
404 for an unknown method).
"""

from __future__ import annotations

import asyncio
import logging
import urllib.parse
from typing import Any

from aiohttp import web

from projections.service import Caller, Contexts

from .. import appkeys, ratelimit
from ..auth import CALLER, authenticate
from ..errors import ApiError
from .protocol import (
    INTERNAL_ERROR,
    METHOD_NOT_FOUND,
    Request,
    RpcError,
    Unavailable,
    error_message,
    result_message,
)
from .replies import refuse
from .server import Call, Server
from .sessions import Sessions

log = logging.getLogger("ctxlog.mcp")

PATH = "/mcp"
SESSION_HEADER = "Mcp-Session-Id"
VERSION_HEADER = "MCP-Protocol-Version"
STARTUP_WAIT = 5.0
"""How long a request that needs the contexts service waits for the projector's catch-up at
start before it is answered 503."""
_LOOPBACK = frozenset({"localhost", "127.0.0.1", "::1"})
_MODERN_STATUS = {METHOD_NOT_FOUND: 404, INTERNAL_ERROR: 500}


class Endpoint:
    """What ``/mcp`` keeps between requests: the server, the sessions, the allowed origins."""

    def __init__(self, app: web.Application) -> None:
        self.app = app
        self.server = Server(app[appkeys.VERSION], self.contexts)
        self.sessions = Sessions()
        self.origins = frozenset(app[appkeys.SETTINGS].mcp_allowed_origins)

    async def contexts(self) -> Contexts:
        """The contexts service once it has caught up (waiting a little at start)."""
        if appkeys.status(self.app) == "starting":
            await asyncio.wait({self.app[appkeys.STARTUP]}, timeout=STARTUP_WAIT)
        status = appkeys.status(self.app)
        if status == "starting":
            raise Unavailable("the server is catching up with the log; retry shortly")
        if status == "failed":
            raise Unavailable("the server could not catch up with the log")
        return self.app[appkeys.CONTEXTS]

    def origin_allowed(self, request: web.Request) -> bool:
        """No Origin (not a browser), a loopback origin, or a configured one (``*``: any)."""
        origin = request.headers.get("Origin")
        if origin is None or origin in self.origins or "*" in self.origins:
            return True
        try:
            parts = urllib.parse.urlsplit(origin)
            host = parts.hostname
        except ValueError:
            return False
        return parts.scheme in ("http", "https") and host in _LOOPBACK


ENDPOINT = web.AppKey("mcp_endpoint", Endpoint)


def accepts(request: web.Request, media_type: str) -> bool:
    """Whether the Accept header admits ``media_type`` (no header admits anything)."""
    header = request.headers.get("Accept")
    if header is None:
        return True
    family = media_type.split("/", maxsplit=1)[0] + "/*"
    kinds = {part.split(";")[0].strip().lower() for part in header.split(",")}
    return bool(kinds & {media_type, family, "*/*"})


def gate(request: web.Request) -> Caller | web.Response:
    """The caller, or the refusal: 403 for a foreign Origin, 401 without a valid key, 429
    when the key has used up its requests."""
    endpoint = request.app[ENDPOINT]
    if not endpoint.origin_allowed(request):
        return refuse(403, "this Origin may not use the MCP endpoint")
    try:
        caller = authenticate(request.app[appkeys.KEYRING], request)
    except ApiError as e:
        return refuse(401, e.message, {"WWW-Authenticate": 'Bearer realm="ctxlog"'})
    request[CALLER] = caller  # whose bucket the request draws on, as under /api/
    try:
        ratelimit.take(request)
    except ApiError as e:
        return refuse(429, e.message, {"Retry-After": str(e.details["retry_after"])})
    return caller


async def run(call: Call, message: Request, server: Server) -> tuple[int, dict[str, Any]]:
    """Run one request: the HTTP status and the JSON-RPC response, as its era wants them."""
    try:
        result = await server.handle(call, message.method, message.params)
    except Unavailable as e:
        return 503, error_message(message.id, e)
    except RpcError as e:
        status = _MODERN_STATUS.get(e.code, 400) if call.modern else 200
        return status, error_message(message.id, e)
    except Exception:
        log.exception("MCP request %s failed", message.method)
        return 500, error_message(message.id, RpcError(INTERNAL_ERROR, "internal error"))
    return 200, result_message(message.id, result)
