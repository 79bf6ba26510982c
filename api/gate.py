"""One gate for every door: what a request to ``/api/`` or ``/mcp`` must pass before its handler.

In order: ``Origin`` (403 unless absent, a loopback origin, the server's own, or configured:
a web page on another site must not drive a server on this machine), then the API key (401;
the same keys and tenants for REST and MCP), then the caller's request rate (429 with
``Retry-After``; one bucket per key, whichever door it comes through). The gate raises
``ApiError``; each door renders it in its own shape (``errors.py`` picks the renderer by path),
so the decision is made once and the answer is the one its client understands.
"""

from __future__ import annotations

import urllib.parse

from aiohttp import web

from projections.service import Caller

from . import appkeys, ratelimit
from .auth import CALLER, authenticate
from .errors import ApiError, Handler

GATED_PREFIXES = ("/api/", "/mcp")
"""Paths behind the gate; the root, ``/healthz``, ``/openapi.json`` and ``/docs`` are public."""
_LOOPBACK = frozenset({"localhost", "127.0.0.1", "::1"})


def gated(path: str) -> bool:
    """Whether a request for ``path`` must pass the gate."""
    return path.startswith(GATED_PREFIXES[0]) or path == GATED_PREFIXES[1]


def origin_allowed(request: web.Request) -> bool:
    """No Origin (not a browser), a loopback origin, the server's own, or a configured one
    (``*``: any)."""
    origin = request.headers.get("Origin")
    if origin is None:
        return True
    allowed = request.app[appkeys.SETTINGS].mcp_allowed_origins
    if origin in allowed or "*" in allowed:
        return True
    try:
        parts = urllib.parse.urlsplit(origin)
        host = parts.hostname
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and host in _LOOPBACK


def admit(request: web.Request) -> Caller:
    """The caller a request stands for, kept on the request; ApiError 403 for a foreign
    Origin, 401 without a valid key, 429 when the key has used up its requests."""
    if not origin_allowed(request):
        raise ApiError(403, "forbidden", "this Origin may not use this server")
    caller = authenticate(request.app[appkeys.KEYRING], request)
    request[CALLER] = caller  # whose bucket the request draws on
    ratelimit.take(request)
    return caller


@web.middleware
async def gate_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Admit every request to a gated path before its handler runs."""
    if gated(request.path):
        admit(request)
    return await handler(request)
