"""A slow event-stream reader holds bounded memory (issue 15, item 10).

100 clients open ``/api/v1/events/stream`` on a real ``ctxlog serve`` and never read it while
3 KB events are appended. Each stream may hold about ``CTXLOG_STREAM_BUFFER_BYTES`` of events
in its follower (feed or log page) plus what aiohttp's transport buffers before it stops
writing, so the server's resident memory grows by a bound derived from that budget, not by
the last 10,000 events per follower. A stream that starts reading again afterwards gets every
event, in order and with no gap: what its follower dropped is read from the log.

A memory bound, not a timing assertion: the test waits for everything with bounded polls.
"""

from __future__ import annotations

import asyncio
import re
import socket
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from api.config import load_settings
from api.settings import DEFAULT_STREAM_BUFFER_BYTES, Settings, SettingsError
from tests.support.server_process import ServerProcess, serving

V1 = "/api/v1"
ALICE = {"X-API-Key": "key-alice"}
STREAMS = 100
BUDGET = 32 << 10
"""The follower budget the server runs with here (the default is 1 MiB)."""
TRANSPORT = 128 << 10
"""What a stream's transport may buffer before aiohttp waits for the client: its high-water
mark (64 KiB) and the 64 KiB aiohttp writes between two waits."""
SLACK = 16 << 20
"""The rest: allocator arenas, read-model caches, the appends' own requests."""
EVENTS = 12_000
PER_REQUEST = 100
CONTENT = "x" * 3000
EVENT = re.compile(rb"id: (\d+)\nevent: ([a-z.]+)\ndata: ")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    db = tmp_path_factory.mktemp("stream-memory") / "streams.db"
    env = {"CTXLOG_STREAM_BUFFER_BYTES": str(BUDGET), "CTXLOG_MAX_LIVE_PER_KEY": str(STREAMS)}
    with serving(db, env=env) as proc:
        yield proc


def open_stream(port: int) -> socket.socket:
    """An event stream whose client reads its response head and then nothing (a receive
    buffer of a few KiB, so the server's writes back up at once)."""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.settimeout(30)
    s.connect(("127.0.0.1", port))
    request = f"GET {V1}/events/stream HTTP/1.1\r\nHost: 127.0.0.1\r\nX-API-Key: key-alice\r\n\r\n"
    s.sendall(request.encode())
    head = b""
    while b": connected" not in head:
        chunk = s.recv(4096)
        assert chunk, "the stream closed before it started"
        head += chunk
    assert head.startswith(b"HTTP/1.1 200"), head[:200]
    return s


def read_events(s: socket.socket, last: int) -> list[tuple[int, str]]:
    """Read the stream (chunked transfer encoding) until the event with id ``last``;
    (id, type) of every event in the order received."""
    s.settimeout(60)
    raw = b""
    found: list[tuple[int, str]] = []
    while not found or found[-1][0] < last:
        chunk = s.recv(1 << 20)
        assert chunk, f"the stream ended after id {found[-1][0] if found else None}"
        raw += chunk
        # Events are matched in the raw bytes: each write is one chunk holding whole events,
        # so chunk framing never falls inside an event's id line.
        cut = raw.rfind(b"\n\n")
        if cut < 0:
            continue
        found += [(int(m[1]), m[2].decode()) for m in EVENT.finditer(raw, 0, cut)]
        raw = raw[cut:]
    return found


async def append_events(session: aiohttp.ClientSession, url: str, cid: str, count: int) -> None:
    body = {"messages": [{"role": "user", "content": CONTENT}] * PER_REQUEST}
    headers = {**ALICE, "Prefer": "return=minimal"}
    target = f"{url}{V1}/contexts/{cid}/messages"
    for _ in range(count // PER_REQUEST):
        async with session.post(target, json=body, headers=headers) as r:
            assert r.status in (200, 201), await r.text()


async def stream_position(session: aiohttp.ClientSession, url: str) -> int:
    """The id of the caller's newest event as its audit shows it (the ids streams send)."""
    after = 0
    while True:
        async with session.get(f"{url}{V1}/events?after={after}&limit=1000", headers=ALICE) as r:
            assert r.status == 200, await r.text()
            page = await r.json()
        if not page["events"]:
            return after
        after = page["events"][-1]["position"]


def test_the_stream_budget_is_a_setting() -> None:
    assert load_settings(env={}).stream_buffer_bytes == DEFAULT_STREAM_BUFFER_BYTES == 1 << 20
    assert load_settings(env={"CTXLOG_STREAM_BUFFER_BYTES": "4096"}).stream_buffer_bytes == 4096
    with pytest.raises(SettingsError, match="CTXLOG_STREAM_BUFFER_BYTES must be an integer"):
        load_settings(env={"CTXLOG_STREAM_BUFFER_BYTES": "1 MiB"})
    with pytest.raises(SettingsError, match="stream_buffer_bytes must be at least 1"):
        Settings(stream_buffer_bytes=0).check()


@pytest.mark.slow
async def test_non_reading_streams_hold_bounded_memory_and_resume_without_gaps(
    server: ServerProcess, tmp_path: Path
) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{server.url}{V1}/contexts", json={}, headers=ALICE) as r:
            assert r.status == 201, await r.text()
            cid = (await r.json())["id"]
        # Warm up first: arenas, caches and the projector reach their working size.
        await append_events(session, server.url, cid, 3000)
        streams = [await asyncio.to_thread(open_stream, server.port) for _ in range(STREAMS)]
        try:
            start = await stream_position(session, server.url)
            before = server.rss_kib() * 1024
            await append_events(session, server.url, cid, EVENTS)
            last = await stream_position(session, server.url)
            await asyncio.sleep(1)  # the followers take what was published (bounded wait)
            growth = server.rss_kib() * 1024 - before
            bound = STREAMS * (2 * BUDGET + TRANSPORT) + SLACK
            assert growth < bound, f"+{growth >> 20} MiB for {STREAMS} idle streams"

            got = await asyncio.to_thread(read_events, streams[0], last)
        finally:
            for s in streams:
                s.close()
    assert last - start == EVENTS
    assert [i for i, _ in got] == list(range(start + 1, last + 1))
    assert {t for _, t in got} == {"message.appended"}
