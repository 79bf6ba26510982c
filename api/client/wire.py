"""What both clients share below the operations: a request described as data (``Call``), the
answer turned into a Struct or a typed error (``answer``), and when to try again (``Retry``).

No IO here: the async client sends a ``Call`` with aiohttp, the sync one with httpx2, and both
hand the status, headers and body back to ``answer``.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any, Generic, TypeVar

import msgspec

from api.rest.schemas import ErrorOut

from .errors import ApiError, ProtocolError, RateLimited, Unavailable, error_class

T = TypeVar("T")

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
TRANSIENT_STATUSES = frozenset({429, 502, 503, 504})
"""Answers worth a retry: over a rate, or a server (or a proxy before it) that cannot serve now."""


class _Auto:
    """The default of ``idempotency_key``: a fresh key per call, reused by its retries."""

    def __repr__(self) -> str:
        return "AUTO"


AUTO: Any = _Auto()
"""Give a write a new Idempotency-Key (the default); pass None to send none, or a key."""
SEEN = "seen"
"""``if_match=SEEN``: the last version of the context this client has seen."""

IfMatch = int | str | None
"""A version for If-Match, ``SEEN``, or None (no precondition)."""

_encoder = msgspec.json.Encoder()
_DECODERS: dict[Any, msgspec.json.Decoder[Any]] = {}
_error_decoder = msgspec.json.Decoder(ErrorOut)


def decoder(type_: Any) -> msgspec.json.Decoder[Any]:
    """One reused Decoder per answer type (msgspec's first performance rule)."""
    found = _DECODERS.get(type_)
    if found is None:
        found = _DECODERS[type_] = msgspec.json.Decoder(type_)
    return found


def encode(body: Any) -> bytes:
    """A request body as JSON."""
    return _encoder.encode(body)


@dataclass(frozen=True, slots=True)
class Call(Generic[T]):
    """One request to make: where, what, and the Struct its answer decodes into (None: the
    operation answers with no body)."""

    operation: str
    method: str
    path: str
    answer: Any
    statuses: frozenset[int]
    query: Mapping[str, str] = field(default_factory=dict)
    body: bytes | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    idempotency_key: str | None = None
    if_match: IfMatch = None
    context_id: str | None = None
    """The context this call reads or writes (for ``SEEN`` and the versions remembered)."""
    reads: bool = False
    """A read of that context that takes ``min_version``: it is sent the newest version this
    client saw, so a server behind the one that answered before waits until it has it."""

    @property
    def retry_safe(self) -> bool:
        """Whether sending it again after a lost answer cannot do anything twice: a read,
        or a write carrying an Idempotency-Key (the server replays its first answer)."""
        return self.method not in WRITE_METHODS or self.idempotency_key is not None


def query(**values: Any) -> dict[str, str]:
    """A query string's parameters, None left out, as the server reads them."""
    out: dict[str, str] = {}
    for key, value in values.items():
        if value is None:
            continue
        if isinstance(value, bool):
            out[key] = "true" if value else "false"
        elif isinstance(value, datetime):
            out[key] = value.isoformat()
        else:
            out[key] = str(value)
    return out


def key_for(idempotency_key: Any) -> str | None:
    """The Idempotency-Key a write sends: a new one for ``AUTO``."""
    if idempotency_key is AUTO:
        return uuid.uuid4().hex
    if idempotency_key is None or isinstance(idempotency_key, str):
        return idempotency_key
    raise TypeError("idempotency_key is AUTO, None or a string")


def headers(call: Call[Any], if_match: int | None, extra: Mapping[str, str]) -> dict[str, str]:
    """The headers ``call`` sends, ``extra`` (the key, user agent) included."""
    out = dict(extra)
    out.update(call.headers)
    if call.body is not None:
        out["Content-Type"] = "application/json"
    if call.idempotency_key is not None:
        out["Idempotency-Key"] = call.idempotency_key
    if if_match is not None:
        out["If-Match"] = f'"{if_match}"'
    return out


def retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (a number of seconds or an HTTP date)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - datetime.now(when.tzinfo)).total_seconds())


def answer(call: Call[T], status: int, head: Mapping[str, str], body: bytes) -> T:
    """The Struct ``call`` answers with, or the typed error the server answered with;
    ProtocolError for anything else (a status or body the operation does not have)."""
    if status in call.statuses:
        if call.answer is None:
            return None  # type: ignore[return-value]
        try:
            return decoder(call.answer).decode(body)  # type: ignore[no-any-return]
        except (msgspec.DecodeError, msgspec.ValidationError) as e:
            raise ProtocolError(
                call.operation, f"the {status} answer is not a {_name(call.answer)}: {e}", status
            ) from None
    raise error(call.operation, status, head, body)


def error(operation: str, status: int, head: Mapping[str, str], body: bytes) -> Exception:
    """The exception for an error answer: the server's (typed by code), or ProtocolError
    when the body is not the server's error shape (a proxy's page, a redirect)."""
    try:
        found = _error_decoder.decode(body).error
    except (msgspec.DecodeError, msgspec.ValidationError):
        excerpt = body[:200].decode("utf-8", "replace")
        return ProtocolError(operation, f"unexpected {status} answer: {excerpt!r}", status)
    cls = error_class(status, found.code)
    return cls(
        operation, status, found.code, found.message, dict(found.details),
        request_id=head.get("X-Request-ID"), retry_after=retry_after(head.get("Retry-After")),
    )  # fmt: skip


def _name(type_: Any) -> str:
    return getattr(type_, "__name__", str(type_))


@dataclass(frozen=True)
class Retry:
    """How transient failures are retried: ``attempts`` in all (1: never retry), waiting an
    exponential backoff with full jitter between ``base`` and ``cap`` seconds, or the
    server's Retry-After when it says more (up to ``max_wait``)."""

    attempts: int = 4
    base: float = 0.05
    cap: float = 2.0
    max_wait: float = 30.0

    def delay(self, attempt: int, error: BaseException) -> float:
        """Seconds to wait before attempt ``attempt + 1`` (``attempt`` counts from 0)."""
        backoff = random.uniform(0, min(self.cap, self.base * 2**attempt))
        if isinstance(error, ApiError) and error.retry_after is not None:
            return min(self.max_wait, max(backoff, error.retry_after))
        return backoff


def transient(error: BaseException, call: Call[Any]) -> bool:
    """Whether an error answer is worth sending ``call`` again: 429 always (nothing was done),
    503 and a proxy's 502/504 when a repeat cannot do anything twice."""
    if isinstance(error, RateLimited):
        return True
    if isinstance(error, Unavailable) or (
        isinstance(error, ApiError) and error.status in TRANSIENT_STATUSES
    ):
        return call.retry_safe
    if isinstance(error, ProtocolError) and error.status in TRANSIENT_STATUSES:
        return call.retry_safe  # a proxy's 502/503/504 page
    return False


def version_of(call: Call[Any], head: Mapping[str, str], value: Any) -> int | None:
    """The context version an answer shows (its ETag, else a ``version`` field), for SEEN."""
    tag = head.get("ETag")
    if tag:
        digits = tag.strip().removeprefix("W/").strip('"')
        if digits.isdigit():
            return int(digits)
    version = getattr(value, "version", None)
    if isinstance(version, int) and call.context_id is not None:
        return version
    return None
