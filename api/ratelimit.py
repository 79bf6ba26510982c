"""Per-key limits, so that one client cannot starve the rest: a token bucket of requests per
caller, and a cap on each caller's (and the whole server's) open WebSockets and event streams.

Requests: each caller (an API key's tenant and actor; the client address on an open server)
has a bucket of ``rate_burst`` tokens refilled at ``rate_limit`` per second; a request under
``/api/`` or to ``/mcp`` (the gate takes it, ``gate.py``), and each WebSocket frame, takes
one. An empty bucket answers 429 ``rate_limited`` with ``Retry-After`` (whole seconds until a
token is back) and ``details.retry_after``.
Rate limiting is off by default (``rate_limit = 0``): ctxlog mostly runs beside one
application on loopback, where a default would only be a guess at its workload and would
distort benchmarks; a shared deployment turns it on with ``CTXLOG_RATE_LIMIT``.

Live connections are always capped (an idle subscriber costs little, but each one is woken
on every commit): past ``max_live_per_key`` for a caller the upgrade is refused with 429
``too_many_connections``; past ``max_live`` for the server with 503 ``unavailable``. Both are
refused before the WebSocket handshake or the event stream starts, as plain JSON errors.
An MCP session's resource subscriptions (one follower of the log, ``mcp/sessions.py``) take a
slot too, refused in the MCP door's JSON-RPC shape.
"""

from __future__ import annotations

import collections
import contextlib
import math
import time
from collections.abc import Callable, Hashable, Iterator

from aiohttp import web

from .auth import CALLER
from .errors import ApiError
from .settings import Settings

Clock = Callable[[], float]


class TokenBuckets:
    """One token bucket per key: ``burst`` tokens, refilled at ``rate`` per second."""

    def __init__(
        self, rate: float, burst: int, *, clock: Clock = time.monotonic, max_keys: int = 10_000
    ) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("a token bucket needs a positive rate and a burst of at least 1")
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._max_keys = max_keys
        # key -> (tokens, when they were counted); oldest-touched first, for eviction.
        self._buckets: collections.OrderedDict[Hashable, tuple[float, float]] = (
            collections.OrderedDict()
        )

    def take(self, key: Hashable) -> float:
        """Take a token for ``key``: 0.0 when there was one, else the seconds until there is."""
        now = self._clock()
        tokens, then = self._buckets.pop(key, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - then) * self.rate)
        wait = 0.0
        if tokens >= 1.0:
            tokens -= 1.0
        else:
            wait = (1.0 - tokens) / self.rate
        self._buckets[key] = (tokens, now)
        if len(self._buckets) > self._max_keys:
            # The least recently seen bucket has refilled the longest: forgetting it (a full
            # bucket) costs its owner nothing, and memory stays bounded on an open server.
            self._buckets.popitem(last=False)
        return wait


class LiveSlots:
    """Counts open live connections per key and in all; refuses past either cap."""

    def __init__(self, per_key: int, total: int) -> None:
        self.per_key = per_key
        self.total = total
        self._open: collections.Counter[Hashable] = collections.Counter()
        self._count = 0
        self.refused = 0
        """Connections refused by either cap (for metrics)."""

    @property
    def count(self) -> int:
        """Live connections open now."""
        return self._count

    def acquire(self, key: Hashable) -> None:
        """Take a slot for ``key``; ApiError 429 past the key's cap, 503 past the server's."""
        if self._open[key] >= self.per_key:
            self.refused += 1
            raise ApiError(
                429,
                "too_many_connections",
                f"this API key already has {self.per_key} live connections open",
                {"limit": self.per_key, "retry_after": 1},
            )
        if self._count >= self.total:
            self.refused += 1
            raise ApiError(
                503,
                "unavailable",
                "the server has no room for another live connection; retry later",
                {"limit": self.total, "retry_after": 1},
            )
        self._open[key] += 1
        self._count += 1

    def release(self, key: Hashable) -> None:
        """Give back a slot taken with ``acquire``."""
        self._open[key] -= 1
        if self._open[key] <= 0:
            del self._open[key]
        self._count -= 1


class Limits:
    """The request buckets (None when rate limiting is off) and the live connection slots."""

    def __init__(self, settings: Settings) -> None:
        burst = settings.rate_burst or max(1, math.ceil(settings.rate_limit))
        self.buckets = TokenBuckets(settings.rate_limit, burst) if settings.rate_limit > 0 else None
        self.live = LiveSlots(settings.max_live_per_key, settings.max_live)
        self.refused_requests = 0
        """Requests refused for their key's rate (for metrics)."""


LIMITS = web.AppKey("limits", Limits)


def caller_key(request: web.Request) -> Hashable:
    """Whose bucket a request draws on: its caller's, or its address's on an open server."""
    caller = request.get(CALLER)
    if caller is not None and caller.tenant is not None:
        return (caller.tenant, caller.actor)
    return ("remote", request.remote)


def take(request: web.Request) -> None:
    """Take one token for the request's caller; ApiError 429 when its bucket is empty."""
    buckets = request.app[LIMITS].buckets
    if buckets is None:
        return
    wait = buckets.take(caller_key(request))
    if wait > 0:
        request.app[LIMITS].refused_requests += 1
        raise ApiError(
            429,
            "rate_limited",
            f"too many requests: this API key may send {buckets.rate:g} per second",
            {"retry_after": max(1, math.ceil(wait)), "limit": buckets.rate},
        )


def setup(app: web.Application, settings: Settings) -> None:
    """Keep the limits in the app (the gate, ``gate.py``, takes each request's token)."""
    app[LIMITS] = Limits(settings)


@contextlib.contextmanager
def live_slot(request: web.Request) -> Iterator[None]:
    """Hold one of the caller's live connection slots for the duration (429/503 if none)."""
    slots = request.app[LIMITS].live
    key = caller_key(request)
    slots.acquire(key)
    try:
        yield
    finally:
        slots.release(key)
