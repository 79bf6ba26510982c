"""Bytes in, Structs out, and back: bodies, query strings, ids and HTTP preconditions.

Every way a request can be malformed ends here as an ApiError (4xx) before anything is
written: a body over the limit (413) or too slow to arrive (408), not JSON (415), not UTF-8,
malformed, nested too deeply, of the wrong shape or with unknown fields (400 with
``details.path``), or holding a NUL character anywhere (400).
"""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections.abc import Iterator
from typing import Any, TypeVar, overload

import msgspec
from aiohttp import web
from aiohttp.abc import AbstractStreamWriter
from aiohttp.payload import Payload

from eventstore import STREAM_EXISTS, ExpectedVersion

from .. import appkeys
from ..errors import ApiError, from_validation, invalid, not_found

T = TypeVar("T")

JSON_TYPES = frozenset({"application/json", "application/merge-patch+json"})
MAX_DEPTH = 64
INT_RANGE = range(-(2**63), 2**63)
"""Integers anywhere in a body (metadata too) must fit in 64 bits, as the stores' do."""

_encoder = msgspec.json.Encoder()
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_ETAG = re.compile(r'\s*(?:W/)?"?(\d{1,18})"?\s*')
_IDEMPOTENCY_KEY = re.compile(r"[\x21-\x7e]{1,255}")
_DATETIME_FIELDS = ("at", "since", "until")
_LONG_NUMBER = re.compile(rb"[0-9]{19}")


class _DuplicateKey(Exception):
    def __init__(self, key: str) -> None:
        self.key = key


def _refuse_duplicates(pairs: list[tuple[str, Any]]) -> None:
    keys = {key for key, _ in pairs}
    if len(keys) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _DuplicateKey(key)
            seen.add(key)


_DECODERS: dict[Any, msgspec.json.Decoder[Any]] = {}


def _decoder(type_: Any) -> msgspec.json.Decoder[Any]:
    # One Decoder per request type, built once: msgspec's first performance tip.
    decoder = _DECODERS.get(type_)
    if decoder is None:
        decoder = _DECODERS[type_] = msgspec.json.Decoder(type_)
    return decoder


@overload
def decode(body: bytes, type_: type[T]) -> T: ...
@overload
def decode(body: bytes, type_: Any) -> Any: ...  # a union of Structs (WebSocket frames)
def decode(body: bytes, type_: Any) -> Any:
    """Decode and validate a JSON body as ``type_``; ApiError 400 for anything wrong."""
    try:
        value = _decoder(type_).decode(body)
    except msgspec.ValidationError as e:
        raise from_validation(e) from None
    except msgspec.DecodeError as e:
        raise ApiError(400, "invalid_json", f"malformed JSON: {e}", {"in": "body"}) from None
    except UnicodeDecodeError:
        raise ApiError(400, "invalid_json", "the body is not valid UTF-8", {"in": "body"}) from None
    except RecursionError:
        raise _too_deep("$") from None
    # A NUL can only arrive escaped (a raw one is malformed JSON); when the escape appears at
    # all, look at the document's strings to be sure, and check the nesting depth and integer
    # sizes there too. The document, not ``value``: a NUL in a field the type drops (an
    # unknown field of a content part) must not pass unseen.
    if (
        b"\\u0000" in body
        or body.count(b"[") + body.count(b"{") > MAX_DEPTH
        or _LONG_NUMBER.search(body)
    ):
        try:
            _check_strings(msgspec.json.decode(body), "$", 0)
        except RecursionError:
            raise _too_deep("$") from None
    # msgspec keeps the last of repeated keys; another parser on the way (a proxy, an audit
    # tool) may keep the first, so a body that means two things is refused. The common case
    # is proven cheaply: msgspec's formatter keeps every key, its decoder keeps one of each,
    # so when the two print the same bytes no key repeats. Otherwise (escapes or numbers
    # printed differently, or a real repeat) the exact, slower check decides.
    if msgspec.json.format(body, indent=-1) == _encoder.encode(msgspec.json.decode(body)):
        return value
    try:
        json.loads(body, object_pairs_hook=_refuse_duplicates)
    except _DuplicateKey as e:
        raise ApiError(
            400, "invalid_json", f"the key {e.key!r} is repeated in one object", {"in": "body"}
        ) from None
    return value


def _too_deep(path: str) -> ApiError:
    return ApiError(
        400, "invalid_json", f"JSON nested deeper than {MAX_DEPTH}", {"in": "body", "path": path}
    )


