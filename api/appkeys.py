"""The application's typed state: one ``web.AppKey`` per long-lived object.

Kept apart from ``app.py`` so that handlers can reach the state without importing the factory.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from typing import Any

from aiohttp import web

from eventstore import EventStore
from projections.service import Contexts

from .auth import KeyRing
from .errors import ApiError
from .settings import Settings


class StreamEnd:
    """How an event stream run under ``Live.streaming`` ended."""

    shutdown = False
    """True when the server's shutdown ended it."""


class Live:
    """The open WebSockets and event streams, so that a shutdown can end them instead of
    waiting for clients that never hang up."""

    def __init__(self) -> None:
        self.websockets: set[web.WebSocketResponse] = set()
        self.streams: set[asyncio.Task[Any]] = set()
        self.closing = False

    @contextlib.contextmanager
    def streaming(self) -> Iterator[StreamEnd]:
        """Run the body as one of the open event streams. A shutdown (``close``) cancels it:
        that cancellation ends the body quietly, with ``shutdown`` set, so the response can
        still finish normally; a client that left ends it quietly too. Any other
        cancellation propagates."""
        task = asyncio.current_task()
        assert task is not None
        end = StreamEnd()
        self.streams.add(task)
        try:
            yield end
        except asyncio.CancelledError:
            if not self.closing:
                raise
            task.uncancel()
            end.shutdown = True
        except ConnectionResetError:
            pass  # the client left
        finally:
            self.streams.discard(task)

    async def close(self) -> None:
        """Close every WebSocket (1001, going away) and end every event stream."""
        self.closing = True
        for ws in list(self.websockets):
            await ws.close(code=1001, message=b"server shutting down")
        for task in list(self.streams):
            task.cancel()


SETTINGS = web.AppKey("settings", Settings)
KEYRING = web.AppKey("keyring", KeyRing)
STORE = web.AppKey("store", EventStore)
CONTEXTS = web.AppKey("contexts", Contexts)
STARTUP = web.AppKey("startup", asyncio.Task[None])
LIVE = web.AppKey("live", Live)
OPENAPI = web.AppKey("openapi", dict[str, Any])
VERSION = web.AppKey("version", str)


def status(app: web.Application) -> str:
    """``ok`` once the projector has caught up, ``failed`` if its start failed, else
    ``starting``."""
    task = app.get(STARTUP)
    if task is None or not task.done():
        return "starting"
    if task.cancelled() or task.exception() is not None:
        return "failed"
    return "ok"


def contexts(request: web.Request) -> Contexts:
    """The contexts service, once it is ready to answer (503 ``starting`` before)."""
    app = request.app
    if status(app) != "ok":
        raise ApiError(503, "starting", "the server is catching up with the log; retry shortly")
    return app[CONTEXTS]


def log_reader(request: web.Request, tenant: str | None) -> Contexts:
    """The contexts service, to read the log as a caller of ``tenant`` is shown it. A caller
    without a tenant is shown the log's own positions, which need no read model: answered
    while the server starts. A tenant's numbering is the projector's (503 ``starting``)."""
    return request.app[CONTEXTS] if tenant is None else contexts(request)


def store(request: web.Request) -> EventStore:
    """The event store (readable as soon as the app is up)."""
    return request.app[STORE]
