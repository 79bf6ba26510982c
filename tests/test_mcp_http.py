"""The Streamable HTTP transport's rules in raw HTTP, for what every request passes (Origin,
API key, media types, body limit) and for the handshake era (sessions, versions, batches, the
GET event stream, DELETE). The stateless era is in ``test_mcp_stateless``."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from api.errors import ApiError
from api.mcp.sessions import Sessions
from api.mcp.updates import Follower
from api.ratelimit import LiveSlots
from projections.service import Caller
from tests.support.clients import AppClient
from tests.support.mcp_helpers import (
    ACCEPT,
    ALICE,
    BOB,
    initialize,
    next_event,
    post,
    request,
    start,
)


@pytest.fixture
async def client(tmp_path: Path, aiohttp_client: Any) -> AppClient:
    return await start(
        aiohttp_client, tmp_path, max_body_bytes=4096, allowed_origins=("https://ok.test",)
    )


# -- gates ------------------------------------------------------------------------------------


async def test_origins_not_allowed_are_403(client: AppClient) -> None:
    status, _, body = await post(client, request("ping"), {"Origin": "http://evil.test"})
    assert status == 403
    assert body["error"]["code"] == -32600
    assert body["id"] is None
    for origin in ("http://localhost:6274", "http://127.0.0.1", "https://ok.test"):
        status, _, _ = await post(client, request("ping"), {"Origin": origin})
        assert status == 400, origin  # past the gate: no session yet


async def test_a_key_is_required_like_the_rest_api(client: AppClient) -> None:
    for headers in ({}, {"X-API-Key": "nope"}, {"Authorization": "Bearer nope"}):
        sent = {**ACCEPT, "Content-Type": "application/json", **headers}
        async with client.post("/mcp", data=json.dumps(request("ping")), headers=sent) as r:
            assert r.status == 401
            assert r.headers["WWW-Authenticate"].startswith("Bearer")
            assert (await r.json())["error"]["code"] == -32600
    status, got, _ = await post(
        client,
        request("initialize", {"protocolVersion": "2025-11-25"}),
        {"X-API-Key": "", "Authorization": "Bearer key-alice"},
    )
    assert status == 200
    assert got["Mcp-Session-Id"]


async def test_media_types_and_body_limit(client: AppClient) -> None:
    status, _, _ = await post(client, request("ping"), {"Content-Type": "text/plain"})
    assert status == 415
    status, _, _ = await post(client, request("ping"), {"Accept": "text/html"})
    assert status == 406
    status, _, body = await post(client, request("ping", {"pad": "x" * 5000}))
    assert status == 413
    assert body["error"]["code"] == -32600
    status, _, body = await post(client, b"{not json", raw=True)
    assert status == 400
    assert body == {"jsonrpc": "2.0", "id": None, "error": body["error"]}
    assert body["error"]["code"] == -32700
    for bad in (b"42", b"[]", b'{"jsonrpc": "1.0", "id": 1, "method": "x"}', b'"\\u0000"'):
        status, _, body = await post(client, bad, raw=True)
        assert status == 400, bad
        assert body["error"]["code"] in (-32600, -32700), bad


# -- the handshake era ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("asked", "settled"),
    [
        ("2025-11-25", "2025-11-25"),
        ("2025-06-18", "2025-06-18"),
        ("2025-03-26", "2025-03-26"),
        ("1999-01-01", "2025-11-25"),
    ],
)
async def test_initialize_negotiates_the_version(
    client: AppClient, asked: str, settled: str
) -> None:
    params = {
        "protocolVersion": asked,
        "capabilities": {},
        "clientInfo": {"name": "t", "version": "1"},
    }
    status, headers, body = await post(client, request("initialize", params))
    assert status == 200
    assert body["result"]["protocolVersion"] == settled
    assert body["result"]["serverInfo"]["name"] == "ctxlog"
    assert body["result"]["capabilities"]["resources"] == {"subscribe": True, "listChanged": False}
    assert len(headers["Mcp-Session-Id"]) >= 32
    assert "resultType" not in body["result"]


async def test_sessions_are_required_and_private(client: AppClient) -> None:
    status, _, body = await post(client, request("tools/list"))
    assert status == 400
    assert "Mcp-Session-Id" in body["error"]["message"]
    status, _, _ = await post(client, request("tools/list"), {"Mcp-Session-Id": "nope"})
    assert status == 404
    session = await initialize(client)
    status, _, body = await post(client, request("tools/list"), {"Mcp-Session-Id": session})
    assert status == 200
    assert len(body["result"]["tools"]) == 13
    # Another key cannot use it; a wrong protocol version header is refused.
    status, _, _ = await post(client, request("tools/list"), {"Mcp-Session-Id": session, **BOB})
    assert status == 404
    wrong = {"Mcp-Session-Id": session, "MCP-Protocol-Version": "2025-06-18"}
    status, _, _ = await post(client, request("tools/list"), wrong)
    assert status == 400
    right = {"Mcp-Session-Id": session, "MCP-Protocol-Version": "2025-11-25"}
    status, _, _ = await post(client, request("ping"), right)
    assert status == 200


async def test_jsonrpc_errors_and_accepted_messages(client: AppClient) -> None:
    session = {"Mcp-Session-Id": await initialize(client)}
    status, _, body = await post(client, request("no/such", id_="a"), session)
    assert (status, body["id"], body["error"]["code"]) == (200, "a", -32601)
    status, _, body = await post(client, request("resources/read", {}), session)
    assert (status, body["error"]["code"]) == (200, -32602)
    status, _, body = await post(client, request("tools/call", {"name": "nope"}), session)
    assert (status, body["error"]["code"]) == (200, -32602)
    missing = f"ctxlog://contexts/{uuid.uuid4()}"
    status, _, body = await post(client, request("resources/read", {"uri": missing}), session)
    assert (status, body["error"]["code"]) == (200, -32002)
    status, _, body = await post(
        client, request("prompts/get", {"name": "continue_conversation"}), session
    )
    assert body["error"]["code"] == -32602
    answer = {"jsonrpc": "2.0", "id": 7, "result": {}}
    assert (await post(client, answer, session))[0] == 202
    cancel = {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 1}}
    assert (await post(client, cancel, session))[0] == 202
    status, _, body = await post(client, request("initialize", {}), session)
    assert status == 200  # a new session: initialize always opens one
    status, _, _ = await post(client, {"jsonrpc": "2.0", "method": "initialize"})
    assert status == 400


async def test_batches_only_in_2025_03_26(client: AppClient) -> None:
    old = {"Mcp-Session-Id": await initialize(client, "2025-03-26")}
    batch = [
        request("ping", id_=1),
        {"jsonrpc": "2.0", "method": "notifications/x"},
        request("tools/list", id_=2),
    ]
    status, _, body = await post(client, batch, old)
    assert status == 200
    assert [r["id"] for r in body] == [1, 2]
    assert "outputSchema" not in body[1]["result"]["tools"][0]
    status, _, _ = await post(client, [{"jsonrpc": "2.0", "method": "notifications/x"}], old)
    assert status == 202
    new = {"Mcp-Session-Id": await initialize(client)}
    status, _, _ = await post(client, batch, new)
    assert status == 400


async def test_event_stream_carries_updates_and_delete_ends_the_session(client: AppClient) -> None:
    session = await initialize(client)
    headers = {**ALICE, "Mcp-Session-Id": session, "MCP-Protocol-Version": "2025-11-25"}
    call = request("tools/call", {"name": "create_context", "arguments": {}})
    status, _, body = await post(client, call, headers)
    cid = body["result"]["structuredContent"]["id"]
    uri = f"ctxlog://contexts/{cid}"
    status, _, body = await post(client, request("resources/subscribe", {"uri": uri}), headers)
    assert (status, body["result"]) == (200, {})
    async with client.get("/mcp", headers={**headers, "Accept": "application/json"}) as r:
        assert r.status == 406
    async with client.get("/mcp", headers={**headers, "Accept": "text/event-stream"}) as stream:
        assert stream.status == 200
        assert stream.headers["Content-Type"] == "text/event-stream"
        assert stream.headers["Mcp-Session-Id"] == session
        async with client.get("/mcp", headers={**headers, "Accept": "text/event-stream"}) as second:
            assert second.status == 409
        rest = {**ALICE, "Content-Type": "application/json"}
        async with client.post(
            f"/api/v1/contexts/{cid}/messages", json={"role": "user", "content": "hi"}, headers=rest
        ) as r:
            assert r.status == 201
        event = await next_event(stream)
        assert event["method"] == "notifications/resources/updated"
        assert event["params"] == {"uri": uri}
        async with client.delete("/mcp", headers=headers) as r:
            assert r.status == 204
        async with asyncio.timeout(10):
            assert await stream.content.read() == b""  # the stream ended with the session
    status, _, _ = await post(client, request("ping"), headers)
    assert status == 404
    async with client.delete("/mcp", headers=headers) as r:
        assert r.status == 404


async def test_sessions_expire_and_are_limited() -> None:
    ann, bob = Caller("tenant-a", "ann"), Caller("tenant-b", "bob")
    sessions = Sessions(limit=1, idle=3600)
    first = await sessions.open(ann, "2025-11-25", "ann")
    with pytest.raises(ApiError) as full:
        await sessions.open(bob, "2025-11-25", "bob")
    assert full.value.status == 503
    assert await sessions.get(first.id, bob) is None  # not bob's
    assert await sessions.get(first.id, ann) is first
    assert await sessions.close(first.id)
    assert first.closed
    mine = Sessions(limit=3, per_key=1, idle=3600)
    await mine.open(ann, "2025-11-25", "ann")
    with pytest.raises(ApiError) as keys:
        await mine.open(ann, "2025-11-25", "ann")
    assert keys.value.status == 429
    await mine.open(bob, "2025-11-25", "bob")  # another key's own
    # A tenant's keys together: ann's second key is refused once the tenant holds three.
    shared = Sessions(limit=10, per_key=2, per_tenant=3, idle=3600)
    ann2 = Caller("tenant-a", "ann2")
    for who, key in ((ann, "ann"), (ann, "ann"), (ann2, "ann2")):
        await shared.open(who, "2025-11-25", key)
    with pytest.raises(ApiError) as tenant:
        await shared.open(ann2, "2025-11-25", "ann2")
    assert (tenant.value.status, tenant.value.details["limit"]) == (429, 3)
    assert "tenant" in tenant.value.message
    await shared.open(bob, "2025-11-25", "bob")  # another tenant's room is its own
    expiring = Sessions(idle=-1)
    gone = await expiring.open(ann, "2025-11-25")
    assert await expiring.get(gone.id, ann) is None
    assert len(expiring) == 0
    swept = Sessions(limit=1, idle=-1)
    old = await swept.open(ann, "2025-11-25")
    assert await swept.sweep() == 1
    assert old.closed
    new_ = Sessions(limit=1, per_key=1, idle=-1)
    old = await new_.open(ann, "2025-11-25", "ann")
    await new_.open(ann, "2025-11-25", "ann")  # the expired one makes room
    assert old.closed


async def test_a_session_ended_while_it_subscribes_keeps_no_follower() -> None:
    # DELETE can end a session while its resources/subscribe waits for the contexts service;
    # the follower that request then makes must stop and give its live slot back.
    ann = Caller("tenant-a", "ann")
    slots = LiveSlots(per_key=1, total=1)
    sessions = Sessions()
    session = await sessions.open(ann, "2025-11-25", "ann")
    await sessions.close(session.id)
    follower = session.follow(slots, lambda: Follower(None, ann, session.post))  # type: ignore[arg-type]
    follower.uris["ctxlog://contexts/x"] = "x"

    async def following() -> None:  # as after start(): until cancelled
        await asyncio.Event().wait()

    follower._task = asyncio.create_task(following())
    await session.unfollow_if_idle()  # what the subscribing request does last
    assert session.follower is None
    assert not follower.running
    assert slots.count == 0
