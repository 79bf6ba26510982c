"""The outermost middleware: each request's route, status and duration, into the metrics and
the access log (either may be off; with both off the middleware is not installed).

It runs outside ``errors.error_middleware``, so it sees the status a client really got,
errors included, and the request id that middleware assigned (``X-Request-ID``: one place).
"""

from __future__ import annotations

import asyncio
import time

from aiohttp import web
from aiohttp.typedefs import Middleware

from . import logs
from .auth import CALLER
from .errors import REQUEST_ID, Handler
from .metrics import UNMATCHED, Metrics

CLIENT_GONE = 499
"""The status recorded for a request whose client left before the answer (as nginx does)."""


def route_of(request: web.Request) -> str:
    """The route template a request matched (``/api/v1/contexts/{id}``), never its path."""
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else UNMATCHED


def middleware(metrics: Metrics | None, access_log: bool) -> Middleware:
    """The middleware recording into ``metrics`` (None: off) and the access log (if on)."""

    @web.middleware
    async def observe(request: web.Request, handler: Handler) -> web.StreamResponse:
        start = time.perf_counter()
        status = 500
        try:
            response = await handler(request)
        except web.HTTPException as e:  # a redirect, passed on by the error middleware
            status = e.status
            raise
        except (asyncio.CancelledError, ConnectionResetError):
            status = CLIENT_GONE
            raise
        else:
            status = response.status
            return response
        finally:
            seconds = time.perf_counter() - start
            route = route_of(request)
            if metrics is not None:
                metrics.observe_request(request.method, route, status, seconds)
            if access_log:
                caller = request.get(CALLER)
                logs.access(
                    request.method, route, status, seconds, request.get(REQUEST_ID),
                    caller.tenant if caller else None, caller.actor if caller else None,
                )  # fmt: skip

    return observe
