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

from eventstore import EventStore
from projections.service import Contexts

from . import appkeys, errors, mcp, openapi, ratelimit
from .auth import KeyRing, auth_middleware
from .errors import error_middleware
from .routes import routes
from .settings import Settings

log = logging.getLogger("ctxlog.api")


def _version() -> str:
    try:
        return metadata.version("ctxlog")
    except metadata.PackageNotFoundError:
        return "0.0.0"


def create_app(settings: Settings) -> web.Application:
    """A new application serving ``settings.db``; raises SettingsError for unsafe settings."""
    settings.check()
    keys = KeyRing(settings.api_keys)
    app = web.Application(
        middlewares=[error_middleware, auth_middleware(keys)],
        client_max_size=settings.max_body_bytes,
        handler_args={"keepalive_timeout": settings.keepalive_timeout},
    )
    ratelimit.setup(app, settings)
    errors.quiet_protocol_errors()
    app[appkeys.SETTINGS] = settings
    app[appkeys.KEYRING] = keys
    app[appkeys.LIVE] = appkeys.Live()
    app[appkeys.VERSION] = _version()
    app[appkeys.OPENAPI] = openapi.document(routes, app[appkeys.VERSION])
    app.add_routes(routes)
    mcp.setup(app)  # /mcp: the Model Context Protocol (api/mcp/)
    app.cleanup_ctx.append(_store)
    app.cleanup_ctx.append(_contexts)
    app.on_shutdown.append(_close_live)
    return app


async def _store(app: web.Application) -> AsyncIterator[None]:
    settings = app[appkeys.SETTINGS]
    store = await EventStore.open_url(settings.db, follower_bytes=settings.stream_buffer_bytes)
    app[appkeys.STORE] = store
    if settings.open:
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
    contexts = Contexts(app[appkeys.STORE])
    app[appkeys.CONTEXTS] = contexts
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
        await contexts.start()
    except Exception:
        log.exception("the projector failed to catch up; /healthz reports failed")
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


async def _close_live(app: web.Application) -> None:
    # Long-lived connections would otherwise hold a graceful shutdown for its whole timeout.
    await app[appkeys.LIVE].close()
