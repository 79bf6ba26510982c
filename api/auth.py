"""API keys → the caller's tenant and actor.

A key comes as ``X-API-Key: KEY`` or ``Authorization: Bearer KEY``. Only SHA-256 digests of
the configured keys are kept in memory, and a presented key is compared against every one of
them with ``hmac.compare_digest`` (no early exit), so the time taken says nothing about which
key, or how much of one, matched. Keys are never logged, stored, or echoed in errors.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable

from aiohttp import web

from projections.service import Caller

from .errors import REQUEST_ID, ApiError
from .settings import ApiKey

CALLER = web.RequestKey("caller", Caller)


class KeyRing:
    """The configured keys as digests; ``open`` when there are none (loopback-only servers)."""

    def __init__(self, keys: Iterable[ApiKey]) -> None:
        self._entries = [(hashlib.sha256(k.key.encode()).digest(), k.tenant, k.actor) for k in keys]

    @property
    def open(self) -> bool:
        """True when no keys are configured: every request is let in, with no tenant."""
        return not self._entries

    def lookup(self, presented: str) -> tuple[str, str] | None:
        """(tenant, actor) of a presented key, or None; constant time in the key's content."""
        digest = hashlib.sha256(presented.encode("utf-8", "surrogatepass")).digest()
        found = None
        for candidate, tenant, actor in self._entries:
            if hmac.compare_digest(candidate, digest) and found is None:
                found = (tenant, actor)
        return found


def presented_key(request: web.Request) -> str | None:
    """The key a request carries, if any."""
    key = request.headers.get("X-API-Key")
    if key:
        return key
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return None


def authenticate(keys: KeyRing, request: web.Request) -> Caller:
    """The Caller a request stands for; ApiError 401 when keys are required and missing/wrong."""
    request_id = request.get(REQUEST_ID)
    if keys.open:
        return Caller(None, None, request_id)
    presented = presented_key(request)
    if presented is None:
        raise ApiError(401, "unauthorized", "an API key is required (X-API-Key or Bearer)")
    found = keys.lookup(presented)
    if found is None:
        raise ApiError(401, "unauthorized", "the API key is not valid")
    return Caller(found[0], found[1], request_id)


def caller(request: web.Request) -> Caller:
    """The authenticated caller of a request (set by the gate, ``gate.py``)."""
    return request[CALLER]
