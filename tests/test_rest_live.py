"""Live updates and the real server: a WebSocket and an SSE stream each see an append made by
another client; the ``ctxlog serve`` process restarts on the same file with the same state and
exits 0 on SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import pytest
from aiohttp import WSMsgType

from api import appkeys, create_app, testing
from api.testing import ApiClient
from tests.support.clients import AppClient

V1 = "/api/v1"
CTX = f"{V1}/contexts"
ALICE = {"X-API-Key": "key-alice"}
BOB = {"X-API-Key": "key-bob"}


@pytest.fixture
async def api(aiohttp_client: Any, tmp_path: Path) -> ApiClient:
    app = create_app(testing.settings(str(tmp_path / "ctx.db"), sse_heartbeat=0.05))
    client: AppClient = await aiohttp_client(app)
    api = ApiClient(client, app[appkeys.OPENAPI], "key-alice")
    await api.wait_ready()
    return api


async def _new(api: ApiClient) -> str:
    return str((await api.post(CTX, {}, expect=201)).json["id"])


async def _frame(ws: aiohttp.ClientWebSocketResponse) -> dict[str, Any]:
    msg = await asyncio.wait_for(ws.receive(), 5)
    assert msg.type == WSMsgType.TEXT, msg
    return dict(msgspec.json.decode(msg.data))


# -- WebSocket --------------------------------------------------------------------------------


async def test_websocket_sends_the_context_then_changes_by_others(api: ApiClient) -> None:
    cid = await _new(api)
    async with api.client.ws_connect(f"{V1}/ws/{cid}", headers=ALICE) as ws:
        first = await _frame(ws)
        assert first["type"] == "context"
        assert first["context"]["id"] == cid
        assert first["context"]["version"] == 1
        # Another client (another key of the same tenant) appends over REST.
        await api.as_key("key-ann").post(
            f"{CTX}/{cid}/messages", {"role": "user", "content": "from ann"}, expect=201
        )
        event = await _frame(ws)
        assert event["type"] == "event"
        assert event["event"]["type"] == "message.appended"
        assert event["event"]["data"]["content"] == "from ann"
        assert event["event"]["actor"] == "ann"
        assert event["event"]["version"] == 2


async def test_websocket_append_frames_are_answered(api: ApiClient) -> None:
    cid = await _new(api)
    async with api.client.ws_connect(f"{V1}/ws/{cid}", headers=ALICE) as ws:
        await _frame(ws)
        await ws.send_str('{"type": "ping", "id": "p"}')
        assert await _frame(ws) == {"type": "pong", "id": "p"}
        await ws.send_json(
            {"type": "append", "id": "a1", "message": {"role": "user", "content": "hi"}}
        )
        frames = [await _frame(ws), await _frame(ws)]  # the answer and the event, either order
        answer = next(f for f in frames if f["type"] == "appended")
        assert answer["id"] == "a1"
        assert answer["version"] == 2
        assert len(answer["message_ids"]) == 1
        assert any(f["type"] == "event" for f in frames)
        # Errors are frames; the socket stays open.
        await ws.send_json({"type": "append", "id": "a2", "message": {"role": "x"}})
        error = await _frame(ws)
        assert error["type"] == "error"
        assert error["id"] is None or error["id"] == "a2"
        assert error["error"]["code"] == "invalid_request"
        await ws.send_json(
            {"type": "append", "id": "a3", "expected_version": 1,
             "message": {"role": "user", "content": "late"}}
        )  # fmt: skip
        error = await _frame(ws)
        assert error["error"]["code"] == "version_conflict"
        assert error["id"] == "a3"
        await ws.send_str("not json")
        assert (await _frame(ws))["error"]["code"] == "invalid_json"
        await ws.send_bytes(b"{}")
        assert (await _frame(ws))["type"] == "error"
        await ws.send_str('{"type": "ping"}')
        assert (await _frame(ws))["type"] == "pong"
    assert (await api.get(f"{CTX}/{cid}")).json["version"] == 2


@pytest.mark.parametrize("who", ["unknown", "other-tenant", "malformed"])
async def test_websocket_to_an_unknown_context_closes_1008(api: ApiClient, who: str) -> None:
    cid = await _new(api)
    target = {
        "unknown": "00000000-0000-4000-8000-000000000000",
        "other-tenant": cid,
        "malformed": "nope",
    }[who]
    async with api.client.ws_connect(f"{V1}/ws/{target}", headers=BOB) as ws:
        msg = await asyncio.wait_for(ws.receive(), 5)
        assert msg.type == WSMsgType.CLOSE
        assert ws.close_code == 1008


async def test_websocket_needs_a_key(api: ApiClient) -> None:
    cid = await _new(api)
    with pytest.raises(aiohttp.WSServerHandshakeError) as e:
        await api.client.ws_connect(f"{V1}/ws/{cid}")
    assert e.value.status == 401


async def test_websocket_closes_when_the_context_is_deleted(api: ApiClient) -> None:
    cid = await _new(api)
    async with api.client.ws_connect(f"{V1}/ws/{cid}", headers=ALICE) as ws:
        await _frame(ws)
        await api.delete(f"{CTX}/{cid}", expect=204)
        assert (await _frame(ws))["event"]["type"] == "context.deleted"
        msg = await asyncio.wait_for(ws.receive(), 5)
        assert msg.type == WSMsgType.CLOSE


# -- Server-Sent Events -----------------------------------------------------------------------


async def _sse_events(
    response: aiohttp.ClientResponse, count: int
) -> list[tuple[int, str, dict[str, Any]]]:
    events: list[tuple[int, str, dict[str, Any]]] = []
    fields: dict[str, str] = {}
    async with asyncio.timeout(5):
        while len(events) < count:
            line = (await response.content.readline()).decode().rstrip("\n")
            if not line:
                if "data" in fields:
                    data = msgspec.json.decode(fields["data"])
                    events.append((int(fields["id"]), fields["event"], data))
                fields = {}
            elif not line.startswith(":"):
                name, _, value = line.partition(": ")
                fields[name] = value
    return events


async def test_sse_streams_appends_by_another_client_and_resumes(api: ApiClient) -> None:
    cid = await _new(api)
    url = f"{V1}/events/stream"
    async with api.client.get(url, headers=ALICE) as stream:
        assert stream.status == 200
        assert stream.headers["Content-Type"].startswith("text/event-stream")
        await api.as_key("key-ann").post(
            f"{CTX}/{cid}/messages", {"role": "user", "content": "live"}, expect=201
        )
        [(position, kind, data)] = await _sse_events(stream, 1)
    assert kind == "message.appended"
    assert data["data"]["content"] == "live"
    assert data["position"] == position
    # Resume from before that event: it comes again, then what followed.
    await api.post(f"{CTX}/{cid}/messages", {"role": "user", "content": "next"}, expect=201)
    headers = {**ALICE, "Last-Event-ID": str(position - 1)}
    async with api.client.get(url, headers=headers) as stream:
        got = await _sse_events(stream, 2)
    assert [e[2]["data"]["content"] for e in got] == ["live", "next"]
    async with api.client.get(f"{url}?after=0&type=context.created", headers=ALICE) as stream:
        [(_, kind, _)] = await _sse_events(stream, 1)
        assert kind == "context.created"


async def test_sse_shows_only_the_tenant(api: ApiClient) -> None:
    cid = await _new(api)
    async with api.client.get(f"{V1}/events/stream?after=0", headers=BOB) as stream:
        bobs = (await api.as_key("key-bob").post(CTX, {}, expect=201)).json["id"]
        await api.post(f"{CTX}/{cid}/messages", {"role": "user", "content": "a"}, expect=201)
        [(_, _, data)] = await _sse_events(stream, 1)
    assert data["context_id"] == bobs


async def test_sse_bad_last_event_id_is_400(api: ApiClient) -> None:
    r = await api.get(f"{V1}/events/stream", headers={"Last-Event-ID": "x"}, expect=400)
    assert r.json["error"]["details"]["in"] == "header"


# -- the real server --------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """A ``ctxlog serve`` subprocess on a free loopback port."""

    def __init__(self, db: Path, port: int) -> None:
        env = {
            **os.environ,
            "CTXLOG_API_KEYS": "key-alice:tenant-a:alice",
            "CTXLOG_PORT": str(port),
        }
        self.url = f"http://127.0.0.1:{port}"
        # A file, not a pipe: a chatty server can never block on a full pipe.
        self.log = db.with_name(f"server-{port}.log")
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "api", "serve", "--db", str(db)],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    async def ready(self, session: aiohttp.ClientSession) -> None:
        async with asyncio.timeout(30):
            while True:
                assert self.proc.poll() is None, self.output()
                try:
                    async with session.get(f"{self.url}/healthz") as r:
                        if r.status == 200:
                            return
                except aiohttp.ClientConnectionError:
                    pass
                await asyncio.sleep(0.05)

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(30)

    def output(self) -> str:
        return self.log.read_text()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(headers=ALICE) as session:
        yield session


async def test_real_server_restarts_with_the_same_state_and_stops_cleanly(
    tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    db = tmp_path / "served.db"
    server = Server(db, _free_port())
    try:
        await server.ready(session)
        async with session.post(f"{server.url}{CTX}", json={"metadata": {"k": 1}}) as r:
            assert r.status == 201
            cid = (await r.json())["id"]
        async with session.post(
            f"{server.url}{CTX}/{cid}/messages", json={"role": "user", "content": "kept"}
        ) as r:
            assert r.status == 201
        async with session.get(f"{server.url}{CTX}/{cid}") as r:
            before = await r.json()
    finally:
        code = server.stop()
    assert code == 0, server.output()
    assert "Traceback" not in server.output()

    server = Server(db, _free_port())
    try:
        await server.ready(session)
        async with session.get(f"{server.url}{CTX}/{cid}") as r:
            assert r.status == 200
            assert await r.json() == before
        async with session.get(f"{server.url}/") as r:
            assert (await r.json())["name"] == "ctxlog"
    finally:
        assert server.stop() == 0


async def test_sigterm_finishes_in_flight_requests_and_open_streams(
    tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    server = Server(tmp_path / "served.db", _free_port())
    try:
        await server.ready(session)
        async with session.post(f"{server.url}{CTX}", json={}) as r:
            cid = (await r.json())["id"]
        stream = await session.get(f"{server.url}{V1}/events/stream")
        ws = await session.ws_connect(f"{server.url.replace('http', 'ws')}{V1}/ws/{cid}")
        await ws.receive()
        appends = [
            session.post(
                f"{server.url}{CTX}/{cid}/messages", json={"role": "user", "content": f"m{i}"}
            )
            for i in range(5)
        ]
        pending = [asyncio.ensure_future(a) for a in appends]
        await asyncio.sleep(0)
    finally:
        code = await asyncio.to_thread(server.stop)
    assert code == 0, server.output()
    answered = 0
    for done in await asyncio.gather(*pending, return_exceptions=True):
        if isinstance(done, aiohttp.ClientResponse):
            assert done.status == 201
            answered += 1
            done.release()
    # The changes of appends answered before the stop may come first; then the close.
    while (msg := await ws.receive()).type == WSMsgType.TEXT:
        assert msg.json()["type"] == "event"
    assert msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSED)
    await ws.close()
    stream.release()
    assert "Traceback" not in server.output()
    # Every append that was answered is durable.
    server = Server(tmp_path / "served.db", _free_port())
    try:
        await server.ready(session)
        async with session.get(f"{server.url}{CTX}/{cid}") as r:
            assert len((await r.json())["messages"]) >= answered
    finally:
        assert server.stop() == 0
