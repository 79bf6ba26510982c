"""The chat loop over REST and WebSocket (issue 16 item 5): append the user's message, POST the
window (recorded), append the reply with If-Match set to the window's ETag — it lands, the
record stays in the history, and the ETag is the version the model saw; a real change in
between is still 412 with the expected and current versions."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import msgspec
import pytest
from aiohttp import WSMsgType, web
from aiohttp.test_utils import TestClient

from api import appkeys, create_app, testing
from api.testing import ApiClient

CTX = "/api/v1/contexts"


@pytest.fixture
async def api(aiohttp_client: Any, tmp_path: Path) -> ApiClient:
    app = create_app(testing.settings(str(tmp_path / "ctx.db")))
    client: TestClient[web.Request, web.Application] = await aiohttp_client(app)
    api = ApiClient(client, app[appkeys.OPENAPI], "key-alice")
    await api.wait_ready()
    return api


def say(role: str, text: str) -> dict[str, str]:
    return {"role": role, "content": text}


async def test_the_chat_loop_with_if_match_from_the_windows_etag(api: ApiClient) -> None:
    cid = (await api.post(CTX, {}, expect=201)).json["id"]
    for turn in range(3):
        await api.post(f"{CTX}/{cid}/messages", say("user", f"q{turn}"), expect=201)
        shown = await api.post(f"{CTX}/{cid}/window", {"format": "openai"}, expect=200)
        etag = shown.headers["ETag"]
        assert etag == f'"{shown.json["version"]}"'
        reply = say("assistant", f"a{turn}")
        done = await api.post(
            f"{CTX}/{cid}/messages", reply, headers={"If-Match": etag}, expect=201
        )
        assert done.json["version"] == shown.json["version"] + 2
        # The ETag names exactly the state the model was shown (time travel).
        then = await api.get(f"{CTX}/{cid}?version={shown.json['version']}", expect=200)
        assert [m["content"] for m in then.json["messages"]] == [
            m["content"] for m in shown.json["messages"]
        ]
    events = (await api.get(f"{CTX}/{cid}/events?limit=100")).json["events"]
    assert [e["type"] for e in events].count("window.served") == 3
    texts = [m["content"] for m in (await api.get(f"{CTX}/{cid}")).json["messages"]]
    assert texts == ["q0", "a0", "q1", "a1", "q2", "a2"]


async def test_expected_version_in_the_body_and_a_real_change_between(api: ApiClient) -> None:
    cid = (await api.post(CTX, {}, expect=201)).json["id"]
    await api.post(f"{CTX}/{cid}/messages", say("user", "q"), expect=201)
    version = (await api.post(f"{CTX}/{cid}/window", expect=200)).json["version"]
    body = {"messages": [say("assistant", "a")], "expected_version": version}
    await api.post(f"{CTX}/{cid}/messages", body, expect=201)
    # A change by someone else between the window and the reply is still 412.
    shown = await api.post(f"{CTX}/{cid}/window", expect=200)
    await api.as_key("key-ann").patch(f"{CTX}/{cid}/metadata", {"topic": "x"}, expect=200)
    r = await api.post(
        f"{CTX}/{cid}/messages", say("assistant", "a"),
        headers={"If-Match": shown.headers["ETag"]}, expect=412,
    )  # fmt: skip
    version = shown.json["version"]
    assert r.json["error"]["code"] == "version_conflict"
    assert r.json["error"]["details"] == {
        "current_version": version + 2, "expected_version": str(version),
    }  # fmt: skip
    assert len((await api.get(f"{CTX}/{cid}")).json["messages"]) == 2  # nothing written


async def test_the_chat_loop_over_a_websocket(api: ApiClient) -> None:
    cid = (await api.post(CTX, {}, expect=201)).json["id"]
    async with api.client.ws_connect(f"/api/v1/ws/{cid}", headers={"X-API-Key": "key-alice"}) as ws:
        assert (await _frame(ws))["type"] == "context"
        await ws.send_json({"type": "append", "id": "q", "message": say("user", "q")})
        await _answer(ws, "q")
        shown = await api.post(f"{CTX}/{cid}/window", expect=200)
        await ws.send_json({
            "type": "append", "id": "a", "expected_version": shown.json["version"],
            "message": say("assistant", "a"),
        })  # fmt: skip
        answer = await _answer(ws, "a")
        assert answer["type"] == "appended", answer
        assert answer["version"] == shown.json["version"] + 2


async def _frame(ws: Any) -> dict[str, Any]:
    msg = await asyncio.wait_for(ws.receive(), 5)
    assert msg.type == WSMsgType.TEXT, msg
    return dict(msgspec.json.decode(msg.data))


async def _answer(ws: Any, frame_id: str) -> dict[str, Any]:
    """The answer to frame ``frame_id`` (events of the context may come before it)."""
    while True:
        frame = await _frame(ws)
        if frame.get("id") == frame_id:
            return frame


async def test_a_recorded_window_retried_with_its_idempotency_key_is_recorded_once(
    api: ApiClient,
) -> None:
    cid = (await api.post(CTX, {}, expect=201)).json["id"]
    await api.post(f"{CTX}/{cid}/messages", say("user", "q0"), expect=201)
    once = {"Idempotency-Key": "turn-1"}
    first = await api.post(f"{CTX}/{cid}/window", {"max_tokens": 500}, headers=once, expect=200)
    # The context moves on before the retry arrives (the first answer was lost, say).
    await api.post(f"{CTX}/{cid}/messages", say("user", "q1"), expect=201)
    retry = await api.post(f"{CTX}/{cid}/window", {"max_tokens": 500}, headers=once, expect=200)
    assert retry.json == first.json  # the window it recorded, not today's
    assert retry.headers["ETag"] == first.headers["ETag"]
    events = (await api.get(f"{CTX}/{cid}/events?limit=100")).json["events"]
    assert [e["type"] for e in events].count("window.served") == 1
    # The key names one record: other parameters, or another context, are refused.
    other = await api.post(f"{CTX}/{cid}/window", {"max_tokens": 7}, headers=once, expect=422)
    assert other.json["error"]["code"] == "idempotency_key_reused"
    cid2 = (await api.post(CTX, {}, expect=201)).json["id"]
    await api.post(f"{CTX}/{cid2}/window", {"max_tokens": 500}, headers=once, expect=422)
    # Without a key, each POST is a record of its own.
    await api.post(f"{CTX}/{cid}/window", {}, expect=200)
    await api.post(f"{CTX}/{cid}/window", {}, expect=200)
    events = (await api.get(f"{CTX}/{cid}/events?limit=100")).json["events"]
    assert [e["type"] for e in events].count("window.served") == 3
