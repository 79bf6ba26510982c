"""Prometheus metrics at ``/metrics`` (text format), one registry per application.

What moves on the request path is as cheap as it can be: one histogram observation per
request (its ``_count`` is the request counter; plain counts without locks, ``Buckets``),
and on the write path one set per group commit, fed by the store's observer
(``eventstore/observe.py``; the store does not import this library). Everything else is read
when Prometheus scrapes (``StateCollector``): the projector's lag and health, rebuild
progress, the window cache's hits, live connections, MCP sessions, rate-limit refusals;
counted by their own layers as plain integers.

Names follow Prometheus's conventions: ``ctxlog_`` prefix, base units (seconds, bytes),
``_total`` on counters. Route labels are route templates (``/api/v1/contexts/{id}``), never
paths, so the series stay few and no id or query reaches the metrics. No label holds a tenant
or an actor: ``/metrics`` may be scraped without a key (``metrics_token`` guards it).
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import hmac
from collections.abc import Callable, Iterator

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, ProcessCollector
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import Collector

from eventstore import StoreObserver

from . import appkeys, ratelimit
from .errors import ApiError

LATENCY_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
"""Request and commit latencies: sub-millisecond commits up to slow requests."""
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096)
"""Appends per group commit (the writer takes at most 4,096 events)."""
SessionsSource = Callable[[], tuple[int, int]]
"""(open MCP sessions, their resource subscriptions), from the MCP door."""
UNMATCHED = "unmatched"
"""The route label of a request no route matched (404, 405)."""
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
"""Method labels as sent; any other method the HTTP parser accepts (WebDAV's and the like)
is ``other``, so that the series stay the API's own."""


class Buckets:
    """A histogram as plain counts: updated on the event loop's thread only, so without the
    locks of ``prometheus_client.Histogram`` (a third of the cost of an observation), and
    exposed as a Prometheus histogram when scraped (``family``)."""

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last one is +Inf
        self.total = 0.0

    def observe(self, value: float) -> None:
        """Count ``value`` in the first bucket whose bound is at least it."""
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.total += value

    def add_to(self, family: HistogramMetricFamily, labels: list[str]) -> None:
        """This histogram as one labelled series of ``family`` (cumulative buckets)."""
        cumulative, buckets = 0, []
        for bound, count in zip((*map(_bound, self.bounds), "+Inf"), self.counts, strict=True):
            cumulative += count
            buckets.append((bound, cumulative))
        family.add_metric(labels, buckets, self.total)


def _bound(value: float) -> str:
    return repr(float(value))


class Metrics(StoreObserver, Collector):
    """The application's metrics; also the store's observer (commits, erasures), and the
    collector of what the request and write paths count."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        r = self.registry
        self.requests: dict[tuple[str, str, int], Buckets] = {}
        self.appends = self.events = self.bytes = 0
        self.batch = Buckets(BATCH_BUCKETS)
        self.commit = Buckets(LATENCY_BUCKETS)
        self.sync = Buckets(LATENCY_BUCKETS)
        self.erasures = Counter("ctxlog_erasures", "Subject erasures requested", registry=r)
        self.erased_keys = Counter("ctxlog_erased_keys", "Subject keys destroyed", registry=r)
        self.retention_deleted = Counter(
            "ctxlog_retention_deleted_contexts", "Contexts deleted by retention", registry=r
        )
        self.retention_erased = Counter(
            "ctxlog_retention_erased_subjects", "Subjects erased by retention", registry=r
        )
        self.retention_runs = Counter(
            "ctxlog_retention_runs", "Scheduled applications of the retention policies",
            registry=r,
        )  # fmt: skip
        self.lag: tuple[int, float] = (0, 0.0)
        """(events, seconds) the projector was behind at the last refresh."""
        r.register(self)

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        """Count one request under its method, route template and status."""
        key = (method if method in METHODS else "other", route, status)
        buckets = self.requests.get(key)
        if buckets is None:
            buckets = self.requests[key] = Buckets(LATENCY_BUCKETS)
        buckets.observe(seconds)

    def committed(
        self,
        appends: int,
        events: int,
        nbytes: int,
        started_ns: int,
        seconds: float,
        sync_seconds: float | None,
    ) -> None:
        """A group commit (``StoreObserver``)."""
        self.appends += appends
        self.events += events
        self.bytes += nbytes
        self.batch.observe(appends)
        self.commit.observe(seconds)
        if sync_seconds is not None:
            self.sync.observe(sync_seconds)

    def collect(self) -> Iterator[Metric]:
        """The request histogram, and what the writer counted (``Collector``)."""
        requests = HistogramMetricFamily(
            "ctxlog_http_request_duration_seconds",
            "HTTP requests by method, route template and status, and how long they took",
            labels=["method", "route", "status"],
        )
        for (method, route, status), buckets in sorted(self.requests.items()):
            buckets.add_to(requests, [method, route, str(status)])
        yield requests
        yield _counter("ctxlog_appends", "Appends stored (retries not counted)", self.appends)
        yield _counter("ctxlog_events_written", "Events written to the log", self.events)
        yield _counter(
            "ctxlog_written_bytes", "Bytes of event payload and metadata written", self.bytes
        )
        for name, doc, buckets in (
            ("ctxlog_commit_batch_appends", "Appends per group commit (one transaction)",
             self.batch),
            ("ctxlog_commit_duration_seconds", "Group commits: the whole write transaction",
             self.commit),
            ("ctxlog_commit_sync_duration_seconds",
             "Group commits: the COMMIT itself, mostly the fsync (SQLite)", self.sync),
        ):  # fmt: skip
            family = HistogramMetricFamily(name, doc, labels=[])
            buckets.add_to(family, [])
            yield family

    def erased(self, keys: int) -> None:
        """An erasure (``StoreObserver``)."""
        self.erasures.inc()
        self.erased_keys.inc(keys)

    def watch(self, app: web.Application, sessions: SessionsSource | None = None) -> None:
        """Read the app's state at each scrape (``sessions``: the MCP door's sessions), and
        the process's (CPU, memory, files)."""
        self.registry.register(StateCollector(app, self, sessions))
        ProcessCollector(registry=self.registry)

    def exposition(self) -> bytes:
        """Everything, in Prometheus's text format."""
        return generate_latest(self.registry)