def _check_strings(value: Any, path: str, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise _too_deep(path)
    if isinstance(value, str):
        if "\x00" in value:
            raise invalid("strings cannot contain NUL characters", path)
    elif isinstance(value, int) and value not in INT_RANGE:
        raise invalid("integers must fit in 64 bits", path)
    elif isinstance(value, dict):
        for key, item in value.items():
            where = f"{path}.{key}"
            if "\x00" in key:
                raise invalid("keys cannot contain NUL characters", path)
            _check_strings(item, where, depth + 1)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _check_strings(item, f"{path}[{i}]", depth + 1)


def _check_content_type(request: web.Request) -> None:
    if request.content_type not in JSON_TYPES:
        raise ApiError(
            415,
            "unsupported_media_type",
            f"the body must be application/json, not {request.content_type}",
        )


async def read_json(request: web.Request, type_: type[T]) -> T:
    """The request body decoded as ``type_`` (413 over the app's body limit)."""
    _check_content_type(request)
    # aiohttp enforces client_max_size while reading and raises 413.
    return decode(await _body(request), type_)


async def read_optional_json(request: web.Request, type_: type[T]) -> T:
    """Like ``read_json``, but an empty body means ``type_()``, all defaults."""
    if not request.body_exists:
        return type_()
    body = await _body(request)
    if not body.strip():
        return type_()
    _check_content_type(request)
    return decode(body, type_)


async def _body(request: web.Request) -> bytes:
    # A client trickling its body would hold a handler (and the bytes so far) indefinitely.
    if request.content.is_eof():  # the whole body came with the headers: nothing to wait for
        return await request.read()
    seconds = request.app[appkeys.SETTINGS].body_timeout
    try:
        async with asyncio.timeout(seconds):
            return await request.read()
    except TimeoutError:
        raise ApiError(
            408, "request_timeout", f"the request body did not arrive within {seconds:g} s"
        ) from None


def query(request: web.Request, type_: type[T], exclude: str | None = None) -> T:
    """The query string as ``type_``; numbers and booleans are converted from their text.

    ``exclude`` leaves out parameters with that prefix (e.g. ``metadata.`` filters); they are
    checked like the rest: once each, and without NUL (which SQLite's JSON paths and the log
    must never see).
    """
    params: dict[str, str] = {}
    seen: set[str] = set()
    for key, value in request.query.items():
        if "\x00" in key or "\x00" in value:
            raise invalid("query parameters cannot contain NUL characters", f"$.{key}", "query")
        if key in seen:
            raise invalid(f"query parameter {key!r} is given more than once", f"$.{key}", "query")
        seen.add(key)
        if exclude is not None and key.startswith(exclude):
            continue
        # An unencoded '+' in a time zone offset arrives as a space.
        params[key] = value.replace(" ", "+") if key in _DATETIME_FIELDS else value
    try:
        parsed = msgspec.convert(params, type_, strict=False)
    except msgspec.ValidationError as e:
        raise from_validation(e, "query") from None
    # Lax conversion reads the text "null" as None: a parameter that is given has a value,
    # or ?context_id=null would quietly mean "no filter".
    names = _field_names(type_)
    for key in params:
        if getattr(parsed, names.get(key, key), "") is None:
            raise invalid(f"query parameter {key!r} has no value", f"$.{key}", "query")
    return parsed


_FIELD_NAMES: dict[Any, dict[str, str]] = {}


def _field_names(type_: Any) -> dict[str, str]:
    # Once per type: msgspec.structs.fields evaluates the annotations on every call.
    names = _FIELD_NAMES.get(type_)
    if names is None:
        names = _FIELD_NAMES[type_] = {f.encode_name: f.name for f in msgspec.structs.fields(type_)}
    return names


def path_uuid(request: web.Request, name: str = "id") -> str:
    """A UUID from the path, canonical (lower case). Anything else names no resource: 404."""
    raw = request.match_info[name]
    if not _UUID.fullmatch(raw):
        raise not_found("context not found" if name == "id" else "message not found")
    return raw.lower()


def expected_version(request: web.Request, in_body: int | None = None) -> ExpectedVersion | None:
    """The version a write expects, from If-Match (``"7"``, ``7`` or ``*``) or the body's
    ``expected_version``; both must agree when both are given."""
    header = request.headers.get("If-Match")
    if header is None:
        return in_body
    if header.strip() == "*":
        if in_body is not None:
            return in_body
        return STREAM_EXISTS
    match = _ETAG.fullmatch(header)
    if match is None:
        raise invalid('If-Match must be one ETag, e.g. "3"', "If-Match", "header")
    version = int(match.group(1))
    if in_body is not None and in_body != version:
        raise invalid("If-Match and expected_version disagree", "$.expected_version")
    return version


def idempotency_key(request: web.Request) -> str | None:
    """The Idempotency-Key header: 1-255 visible ASCII characters, or None."""
    key = request.headers.get("Idempotency-Key")
    if key is None:
        return None
    if not _IDEMPOTENCY_KEY.fullmatch(key):
        raise invalid(
            "Idempotency-Key must be 1-255 visible ASCII characters", "Idempotency-Key", "header"
        )
    return key


def prefers_minimal(request: web.Request) -> bool:
    """Whether the client sent ``Prefer: return=minimal``."""
    prefer = request.headers.get("Prefer", "")
    return any(p.strip() == "return=minimal" for p in prefer.replace(";", ",").split(","))


def etag(version: int) -> str:
    """The ETag of a context version."""
    return f'"{version}"'


def json_response(
    body: Any, status: int = 200, *, version: int | None = None, replayed: bool = False
) -> web.Response:
    """``body`` as JSON; ``version`` becomes the ETag; ``replayed`` marks an idempotent retry."""
    return json_pieces_response([_encoder.encode(body)], status, version=version, replayed=replayed)


def encode(body: Any) -> bytes:
    """``body`` (a response Struct) as JSON."""
    return _encoder.encode(body)


SLICE = 256 << 10
"""Bytes handed to the socket at a time by a ``Pieces`` body, waiting for it in between."""


class Pieces(Payload):
    """A body sent as the pieces it was put together from: a whole context's messages are
    megabytes kept in memory, and joining them for each answer (and aiohttp joining the
    headers to them) copied them twice per answer, most of its cost. Sent a slice at a
    time, each waiting for the socket to take the one before, so nothing is copied whole
    into the transport's buffer either."""

    def __init__(self, pieces: list[bytes]) -> None:
        super().__init__(pieces, content_type="application/json")
        self._pieces = pieces
        self._size = sum(len(piece) for piece in pieces)

    def decode(self, encoding: str = "utf-8", errors: str = "strict") -> str:
        """The body as text (aiohttp's ``Response.text``)."""
        return b"".join(self._pieces).decode(encoding, errors)

    async def write(self, writer: AbstractStreamWriter) -> None:
        """Send every piece, a slice at a time; pieces smaller than a slice go together."""
        for chunk in _slices(self._pieces):
            await writer.write(chunk)


def _slices(pieces: list[bytes]) -> Iterator[bytes | memoryview]:
    """``pieces`` as chunks of about ``SLICE`` bytes: small pieces joined (the commas between
    runs, a run of a few appends: each was a send of its own), large ones cut as views."""
    small: list[bytes] = []
    size = 0
    for piece in pieces:
        if len(piece) < SLICE:
            small.append(piece)
            size += len(piece)
            if size >= SLICE:
                yield b"".join(small)
                small, size = [], 0
            continue
        if small:
            yield b"".join(small)
            small, size = [], 0
        view = memoryview(piece)
        for start in range(0, len(piece), SLICE):
            yield view[start : start + SLICE]
    if small:
        yield b"".join(small)


def json_pieces_response(
    pieces: list[bytes],
    status: int = 200,
    *,
    version: int | None = None,
    replayed: bool = False,
    next_url: str | None = None,
) -> web.Response:
    """``json_response`` of a body in pieces (``Pieces``); ``next_url`` becomes a ``Link``
    (rel next)."""
    body: bytes | Pieces = pieces[0] if len(pieces) == 1 else Pieces(pieces)
    response = web.Response(status=status, body=body, content_type="application/json")
    if version is not None:
        response.headers["ETag"] = etag(version)
    if replayed:
        response.headers["Idempotent-Replayed"] = "true"
    if next_url is not None:
        response.headers["Link"] = f'<{next_url}>; rel="next"'
    return response


def new_uuid() -> str:
    """A fresh random UUID as text."""
    return str(uuid.uuid4())


async def open_event_stream(request: web.Request, **headers: str) -> web.StreamResponse:
    """A prepared text/event-stream response (server-sent events) with ``headers``; no
    transformation or buffering by proxies, so each event reaches the client as written."""
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache, no-transform",
            "X-Accel-Buffering": "no",
            **headers,
        }
    )
    await response.prepare(request)
    return response
