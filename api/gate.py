"""One gate for every door: what a request to ``/api/`` or ``/mcp`` must pass before its handler.

In order:

1. ``Host`` (403): a loopback name, the address the server binds, or a configured name
   (``CTXLOG_ALLOWED_HOSTS``). A DNS-rebinding page reaches a local server under its own host
   name, so its requests are refused even though they arrive on loopback.
2. ``Origin`` (403): absent (not a browser), a loopback origin, the server's own (same host
   and port as ``Host``), or configured (``CTXLOG_ALLOWED_ORIGINS``). A web page on another
   site must not drive a server on this machine, open or not.
3. ``Content-Type`` (415): a request that may change something (POST, PUT, PATCH, DELETE)
   with a body sends JSON, and one without a body does not name a type an HTML form sends
   (forms and ``text/plain`` reach any server without the browser asking it first; an empty
   form still names its type). An empty body of another type (HTTP clients add
   ``application/octet-stream`` to a bodiless POST) is let through.
4. The API key (401; the same keys and tenants for every door), then the caller's request rate
   (429 with ``Retry-After``; one bucket per key, whichever door it comes through).

The gate raises ``ApiError``; each door renders it in its own shape (``errors.py`` picks the
renderer by path), so the decision is made once and the answer is the one its client
understands. ``/``, the probes (``/healthz``, ``/readyz``, ``/livez``), ``/openapi.json``,
``/docs`` and ``/metrics`` (which has its own token, ``metrics_token``) are not gated: they hold
no data, and probes and scrapers (Kubernetes sends the pod's address as ``Host``) must reach
them.
"""

from __future__ import annotations

import ipaddress
import urllib.parse

from aiohttp import web
from aiohttp.typedefs import Middleware

from projections.service import Caller

from . import appkeys, ratelimit
from .auth import CALLER, authenticate
from .errors import ApiError, Handler
from .settings import Settings, is_wildcard

GATED_PREFIXES = ("/api/", "/mcp")
"""Paths behind the gate."""
WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})
FORM_TYPES = frozenset({"application/x-www-form-urlencoded", "multipart/form-data", "text/plain"})
"""What a page can send to another site without the browser asking first (CORS "simple")."""
_LOOPBACK_NAMES = frozenset({"localhost"})


def gated(path: str) -> bool:
    """Whether a request for ``path`` must pass the gate."""
    return path.startswith(GATED_PREFIXES[0]) or path == GATED_PREFIXES[1]


def _split_host(value: str) -> tuple[str, str | None] | None:
    """(host, port) of a ``Host`` header value, the host lowercased without brackets; None
    when it is not a host at all."""
    try:
        parts = urllib.parse.urlsplit(f"//{value}")
        return (parts.hostname or "", None if parts.port is None else str(parts.port))
    except ValueError:
        return None


def _loopback(host: str) -> bool:
    if host in _LOOPBACK_NAMES or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def host_allowed(settings: Settings, header: str | None) -> bool:
    """Whether a ``Host`` header names this server: a loopback name, the bound address, or
    one of ``allowed_hosts`` (a bare name allows it on any port; ``*`` allows any)."""
    if header is None:
        return False
    split = _split_host(header.strip())
    if split is None or not split[0]:
        return False
    host, port = split
    if _loopback(host):
        return True
    bound = _split_host(settings.host)
    if bound is not None and not is_wildcard(settings.host) and host == bound[0]:
        return True
    for entry in settings.allowed_hosts:
        if entry == "*":
            return True
        allowed = _split_host(entry)
        if allowed is not None and allowed[0] == host and allowed[1] in (None, port):
            return True
    return False


def origin_allowed(settings: Settings, origin: str | None, host: str | None) -> bool:
    """No Origin (not a browser), a loopback origin, the server's own (its host and port are
    the request's ``Host``), or one of ``allowed_origins`` (``*``: any)."""
    if origin is None:
        return True
    allowed = settings.allowed_origins
    if origin in allowed or "*" in allowed:
        return True
    try:
        parts = urllib.parse.urlsplit(origin)
        name, port = parts.hostname, parts.port
    except ValueError:
        return False
    if parts.scheme not in ("http", "https") or not name:
        return False
    if _loopback(name):
        return True
    # The server's own page: the same host and port as the request's Host (a port left out
    # is the scheme's default on both sides).
    own = _split_host(host or "")
    default = "443" if parts.scheme == "https" else "80"
    return own is not None and (own[0], own[1] or default) == (name, str(port or default))


def _is_json(media_type: str) -> bool:
    kind, _, subtype = media_type.partition("/")
    return kind == "application" and (subtype == "json" or subtype.endswith("+json"))


class Verdicts:
    """The gate's answers for the ``Host`` and ``Origin`` values it has judged: a server
    sees a handful of distinct ones, and parsing them again for every request (urlsplit,
    ipaddress) cost about 5% of a window read. Bounded: past ``LIMIT`` values (a client
    sending a new one each time) it judges without remembering."""

    LIMIT = 1024

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._hosts: dict[str | None, bool] = {}
        self._origins: dict[tuple[str | None, str | None], bool] = {}

    def host(self, header: str | None) -> bool:
        """``host_allowed`` for this server."""
        verdict = self._hosts.get(header)
        if verdict is None:
            verdict = host_allowed(self.settings, header)
            if len(self._hosts) < self.LIMIT:
                self._hosts[header] = verdict
        return verdict

    def origin(self, origin: str | None, host: str | None) -> bool:
        """``origin_allowed`` for this server."""
        if origin is None:
            return True
        verdict = self._origins.get((origin, host))
        if verdict is None:
            verdict = origin_allowed(self.settings, origin, host)
            if len(self._origins) < self.LIMIT:
                self._origins[origin, host] = verdict
        return verdict


def admit(request: web.Request, verdicts: Verdicts) -> Caller:
    """The caller a request stands for, kept on the request; ApiError 403 for a foreign Host
    or Origin, 415 for a write that names a media type that is not JSON, 401 without a valid
    key, 429 when the key has used up its requests."""
    headers = request.headers
    host = headers.get("Host")
    if not verdicts.host(host):
        raise ApiError(403, "forbidden", "this Host is not a name of this server")
    if not verdicts.origin(headers.get("Origin"), host):
        raise ApiError(403, "forbidden", "this Origin may not use this server")
    if request.method in WRITES and "Content-Type" in headers:
        media_type = request.content_type
        if not _is_json(media_type) and (media_type in FORM_TYPES or request.body_exists):
            raise ApiError(
                415,
                "unsupported_media_type",
                f"the body must be application/json, not {media_type}",
            )
    caller = authenticate(request.app[appkeys.KEYRING], request)
    request[CALLER] = caller  # whose bucket the request draws on
    ratelimit.take(request)
    return caller


def middleware(settings: Settings) -> Middleware:
    """The gate of a server with ``settings``: admit every request to a gated path before
    its handler."""
    verdicts = Verdicts(settings)

    @web.middleware
    async def gate(request: web.Request, handler: Handler) -> web.StreamResponse:
        if gated(request.path):
            admit(request, verdicts)
        return await handler(request)

    return gate
