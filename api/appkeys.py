"""The application's typed state: one ``web.AppKey`` per long-lived object.

Kept apart from ``app.py`` so that handlers can reach the state without importing the factory.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from aiohttp import web

from eventstore import EventStore
from projections.retry import Health
from projections.service import Contexts

from .auth import KeyRing
from .errors import ApiError
from .settings import Settings

if TYPE_CHECKING:  # the REST package imports this module
    from .rest.answers import WindowAnswers


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
WINDOW_ANSWERS: web.AppKey[WindowAnswers] = web.AppKey("window_answers")


def status(app: web.Application) -> str:
    """``ok`` once the projector has caught up, ``failed`` if its start failed, else
    ``starting``."""
    task = app.get(STARTUP)
    if task is None or not task.done():
        return "starting"
    if task.cancelled() or task.exception() is not None:
        return "failed"
    return "ok"


def health(app: web.Application) -> Health:
    """``status`` (the startup gate) with the projector's own health: ``behind`` or
    ``failed`` with a reason while it retries after an error, whether at start or later."""
    service = app.get(CONTEXTS)
    projector = service.projector.health() if service is not None else None
    if projector is not None and projector.status != "ok":
        return projector
    task = app.get(STARTUP)
    if task is None or not task.done():
        return Health(status="starting", reason="catching up with the log", retry_after=1)
    if task.cancelled():
        return Health(status="failed", reason="the start was cancelled")
    error = task.exception()
    if error is not None:
        return Health(status="failed", reason=f"{type(error).__name__}: {error}"[:500])
    if service is not None and not service.projector.running:
        return Health(status="failed", reason="the projector is not running")
    return Health()


async def readiness(app: web.Application) -> Health:
    """``health``, then the log readable and the projector within the settings' lag limits
    (``behind`` past either; ``failed`` when the log cannot be read)."""
    now = health(app)
    service = app.get(CONTEXTS)
    if now.status != "ok" or service is None:
        return now
    settings = app[SETTINGS]
    try:
        events, seconds = await service.projector.lag()
    except Exception as e:
        reason = f"the log cannot be read: {type(e).__name__}"
        return Health(status="failed", reason=reason, retry_after=1)
    max_seconds, max_events = settings.ready_max_lag_seconds, settings.ready_max_lag_events
    if (max_seconds and seconds > max_seconds) or (max_events and events > max_events):
        reason = f"the read model is {events} events ({seconds:.1f} s) behind the log"
        return Health(status="behind", reason=reason, retry_after=1)
    return now


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
