"""The hostile-input corpus shared by the REST and MCP hostile suites: ids that look like SQL or
paths, every hostile variant of a valid JSON body, and a raw request that returns what came back
(whatever its status or content type)."""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import msgspec

ALICE = {"X-API-Key": "key-alice"}
JSON = {**ALICE, "Content-Type": "application/json"}
PLACEHOLDER = "\u2603HOSTILE\u2603"
HOSTILE_IDS = [
    "..",
    "../../../../etc/passwd",
    "..%2F..%2Fetc%2Fpasswd",
    "%2e%2e%2f%2e%2e%2f",
    "'; DROP TABLE events;--",
    "1 OR 1=1",
    "00000000-0000-4000-8000-000000000000' OR '1'='1",
    "%00",
    "*",
    "x" * 2000,
]


@dataclass
class Answer:
    status: int
    content_type: str
    body: bytes
    headers: dict[str, str]

    @property
    def json(self) -> Any:
        return msgspec.json.decode(self.body) if self.content_type == "application/json" else None


async def send(
    session: aiohttp.ClientSession,
    method: str,
    url: str,
    data: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> Answer:
    skip = ["Content-Type"] if headers is None or "Content-Type" not in headers else []
    # Large bodies as a stream: aiohttp warns (an error here) about big raw bytes.
    payload = io.BytesIO(data) if data is not None and len(data) > 1 << 20 else data
    async with session.request(
        method, url, data=payload, headers=headers, skip_auto_headers=skip
    ) as r:
        return Answer(r.status, r.content_type, await r.read(), dict(r.headers))


def _leaves(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], Any]]:
    yield path, value
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _leaves(v, (*path, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _leaves(v, (*path, i))


def _replace(body: Any, path: tuple[Any, ...], new: Any) -> Any:
    if not path:
        return new
    copy = dict(body) if isinstance(body, dict) else list(body)
    copy[path[0]] = _replace(body[path[0]], path[1:], new)
    return copy


def _rename(body: Any, path: tuple[Any, ...], new_key: str) -> Any:
    """``body`` with the key at ``path`` renamed."""
    parent = body
    for step in path[:-1]:
        parent = parent[step]
    renamed = {(new_key if k == path[-1] else k): v for k, v in parent.items()}
    return _replace(body, path[:-1], renamed)


def _with(body: Any, path: tuple[Any, ...], raw: bytes) -> bytes:
    """The body encoded, with the value at ``path`` replaced by raw JSON bytes."""
    marked = msgspec.json.encode(_replace(body, path, PLACEHOLDER))
    return marked.replace(msgspec.json.encode(PLACEHOLDER), raw)


def corpus(
    body: dict[str, Any], headers_taken: set[str]
) -> Iterator[tuple[str, bytes, dict[str, str]]]:
    """(what, body bytes, headers) of every hostile variant of a valid ``body``, and of the
    headers the operation takes (``headers_taken``)."""
    valid = msgspec.json.encode(body)
    for text in (b"{", b'{"a": }', b"nul", valid + b"}", b"\xef\xbb\xbf" + valid, b"[]", b'"s"'):
        yield f"malformed {text[:20]!r}", text, JSON
    first = next(iter(body))
    dup = b"{" + msgspec.json.encode(first) + b":" + msgspec.json.encode(body[first]) + b","
    yield "repeated key", dup + valid[1:], JSON
    yield "10 MB body", b'{"k": "' + b"x" * (10 << 20) + b'"}', JSON
    leaves = list(_leaves(body))
    for path, value in leaves:
        where = "$" + "".join(f"[{p!r}]" for p in path)
        if isinstance(value, str) and path:
            yield f"NUL in {where}", msgspec.json.encode(_replace(body, path, "a\x00b")), JSON
            yield f"invalid UTF-8 in {where}", _with(body, path, b'"a\xff\xfeb"'), JSON
            yield f"lone surrogate in {where}", _with(body, path, b'"a\\ud800b"'), JSON
            deep = b"[" * 10_000 + b"]" * 10_000
            yield f"10,000-deep array at {where}", _with(body, path, deep), JSON
            deep = b'{"a":' * 10_000 + b"1" + b"}" * 10_000
            yield f"10,000-deep object at {where}", _with(body, path, deep), JSON
        if isinstance(value, int) and not isinstance(value, bool):
            for huge in (b"1" + b"0" * 30, b"-" + b"9" * 25, b"1e999", b"9223372036854775808"):
                yield f"{huge[:12]!r} at {where}", _with(body, path, huge), JSON
        if isinstance(value, dict):
            for key in value:
                bad = _rename(body, (*path, key), f"{key}\x00")
                yield f"NUL in the key {where}[{key!r}]", msgspec.json.encode(bad), JSON
    for content_type in (
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/xml",
        "text/json",
        None,
    ):
        headers = {**ALICE, "Content-Type": content_type} if content_type else dict(ALICE)
        yield f"content type {content_type}", valid, headers
    for name, value in (
        ("Idempotency-Key", "has space"),
        ("Idempotency-Key", "k" * 256),
        ("Idempotency-Key", "ключ"),
        ("If-Match", '"1", "2"'),
        ("If-Match", "W/nonsense"),
    ):
        if name in headers_taken:
            yield f"{name}: {value[:20]!r}", valid, {**JSON, name: value}
