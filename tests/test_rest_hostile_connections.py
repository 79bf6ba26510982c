"""Hostile connections against the real server: malformed HTTP framing and injected header
lines, slow clients (slowloris headers, trickled bodies), idle WebSockets and event streams
past their limits, and hostile WebSocket frames. Each is refused (a documented 4xx where the
application sees it, a clean close where only aiohttp's parser does), writes nothing, and
leaves the server serving everyone else. ``tests/test_rest_hostile.py`` holds the body corpus.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import pytest
from aiohttp import WSMsgType

from api.testing import Checker
from tests.support.server_process import (
    ServerProcess,
    key_secrets,
    seed_context,
    serving,
)

V1 = "/api/v1"
CTX = f"{V1}/contexts"
ALICE = {"X-API-Key": "key-alice"}
MAX_LIVE_PER_KEY = 3
MAX_LIVE = 5
LIMITS = {
    "CTXLOG_BODY_TIMEOUT": "1",
    "CTXLOG_KEEPALIVE_TIMEOUT": "2",
    "CTXLOG_MAX_LIVE_PER_KEY": str(MAX_LIVE_PER_KEY),
    "CTXLOG_MAX_LIVE": str(MAX_LIVE),
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    db = tmp_path_factory.mktemp("connections") / "connections.db"
    with serving(db, env=LIMITS, secrets=key_secrets()) as proc:
        yield proc


# -- raw HTTP: header injection and slow clients ----------------------------------------------


async def raw(server: ServerProcess, data: bytes, *, wait: float = 10.0) -> bytes:
    """Send bytes on a fresh connection; the first response (head and body) it answers."""
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        writer.write(data)
        await writer.drain()
        async with asyncio.timeout(wait):
            head_ = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head_.decode("latin-1").split("\r\n"):
                name, _, value = line.partition(":")
                if name.lower() == "content-length":
                    length = int(value)
            return head_ + await reader.readexactly(length)
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


def _status_and_headers(answer: bytes) -> tuple[int, list[str]]:
    head_, _, _ = answer.partition(b"\r\n\r\n")
    lines = head_.decode("latin-1").split("\r\n")
    return int(lines[0].split()[1]), [line.lower() for line in lines[1:]]


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GET /api/v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\nX-API-Key: key-alice\x01\r\n\r\n",
        b"GET /api/v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\nX-API-Key: key-alice\x00x\r\n\r\n",
        b"GET /api/v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\nX-API-Key: key-al\rice\r\n\r\n",
        b"GET /api/v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\nX-API-Key: key-\r\n alice\r\n\r\n",
        b"GET /api/v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\nX-API-Key: key-alice"
        + b"a" * 9000
        + b"\r\n\r\n",
        b"POST /api/v1/contexts HTTP/1.1\r\nHost: 127.0.0.1\r\nX-API-Key: key-alice\r\n"
        b"Content-Type: application/json\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}",
        b"POST /api/v1/contexts HTTP/1.1\r\nHost: 127.0.0.1\r\nX-API-Key: key-alice\r\n"
        b"Content-Type: application/json\r\nContent-Length: 2\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"POST /api/v1/contexts HTTP/1.1\r\nHost: 127.0.0.1\r\nX-API-Key: key-alice\r\n"
        b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"zz\r\n{}\r\n0\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
        b"GET /api/v1/search?q=" + b"key-alice" * 1000 + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
    ],
    ids=["ctl-char", "nul", "bare-cr", "obs-fold", "long-header", "two-lengths", "cl-and-te",
         "bad-chunk", "tls", "long-url"],
)  # fmt: skip
async def test_malformed_http_is_400_and_closed_and_writes_nothing(
    server: ServerProcess, request_bytes: bytes
) -> None:
    # aiohttp's parser refuses these before the application sees them: a 400 in the API's
    # JSON error shape that does not echo the request (errors.protocol_error), the connection
    # closed, nothing written, and (errors.QuietProtocolErrors) one log line without the raw
    # bytes, which may hold a key.
    before = server.head()
    answer = await raw(server, request_bytes)
    status, headers = _status_and_headers(answer)
    assert status == 400
    assert "content-type: application/json" in headers
    body = msgspec.json.decode(answer.partition(b"\r\n\r\n")[2])
    assert body["error"]["code"] == "invalid_request"
    assert b"key-alice" not in answer
    assert server.head() == before


async def test_injected_header_lines_are_not_reflected(
    server: ServerProcess, session: aiohttp.ClientSession
) -> None:
    answer = await raw(
        server,
        b"GET /api/v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
        b"X-API-Key: key-alice\r\n"
        b"X-Request-ID: abc\r\nSet-Cookie: stolen=1\r\n\r\n",
    )
    status, headers = _status_and_headers(answer)
    assert status == 200
    assert not any(h.startswith("set-cookie") for h in headers)
    async with session.get(
        f"{server.url}{V1}/events", headers={**ALICE, "X-Request-ID": "<script>alert(1)</script>"}
    ) as r:
        assert r.status == 200
        assert "<" not in r.headers["X-Request-ID"]


async def test_a_slowloris_client_is_cut_off_and_others_are_served(
    server: ServerProcess, session: aiohttp.ClientSession
) -> None:
    slow = []
    for _ in range(30):
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"POST /api/v1/contexts HTTP/1.1\r\nHost: 127.0.0.1\r\nX-A")
        slow.append((reader, writer))

    async def trickle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """One header byte at a time, never finishing: True once the server hangs up."""
        try:
            async with asyncio.timeout(20):
                while True:
                    writer.write(b"a")
                    await writer.drain()
                    try:
                        if not await asyncio.wait_for(reader.read(1024), 0.2):
                            return True
                    except TimeoutError:
                        continue
        except ConnectionError:
            return True
        except TimeoutError:
            return False
        finally:
            writer.close()

    trickles = [asyncio.create_task(trickle(r, w)) for r, w in slow]
    cid, _ = await seed_context(session, server)
    for i in range(20):
        body = {"role": "user", "content": f"while slow clients hang on {i}"}
        async with session.post(f"{server.url}{CTX}/{cid}/messages", json=body, headers=ALICE) as r:
            assert r.status == 201
    # The keep-alive timeout (2 s here) bounds how long a request's headers may take.
    assert all(await asyncio.gather(*trickles))


async def test_a_body_that_trickles_in_gets_408_and_writes_nothing(
    server: ServerProcess, checker: Checker
) -> None:
    before = server.head()
    answer = await raw(
        server,
        b"POST /api/v1/contexts HTTP/1.1\r\nHost: 127.0.0.1\r\nX-API-Key: key-alice\r\n"
        b'Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{"metadata": ',
    )
    status, _ = _status_and_headers(answer)
    assert status == 408
    body = msgspec.json.decode(answer.partition(b"\r\n\r\n")[2])
    checker.check("POST", CTX, 408, body, "application/json")
    assert body["error"]["code"] == "request_timeout"
    assert server.head() == before


# -- idle live connections --------------------------------------------------------------------


async def _ws(
    session: aiohttp.ClientSession, server: ServerProcess, cid: str, key: str
) -> aiohttp.ClientWebSocketResponse:
    ws = await session.ws_connect(f"{server.ws_url}{V1}/ws/{cid}", headers={"X-API-Key": key})
    first = await ws.receive(timeout=10)
    assert first.type == WSMsgType.TEXT
    return ws


async def _ws_once_free(
    session: aiohttp.ClientSession, server: ServerProcess, cid: str, key: str
) -> aiohttp.ClientWebSocketResponse:
    """A WebSocket as soon as the server has given back a slot (it does when the closed
    connection's handler ends, a moment after the client's close)."""
    async with asyncio.timeout(10):
        while True:
            try:
                return await _ws(session, server, cid, key)
            except aiohttp.WSServerHandshakeError:
                await asyncio.sleep(0.05)


async def _refusal(session: aiohttp.ClientSession, url: str, key: str) -> tuple[int, Any, str]:
    async with session.get(url, headers={"X-API-Key": key}) as r:
        return r.status, await r.json(), r.headers.get("Retry-After", "")


async def test_idle_live_connections_hit_a_limit_then_a_clean_refusal(
    server: ServerProcess, checker: Checker, session: aiohttp.ClientSession
) -> None:
    cid, _ = await seed_context(session, server)
    sse = f"{server.url}{V1}/events/stream"
    mine = [await _ws(session, server, cid, "key-alice") for _ in range(MAX_LIVE_PER_KEY)]
    try:
        # The key's own limit: a JSON 429 before the handshake, for WebSockets and SSE alike.
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused_ws:
            await session.ws_connect(f"{server.ws_url}{V1}/ws/{cid}", headers=ALICE)
        assert refused_ws.value.status == 429
        status, body, retry = await _refusal(session, sse, "key-alice")
        assert (status, body["error"]["code"]) == (429, "too_many_connections")
        assert retry.isdigit()
        checker.check("GET", f"{V1}/events/stream", status, body, "application/json")
        # Another caller still gets in, up to the server's limit; past it, 503.
        others = [await _ws(session, server, cid, "key-ann") for _ in range(MAX_LIVE - 3)]
        status, body, retry = await _refusal(session, sse, "key-bob")
        assert (status, body["error"]["code"]) == (503, "unavailable")
        assert retry.isdigit()
        # Plain requests are not held up by any of it.
        async with session.get(f"{server.url}{CTX}/{cid}", headers=ALICE) as r:
            assert r.status == 200
        for ws in others:
            await ws.close()
        # A slot comes back when its connection ends.
        await mine.pop().close()
        mine.append(await _ws_once_free(session, server, cid, "key-alice"))
    finally:
        for ws in mine:
            await ws.close()


async def test_one_tenant_with_many_keys_cannot_take_the_whole_server(
    tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    # tenant-a has two keys (alice, ann): each under its own cap, together past the tenant's.
    env = {**LIMITS, "CTXLOG_MAX_LIVE_PER_TENANT": "4", "CTXLOG_MAX_LIVE": "10"}
    with serving(tmp_path / "tenants.db", env=env, secrets=key_secrets()) as server:
        cid, _ = await seed_context(session, server)
        sse = f"{server.url}{V1}/events/stream"
        held = [await _ws(session, server, cid, "key-alice") for _ in range(MAX_LIVE_PER_KEY)]
        try:
            held.append(await _ws(session, server, cid, "key-ann"))
            status, body, retry = await _refusal(session, sse, "key-ann")
            assert (status, body["error"]["code"]) == (429, "too_many_connections")
            assert "tenant" in body["error"]["message"]
            assert retry.isdigit()
            assert body["error"]["details"]["limit"] == 4
            # Another tenant is not held up by tenant-a's connections.
            bobs, _ = await seed_context(session, server, "key-bob")
            held.append(await _ws(session, server, bobs, "key-bob"))
            # A slot comes back to the tenant when one of its connections ends.
            await held.pop(0).close()
            held.append(await _ws_once_free(session, server, cid, "key-ann"))
        finally:
            for ws in held:
                await ws.close()


async def test_hostile_websocket_frames_are_error_frames_and_write_nothing(
    server: ServerProcess, session: aiohttp.ClientSession
) -> None:
    cid, _ = await seed_context(session, server)
    ok = b'{"type": "append", "id": "a", "message": {"role": "user", "content": "x"}}'
    frames = [
        b"{",
        b'{"type": "append", "type": "ping"}',
        b'{"type": "append", "message": {"role": "user", "content": "a\\u0000b"}}',
        b'{"type": "append", "message": {"role": "user", "content": "a\\ud800b"}}',
        b'{"type": "append", "message": {"role": "user", "content": "x", "metadata": {"a": '
        + b"[" * 10_000
        + b"]" * 10_000
        + b"}}}",
        b'{"type": "append", "expected_version": 100000000000000000000000,'
        b' "message": {"role": "user", "content": "x"}}',
        b'{"type": "append", "message": {"role": "user", "content": "x", "metadata": {"n": '
        + b"9" * 40
        + b"}}}",
        b'{"type": "drop table"}',
    ]
    ws = await _ws(session, server, cid, "key-alice")
    try:
        before = server.head()
        for frame in frames:
            await ws.send_str(frame.decode())
            answer = await ws.receive(timeout=10)
            assert answer.type == WSMsgType.TEXT, frame[:60]
            data = msgspec.json.decode(answer.data)
            assert data["type"] == "error", frame[:60]
            assert 400 <= _status_of(data["error"]["code"]) < 500
        await ws.send_bytes(b"\xff\xfe not text")
        assert msgspec.json.decode((await ws.receive(timeout=10)).data)["type"] == "error"
        assert server.head() == before
        await ws.send_str(ok.decode())
        kinds = set()
        for _ in range(2):  # the answer and the event, either order
            kinds.add(msgspec.json.decode((await ws.receive(timeout=10)).data)["type"])
        assert kinds == {"appended", "event"}
        # A frame over the body limit ends the socket (1009), and writes nothing.
        before = server.head()
        try:
            await ws.send_str('{"type": "ping", "id": "' + "x" * (2 << 20) + '"}')
        except ConnectionError:
            # The server may refuse the frame and drop the socket before the
            # client has finished writing it: that is the refusal, seen early.
            pass
        else:
            closing = await ws.receive(timeout=10)
            assert closing.type in (WSMsgType.CLOSE, WSMsgType.CLOSED, WSMsgType.ERROR)
        assert server.head() == before
    finally:
        await ws.close()


def _status_of(code: str) -> int:
    return {
        "invalid_json": 400,
        "invalid_request": 400,
        "version_conflict": 412,
        "invalid_command": 422,
    }.get(code, 500)
