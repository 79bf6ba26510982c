"""What every MCP request over HTTP goes through: the endpoint's state, and the running of one
request with the HTTP status its era gives the outcome.

Before any of it, every request has passed the gate all doors share (``api/gate.py``: Origin,
API key, request rate). A JSON-RPC error is answered with 200 in the handshake era, and in the
stateless era with the status the 2026-07-28 revision gives it (400; 404 for an unknown
method).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiohttp import web

from projections.service import Contexts

from .. import appkeys, ratelimit
from ..tracing import TRACING
from .protocol import (
    INTERNAL_ERROR,
    METHOD_NOT_FOUND,
    Request,
    RpcError,
    Unavailable,
    error_message,
    result_message,
)
from .server import Call, Server
from .sessions import Sessions

log = logging.getLogger("ctxlog.mcp")

PATH = "/mcp"
SESSION_HEADER = "Mcp-Session-Id"
VERSION_HEADER = "MCP-Protocol-Version"
STARTUP_WAIT = 5.0
"""How long a request that needs the contexts service waits for the projector's catch-up at
start before it is answered 503."""
_MODERN_STATUS = {METHOD_NOT_FOUND: 404, INTERNAL_ERROR: 500}


class Endpoint:
    """What ``/mcp`` keeps between requests: the server and the sessions."""

    def __init__(self, app: web.Application) -> None:
        settings = app[appkeys.SETTINGS]
        self.app = app
        tracing = app.get(TRACING)
        traced = tracing.mcp_request if tracing is not None else None
        self.server = Server(
            app[appkeys.VERSION], self.contexts, traced=traced,
            budget=settings.response_budget_bytes,
        )  # fmt: skip
        self.sessions = Sessions(
            limit=settings.mcp_max_sessions,
            per_key=settings.mcp_sessions_per_key,
            per_tenant=settings.mcp_sessions_per_tenant,
            idle=settings.mcp_session_idle,
        )
        self.live = app[ratelimit.LIMITS].live
        """The live connection slots a session's follower takes one of (with WebSockets and
        event streams)."""

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


ENDPOINT = web.AppKey("mcp_endpoint", Endpoint)


def accepts(request: web.Request, media_type: str) -> bool:
    """Whether the Accept header admits ``media_type`` (no header admits anything)."""
    header = request.headers.get("Accept")
    if header is None:
        return True
    family = media_type.split("/", maxsplit=1)[0] + "/*"
    kinds = {part.split(";")[0].strip().lower() for part in header.split(",")}
    return bool(kinds & {media_type, family, "*/*"})


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