class StateCollector(Collector):
    """Gauges and counters read from the application when scraped."""

    def __init__(
        self, app: web.Application, metrics: Metrics, sessions: SessionsSource | None
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.sessions = sessions

    def collect(self) -> Iterator[Metric]:
        """The projector, caches, connections, sessions and limits, as they are now."""
        app = self.app
        yield _gauge(
            "ctxlog_build_info",
            "ctxlog's version and the event loop serving it (uvloop or asyncio)",
            1,
            version=app[appkeys.VERSION],
            loop=type(asyncio.get_running_loop()).__module__.partition(".")[0],
        )
        health = appkeys.health(app)
        state = GaugeMetricFamily(
            "ctxlog_projector_state",
            "1 for the projector's state now: ok, starting, behind or failed",
            labels=["state"],
        )
        for name in ("ok", "starting", "behind", "failed"):
            state.add_metric([name], 1.0 if health.status == name else 0.0)
        yield state
        service = app.get(appkeys.CONTEXTS)
        if service is not None:
            projector = service.projector
            events, seconds = self.metrics.lag
            yield _gauge(
                "ctxlog_projector_position", "Last log position applied", projector.checkpoint
            )
            yield _gauge("ctxlog_projector_lag_events", "Events in the log not yet applied", events)
            yield _gauge(
                "ctxlog_projector_applying",
                "1 while this node applies the log (a shared read model's elected projector)",
                int(projector.applying),
            )
            yield _counter(
                "ctxlog_projector_applied_events", "Events this node applied to the read model",
                projector.applied,
            )  # fmt: skip
            yield _gauge(
                "ctxlog_projector_lag_seconds", "Age of the oldest event not yet applied", seconds
            )
            done, total = projector.rebuilding or (0, 0)
            yield _gauge(
                "ctxlog_rebuild_position", "Log position a running rebuild has reached (0: none)",
                done,
            )  # fmt: skip
            yield _gauge(
                "ctxlog_rebuild_target_position", "Head a running rebuild replays to", total
            )
            cache = service.window_cache
            yield _counter(
                "ctxlog_window_cache_hits", "Window reads served from the cache", cache.hits
            )
            yield _counter(
                "ctxlog_window_cache_misses", "Window reads computed from the read model",
                cache.misses,
            )  # fmt: skip
        live = app[appkeys.LIVE]
        connections = GaugeMetricFamily(
            "ctxlog_live_connections", "Open WebSockets and event streams", labels=["kind"]
        )
        connections.add_metric(["websocket"], len(live.websockets))
        connections.add_metric(["stream"], len(live.streams))
        yield connections
        limits = app[ratelimit.LIMITS]
        refused = CounterMetricFamily(
            "ctxlog_rate_limited", "Requests refused by a limit", labels=["limit"]
        )
        refused.add_metric(["requests"], limits.refused_requests)
        refused.add_metric(["connections"], limits.live.refused)
        yield refused
        if self.sessions is not None:
            open_sessions, subscriptions = self.sessions()
            yield _gauge("ctxlog_mcp_sessions", "Open MCP sessions", open_sessions)
            yield _gauge(
                "ctxlog_mcp_subscriptions", "Resources MCP sessions subscribe to", subscriptions
            )


def _gauge(name: str, doc: str, value: float, **labels: str) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, doc, labels=list(labels))
    family.add_metric(list(labels.values()), value)
    return family


def _counter(name: str, doc: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, value=value)


METRICS = web.AppKey("metrics", Metrics)


def authorized(request: web.Request, token: str) -> bool:
    """Whether the request carries ``Authorization: Bearer <token>`` (constant time)."""
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(
        given.strip().encode(), token.encode()
    )


async def get_metrics(request: web.Request) -> web.Response:
    """The metrics in Prometheus's text format; 401 without the token when one is set."""
    app = request.app
    token = app[appkeys.SETTINGS].metrics_token
    if token and not authorized(request, token):
        raise ApiError(401, "unauthorized", "/metrics needs its bearer token")
    metrics = app[METRICS]
    service = app.get(appkeys.CONTEXTS)
    if service is not None and appkeys.status(app) == "ok":
        # A log that cannot be read keeps the last figures; ctxlog_projector_state says why.
        with contextlib.suppress(Exception):
            metrics.lag = await service.projector.lag()
    return web.Response(body=metrics.exposition(), headers={"Content-Type": CONTENT_TYPE_LATEST})
