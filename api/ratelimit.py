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
on every commit): past ``max_live_per_key`` for a caller, or ``max_live_per_tenant`` for all
of its tenant's keys, the upgrade is refused with 429 ``too_many_connections``; past
``max_live`` for the server with 503 ``unavailable``. Both are
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
from typing import Any, Literal

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


class Quota:
    """How many of something (live connections, MCP sessions) each key, each tenant and
    everyone hold, under a cap for each: the tenant's cap is what keeps one customer with
    many keys from taking the whole server's."""

    def __init__(
        self, what: str, code: str, per_key: int, per_tenant: int, total: int, *, hint: str = ""
    ) -> None:
        self.what = what
        """What is counted, as a refusal names it ("live connections")."""
        self.code = code
        """The error code of a refusal past the key's or the tenant's cap."""
        self.hint = hint
        """What a refused caller can do, after the message."""
        self.per_key = per_key
        self.per_tenant = per_tenant
        self.total = total
        self._keys: collections.Counter[Hashable] = collections.Counter()
        self._tenants: collections.Counter[str] = collections.Counter()
        self.count = 0
        """Held now, in all."""

    def full(self, key: Hashable, tenant: str | None) -> Literal["key", "tenant", "total"] | None:
        """Which cap one more for ``key`` (of ``tenant``; None: no tenant, an open server)
        would pass, or None."""
        if self._keys[key] >= self.per_key:
            return "key"
        if tenant is not None and self._tenants[tenant] >= self.per_tenant:
            return "tenant"
        return "total" if self.count >= self.total else None

    def take(self, key: Hashable, tenant: str | None) -> None:
        self._keys[key] += 1
        if tenant is not None:
            self._tenants[tenant] += 1
        self.count += 1

    def give(self, key: Hashable, tenant: str | None) -> None:
        """Give back one taken with ``take`` (counts that reach 0 are forgotten)."""
        _drop(self._keys, key)
        if tenant is not None:
            _drop(self._tenants, tenant)
        self.count -= 1

    def refusal(self, key: Hashable, tenant: str | None) -> ApiError | None:
        """The error that refuses one more (429 past the key's or the tenant's cap, 503 past
        the server's), or None when there is room."""
        match self.full(key, tenant):
            case "key":
                owner, limit, status = "this API key", self.per_key, 429
            case "tenant":
                owner, limit, status = "this tenant", self.per_tenant, 429
            case "total":
                return ApiError(
                    503, "unavailable", f"the server has no room for more {self.what}; retry later",
                    {"limit": self.total, "retry_after": 1},
                )  # fmt: skip
            case None:
                return None
        return ApiError(
            status, self.code, f"{owner} already has {limit} {self.what} open{self.hint}",
            {"limit": limit, "retry_after": 1},
        )  # fmt: skip


def _drop(counter: collections.Counter[Any], which: Hashable) -> None:
    counter[which] -= 1
    if counter[which] <= 0:
        del counter[which]


class LiveSlots:
    """Counts open live connections per key, per tenant and in all; refuses past any cap."""

    def __init__(self, per_key: int, total: int, per_tenant: int | None = None) -> None:
        tenant_cap = total if per_tenant is None else per_tenant
        self._quota = Quota(
            "live connections", "too_many_connections", per_key, tenant_cap, total
        )
        self.refused = 0
        """Connections refused by any cap (for metrics)."""

    @property
    def count(self) -> int:
        """Live connections open now."""
        return self._quota.count

    def acquire(self, key: Hashable, tenant: str | None = None) -> None:
        """Take a slot for ``key`` (of ``tenant``); ApiError 429 past the key's or the
        tenant's cap, 503 past the server's."""
        refusal = self._quota.refusal(key, tenant)
        if refusal is not None:
            self.refused += 1
            raise refusal
        self._quota.take(key, tenant)

    def release(self, key: Hashable, tenant: str | None = None) -> None:
        """Give back a slot taken with ``acquire``."""
        self._quota.give(key, tenant)


class Limits:
    """The request buckets (None when rate limiting is off) and the live connection slots."""

    def __init__(self, settings: Settings) -> None:
        burst = settings.rate_burst or max(1, math.ceil(settings.rate_limit))
        self.buckets = TokenBuckets(settings.rate_limit, burst) if settings.rate_limit > 0 else None
        self.live = LiveSlots(
            settings.max_live_per_key, settings.max_live, settings.max_live_per_tenant
        )
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
    caller = request.get(CALLER)
    tenant = None if caller is None else caller.tenant
    slots.acquire(key, tenant)
    try:
        yield
    finally:
        slots.release(key, tenant)
