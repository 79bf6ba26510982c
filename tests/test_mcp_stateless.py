"""The stateless era (2026-07-28) over HTTP in raw requests: the per-request envelope and the
routing headers, the statuses errors come with, cache hints, ``subscriptions/listen`` streams,
pagination, and no 5xx for anything a client sends."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from api.mcp import resources
from tests.support.clients import AppClient
from tests.support.mcp_helpers import (
    ACCEPT,
    ALICE,
    ENVELOPE,
    MODERN,
    initialize,
    modern,
    next_event,
    post,
    request,
    start,
)


@pytest.fixture
async def client(tmp_path: Path, aiohttp_client: Any) -> AppClient:
    return await start(aiohttp_client, tmp_path)


async def test_stateless_requests_carry_their_own_envelope(client: AppClient) -> None:
    body, headers = modern("server/discover")
    status, got, reply = await post(client, body, headers)
    assert status == 200
    assert "Mcp-Session-Id" not in got
    result = reply["result"]
    assert MODERN in result["supportedVersions"]
    assert "2025-03-26" in result["supportedVersions"]
    assert result["resultType"] == "complete"
    assert result["_meta"]["io.modelcontextprotocol/serverInfo"]["name"] == "ctxlog"
    assert (result["ttlMs"], result["cacheScope"]) == (3_600_000, "public")
    body, headers = modern("resources/list")
    status, _, reply = await post(client, body, headers)
    assert (reply["result"]["ttlMs"], reply["result"]["cacheScope"]) == (0, "private")
    body, headers = modern("ping")
    status, _, reply = await post(client, body, headers)
    assert (status, reply["error"]["code"]) == (404, -32601)  # ping is gone in 2026-07-28


async def test_stateless_header_rules(client: AppClient) -> None:
    body, headers = modern("tools/list")
    # Mcp-Method missing or wrong; Mcp-Name missing or wrong (also base64-encoded).
    status, _, reply = await post(client, body, {"MCP-Protocol-Version": MODERN})
    assert (status, reply["error"]["code"]) == (400, -32020)
    status, _, reply = await post(client, body, {**headers, "Mcp-Method": "tools/call"})
    assert (status, reply["error"]["code"]) == (400, -32020)
    call, call_headers = modern("tools/call", {"name": "list_contexts", "arguments": {}})
    status, _, reply = await post(client, call, call_headers)
    assert (status, reply["error"]["code"]) == (400, -32020)
    status, _, reply = await post(client, call, {**call_headers, "Mcp-Name": "get_context"})
    assert (status, reply["error"]["code"]) == (400, -32020)
    status, _, reply = await post(client, call, {**call_headers, "Mcp-Name": "list_contexts"})
    assert status == 200
    assert reply["result"]["isError"] is False
    encoded = "=?base64?bGlzdF9jb250ZXh0cw==?="  # list_contexts
    status, _, reply = await post(client, call, {**call_headers, "Mcp-Name": encoded})
    assert status == 200
    # The header and the envelope disagree; the envelope is missing; the version is unknown.
    status, _, reply = await post(client, body, {**headers, "MCP-Protocol-Version": "2027-01-01"})
    assert (status, reply["error"]["code"]) == (400, -32020)
    bare = request("tools/list")
    status, _, reply = await post(client, bare, headers)
    assert (status, reply["error"]["code"]) == (400, -32602)
    future = request(
        "tools/list",
        {"_meta": {**ENVELOPE, "io.modelcontextprotocol/protocolVersion": "2027-01-01"}},
    )
    status, _, reply = await post(client, future, {**headers, "MCP-Protocol-Version": "2027-01-01"})
    assert (status, reply["error"]["code"]) == (400, -32022)
    assert reply["error"]["data"]["requested"] == "2027-01-01"
    assert MODERN in reply["error"]["data"]["supported"]
    # Without the header but with the envelope: told the header is missing.
    status, _, reply = await post(client, body, {"Mcp-Method": "tools/list"})
    assert (status, reply["error"]["code"]) == (400, -32020)


async def test_stateless_errors_statuses_and_other_methods(client: AppClient) -> None:
    call, headers = modern("tools/call", {"name": "nope"}, **{"Mcp-Name": "nope"})
    status, _, reply = await post(client, call, headers)
    assert (status, reply["id"], reply["error"]["code"]) == (400, 1, -32602)
    uri = f"ctxlog://contexts/{uuid.uuid4()}"
    read, headers = modern("resources/read", {"uri": uri}, **{"Mcp-Name": uri})
    status, _, reply = await post(client, read, headers)
    assert (status, reply["error"]["code"], reply["error"]["data"]) == (400, -32602, {"uri": uri})
    note = {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 1}}
    status, _, reply = await post(client, note, {"MCP-Protocol-Version": MODERN})
    assert (status, reply) == (202, None)
    status, _, _ = await post(
        client, {"jsonrpc": "2.0", "id": 1, "result": {}}, {"MCP-Protocol-Version": MODERN}
    )
    assert status == 400
    for method in ("GET", "DELETE"):
        async with client.request(
            method, "/mcp", headers={**ALICE, **ACCEPT, "MCP-Protocol-Version": MODERN}
        ) as r:
            assert r.status == 405
            assert r.headers["Allow"] == "POST"
    listen, headers = modern("subscriptions/listen", {"notifications": {}})
    status, _, _ = await post(client, listen, {**headers, "Accept": "application/json"})
    assert status == 406


async def test_listen_stream_acknowledges_and_closes_gracefully(client: AppClient) -> None:
    create, headers = modern(
        "tools/call", {"name": "create_context", "arguments": {}}, **{"Mcp-Name": "create_context"}
    )
    _, _, reply = await post(client, create, headers)
    cid = reply["result"]["structuredContent"]["id"]
    uri = f"ctxlog://contexts/{cid}"
    wanted = {
        "resourceSubscriptions": [uri, "ctxlog://nope"],
        "resourcesListChanged": True,
        "toolsListChanged": True,
    }
    listen, headers = modern("subscriptions/listen", {"notifications": wanted})
    listen["id"] = "sub-1"
    sent = {**ALICE, **ACCEPT, "Content-Type": "application/json", **headers}
    stream = await client.post("/mcp", data=json.dumps(listen), headers=sent)
    try:
        assert stream.headers["Content-Type"] == "text/event-stream"
        ack = await next_event(stream)
        assert ack["method"] == "notifications/subscriptions/acknowledged"
        assert ack["params"]["_meta"] == {"io.modelcontextprotocol/subscriptionId": "sub-1"}
        assert ack["params"]["notifications"] == {
            "resourceSubscriptions": [uri],
            "resourcesListChanged": True,
        }
        rest = {**ALICE, "Content-Type": "application/json"}
        async with client.post("/api/v1/contexts", json={}, headers=rest) as r:
            assert r.status == 201
        changed = await next_event(stream)
        assert changed["method"] == "notifications/resources/list_changed"
        async with client.post(
            f"/api/v1/contexts/{cid}/messages", json={"role": "user", "content": "hi"}, headers=rest
        ) as r:
            assert r.status == 201
        updated = await next_event(stream)
        assert updated["params"]["uri"] == uri
        assert updated["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"] == "sub-1"
        # A change made over the WebSocket reaches the subscriber too.
        async with client.ws_connect(f"/api/v1/ws/{cid}", headers=ALICE) as ws:
            assert (await ws.receive_json())["type"] == "context"
            await ws.send_json({"type": "append", "message": {"role": "user", "content": "yo"}})
            assert (await ws.receive_json())["type"] in ("appended", "event")
        assert (await next_event(stream))["params"]["uri"] == uri
        # A shutdown ends the subscription with its (empty) result.
        closing = asyncio.create_task(client.server.close())
        final = await next_event(stream)
        assert final["id"] == "sub-1"
        assert final["result"]["resultType"] == "complete"
        assert final["result"]["_meta"]["io.modelcontextprotocol/subscriptionId"] == "sub-1"
        await closing
    finally:
        stream.close()


async def test_no_input_gets_a_5xx(client: AppClient) -> None:
    session = await initialize(client)
    bodies: list[Any] = [
        None,
        [],
        {},
        {"jsonrpc": "2.0"},
        {"jsonrpc": "2.0", "id": None, "method": "ping"},
        {"jsonrpc": "2.0", "id": 1.5, "method": "ping"},
        {"jsonrpc": "2.0", "id": True, "method": "x"},
        {"jsonrpc": "2.0", "id": 1, "method": 3},
        {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": []},
        request("tools/call", {"name": 5}),
        request("tools/call", {"name": "get_context", "arguments": []}),
        request("tools/call", {"name": "get_context", "arguments": {"context_id": "x" * 500}}),
        request("resources/read", {"uri": "ctxlog://contexts/" + "a" * 4000}),
        request("resources/read", {"uri": f"ctxlog://contexts/{uuid.uuid4()}/events?limit=0"}),
        request("resources/subscribe", {"uri": 5}),
        request("resources/list", {"cursor": "zz"}),
        request(
            "prompts/get",
            {"name": "continue_conversation", "arguments": {"context_id": "x", "max_tokens": "-1"}},
        ),
        request("tools/list", {"cursor": "x"}),
        request("initialize", {"protocolVersion": 5}),
    ]
    for headers in (
        {"Mcp-Session-Id": session},
        {"MCP-Protocol-Version": MODERN, "Mcp-Method": "x"},
    ):
        for body in bodies:
            status, _, _ = await post(client, body, headers)
            assert status < 500, (body, headers)


async def test_resources_list_is_paginated(client: AppClient, monkeypatch: Any) -> None:
    monkeypatch.setattr(resources, "PAGE", 2)
    rest = {**ALICE, "Content-Type": "application/json"}
    made = []
    for n in range(3):
        async with client.post(
            "/api/v1/contexts", json={"metadata": {"title": f"c{n}"}}, headers=rest
        ) as r:
            made.append((await r.json())["id"])
    body, headers = modern("resources/list")
    _, _, first = await post(client, body, headers)
    assert [r["title"] for r in first["result"]["resources"]] == ["c2", "c1"]
    cursor = first["result"]["nextCursor"]
    body, headers = modern("resources/list", {"cursor": cursor})
    _, _, second = await post(client, body, headers)
    assert [r["uri"] for r in second["result"]["resources"]] == [f"ctxlog://contexts/{made[0]}"]
    assert "nextCursor" not in second["result"]
    body, headers = modern("resources/list", {"cursor": "bogus"})
    status, _, reply = await post(client, body, headers)
    assert (status, reply["error"]["code"]) == (400, -32602)


async def test_listen_streams_count_against_the_live_connection_cap(
    tmp_path: Path, aiohttp_client: Any
) -> None:
    """An MCP event stream is a live connection like a WebSocket: past the key's cap the next
    one is refused (429 with Retry-After) before it starts, and a slot frees when one ends."""
    client = await start(aiohttp_client, tmp_path, max_live_per_key=1)
    listen, headers = modern(
        "subscriptions/listen", {"notifications": {"resourcesListChanged": True}}
    )
    sent = {**ALICE, **ACCEPT, "Content-Type": "application/json", **headers}
    first = await client.post("/mcp", data=json.dumps(listen), headers=sent)
    try:
        assert (await next_event(first))["method"] == "notifications/subscriptions/acknowledged"
        status, got, reply = await post(client, listen, headers)
        assert status == 429
        assert int(got["Retry-After"]) >= 1
        assert "error" in reply
        # The cap is one pool with WebSockets and event streams: a WebSocket is refused too.
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await client.ws_connect(f"/api/v1/ws/{uuid.uuid4()}", headers=ALICE)
        assert refused.value.status == 429
    finally:
        first.close()
    async with asyncio.timeout(5):
        while True:  # the server notices the closed stream and gives its slot back
            again = await client.post("/mcp", data=json.dumps(listen), headers=sent)
            if again.status == 200:
                again.close()
                break
            again.close()
            await asyncio.sleep(0.05)
