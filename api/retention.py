"""The server applies its retention policies on a schedule (``retention_interval`` seconds,
the first run once the projector has caught up); each action is an event
(``projections/retention.py``), a log line and a metric. A run that fails is logged and the
next one tries again. Of several nodes on one database, the one that leads the duty
(``Recorder.lead``) runs it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from aiohttp import web

from projections.retention import Applied, Retention

from . import appkeys
from .metrics import METRICS

log = logging.getLogger("ctxlog.retention")


async def scheduled(app: web.Application) -> AsyncIterator[None]:
    """A ``cleanup_ctx``: the schedule runs while the app does (nothing without policies)."""
    if not app[appkeys.SETTINGS].retention:
        yield
        return
    task = asyncio.create_task(_loop(app), name="ctxlog-retention")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def _loop(app: web.Application) -> None:
    settings = app[appkeys.SETTINGS]
    with contextlib.suppress(Exception):  # a failed start is reported by /healthz
        await asyncio.shield(app[appkeys.STARTUP])
    if appkeys.status(app) != "ok":
        return
    retention = Retention(app[appkeys.CONTEXTS])
    recorder = app[appkeys.STORE].recorder
    leading = False
    while True:
        # Several nodes on one database: one of them runs the policies (the others would
        # only race it), and another takes over when it goes.
        try:
            now_leading = await recorder.lead("retention")
        except Exception:
            log.exception("retention: cannot tell which node runs it; next try in %g s",
                          settings.retention_interval)  # fmt: skip
            now_leading = False
        if now_leading != leading:
            leading = now_leading
            log.info("retention: %s", "this node runs it" if leading else "another node runs it")
        for policy in settings.retention if leading else ():
            try:
                _report(app, await retention.apply(policy))
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("retention for tenant %r failed; next run in %g s",
                              policy.tenant, settings.retention_interval)  # fmt: skip
        await asyncio.sleep(settings.retention_interval)


def _report(app: web.Application, done: Applied) -> None:
    tenant = done.plan.policy.tenant
    for cid in done.deleted:
        log.info("retention: deleted context %s of tenant %r (idle over %g days)",
                 cid, tenant, done.plan.policy.idle_days)  # fmt: skip
    if done.erased or done.plan.kept:
        log.info("retention: erased %d subjects of tenant %r; kept %d whose content is also"
                 " in contexts outside the policy", len(done.erased), tenant,
                 len(done.plan.kept))  # fmt: skip
    metrics = app.get(METRICS)
    if metrics is not None:
        metrics.retention_runs.inc()
        metrics.retention_deleted.inc(len(done.deleted))
        metrics.retention_erased.inc(len(done.erased))
