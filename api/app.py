"""The application factory: settings in, a ready-to-run aiohttp application out.

Resources live in ``cleanup_ctx`` (the store, then the contexts service), so they are closed
only if they were opened, in reverse order, after in-flight requests have finished. The
projector catches up in a background task: the server listens at once and ``/healthz`` says
``starting`` until it is done.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator
from importlib import metadata

from aiohttp import web
from aiohttp.typedefs import Middleware

from eventstore import EventStore, Observers
from projections.service import Contexts
from projections.tokens import load_offline_encodings

from . import appkeys, errors, gate, mcp, observe, ratelimit, rest, retention
from . import web as web_view
from .auth import KeyRing
from .errors import error_middleware
from .metrics import METRICS, Metrics
from .rest import openapi
from .rest.answers import WindowAnswers
from .settings import Settings, refuse_open_with_tenants
from .tracing import TRACING, Tracing
from .tracing import setup as setup_tracing

log = logging.getLogger("ctxlog.api")


def _version() -> str:
    try:
        return metadata.version("ctxlog")
    except metadata.PackageNotFoundError:
        return "0.0.0"


def create_app(settings: Settings, *, tracing: Tracing | None = None) -> web.Application:
    """A new application serving ``settings.db``; raises SettingsError for unsafe settings.

    ``tracing`` replaces what ``settings.tracing`` asks for (tests pass an in-memory one)."""
    settings.check()
    keys = KeyRing(settings.api_keys)
    tracing = tracing or setup_tracing(settings.tracing)
    metrics = Metrics() if settings.metrics else None
    middlewares: list[Middleware] = []
    if metrics is not None or settings.access_log:
        middlewares.append(observe.middleware(metrics, settings.access_log))
    if tracing is not None:
        middlewares.append(tracing.middleware())
    app = web.Application(
        middlewares=[*middlewares, error_middleware, gate.middleware(settings)],
        client_max_size=settings.max_body_bytes,
        handler_args={"keepalive_timeout": settings.keepalive_timeout},
    )
    if tracing is not None:
        app[TRACING] = tracing
        app.on_cleanup.append(_flush_traces)
    if metrics is not None:
        app[METRICS] = metrics
    ratelimit.setup(app, settings)
    errors.quiet_protocol_errors()
    app[appkeys.SETTINGS] = settings
    app[appkeys.KEYRING] = keys
    app[appkeys.LIVE] = appkeys.Live()
    app[appkeys.VERSION] = _version()
    app[errors.RENDERERS] = {}
    app[appkeys.WINDOW_ANSWERS] = WindowAnswers()
    # Every door's routes in one table, and the one OpenAPI document of all of them.
    routes = [
        *rest.routes,
        *(rest.metrics_routes if metrics else []),
        *mcp.routes,
        *web_view.routes,
    ]
    app[appkeys.OPENAPI] = openapi.document(routes, app[appkeys.VERSION])
    app.add_routes(rest.registration_order(routes))
    mcp.setup(app)  # /mcp's state: the Model Context Protocol (api/mcp/)
    web_view.setup(app)  # /ui: the web view's security headers (api/web/)
    if metrics is not None:
        metrics.watch(app, sessions=mcp.sessions_of(app))
    app.cleanup_ctx.append(_store)
    app.cleanup_ctx.append(_contexts)
    app.cleanup_ctx.append(retention.scheduled)
    app.on_shutdown.append(_close_live)
    return app


async def _store(app: web.Application) -> AsyncIterator[None]:
    settings = app[appkeys.SETTINGS]
    store = await EventStore.open_url(settings.db, follower_bytes=settings.stream_buffer_bytes)
    app[appkeys.STORE] = store
    observers = [o for o in (app.get(METRICS), app.get(TRACING)) if o is not None]
    if observers:
        store.observe(observers[0] if len(observers) == 1 else Observers(observers))
    if settings.open:
        try:  # before anything is served: refused (SettingsError) if it holds tenants' data
            refuse_open_with_tenants(
                await store.has_tenants(), allowed=settings.allow_open_with_tenants
            )
        except BaseException:
            await store.close()
            raise
        log.warning(
            "no API keys configured: serving OPEN (no tenants) on loopback %s only",
            settings.host,
        )
    yield
    await store.close()  # commits what the writer still holds, then closes


YOUNG_OBJECTS = 20_000
"""The collector's first-generation threshold while serving (Python's default is 700)."""


async def _contexts(app: web.Application) -> AsyncIterator[None]:
    thresholds = gc.get_threshold()
    tracing = app.get(TRACING)
    store = app[appkeys.STORE]
    wait = app[appkeys.SETTINGS].min_version_wait
    contexts = (
        tracing.contexts(store, min_version_wait=wait)
        if tracing is not None
        else Contexts(store, min_version_wait=wait)
    )
    app[appkeys.CONTEXTS] = contexts
    contexts.on_forget(app[appkeys.WINDOW_ANSWERS].clear)
    startup = asyncio.create_task(_start(contexts), name="ctxlog-projector-catch-up")
    app[appkeys.STARTUP] = startup
    yield
    # Let a catch-up in progress finish (it opens connections that a cancellation could
    # strand), within the shutdown budget; only then cut it short.
    with contextlib.suppress(Exception):  # a failed start was logged by _start
        await asyncio.wait_for(asyncio.shield(startup), app[appkeys.SETTINGS].shutdown_timeout)
    if not startup.done():
        startup.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await startup
    await contexts.close()
    gc.unfreeze()
    gc.set_threshold(*thresholds)


async def _start(contexts: Contexts) -> None:
    try:
        # Patient: while the projector retries after an error, the server waits with it
        # (health says why) instead of giving up on a database it could serve later.
        await contexts.start(patient=True)
    except Exception:
        log.exception("the projector failed to catch up; /healthz reports failed")
        raise
    try:
        # A window for a model in another encoding recounts in it: load them all now, not
        # in the first such read (and before the freeze below, which then covers them).
        await asyncio.to_thread(load_offline_encodings)
    except Exception:
        log.exception("an offline encoding failed to load; /healthz reports failed")
        raise
    # What is alive now (modules, the tokenizer's rank tables, what the catch-up cached)
    # lives as long as the server: out of the collector's full passes with it. Those
    # walked it every second or two under load and stopped the loop 15-20 ms each time
    # (about 60,000 objects, among them a 100,000-entry rank dict). Reference counting
    # still frees whatever of it is dropped; only cycles wait for ``unfreeze``.
    gc.freeze()
    # A request allocates a few hundred containers, nearly all freed by reference counting
    # as it ends; at the default threshold (700) the collector ran every few requests and
    # walked whatever 64 requests in flight held at that moment. 20,000 lets most of it die
    # first. A/B at c=64 appends: +4-9% (100,000: +1%, as each pass grows; 5,000: +2-6%).
    gc.set_threshold(YOUNG_OBJECTS, 20, 20)
    log.info("projector caught up; ready")


async def _flush_traces(app: web.Application) -> None:
    # The batch exporter holds the last spans; a blocking flush, once, at exit.
    await asyncio.to_thread(app[TRACING].close)


async def _close_live(app: web.Application) -> None:
    # Long-lived connections would otherwise hold a graceful shutdown for its whole timeout.
    await app[appkeys.LIVE].close()
