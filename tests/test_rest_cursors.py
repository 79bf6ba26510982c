"""Positions and cursors reveal nothing of other tenants (issue 15, item 14).

Tenant B does the same things on two servers; on the second, tenant A writes 1,000 events
in between. Everything B is shown that says where it is — positions in audit pages, history
pages, WebSocket frames and MCP answers, ``next_after``, SSE ids and resuming with
``Last-Event-ID``, listing cursors — is identical on both, and B's positions are simply 1, 2,
3, …: its own events, numbered. B is not shown the log's chain hash (it covers the event
before, perhaps A's, and the log position). An open server (no tenants) keeps the log's.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import msgspec
from aiohttp import WSMsgType

from api import appkeys, create_app, testing
from api.testing import ApiClient
from tests.support.clients import AppClient
from tests.support.mcp_helpers import modern, post

V1 = "/api/v1"
CTX = f"{V1}/contexts"
ALICE = {"X-API-Key": "key-alice"}
BOB = {"X-API-Key": "key-bob"}


async def start(aiohttp_client: Any, db: Path, **settings: Any) -> ApiClient:
    app = create_app(testing.settings(str(db), **settings))
    client: AppClient = await aiohttp_client(app)
    api = ApiClient(client, app[appkeys.OPENAPI], "key-bob")
    await api.wait_ready()
    return api


async def noise(api: ApiClient, events: int) -> None:
    """Tenant A writes ``events`` events (one context, batches of 100 messages)."""
    alice = api.as_key("key-alice")
    cid = (await alice.post(CTX, {}, expect=201)).json["id"]
    events -= 1
    while events:
        batch = min(100, events)
        body = {"messages": [{"role": "user", "content": "a"}] * batch}
        await alice.post(f"{CTX}/{cid}/messages", body, expect=201)
        events -= batch


async def sse_ids(api: ApiClient, headers: dict[str, str], count: int) -> list[int]:
    """The ids of the first ``count`` events of B's event stream."""
    ids: list[int] = []
    async with api.client.get(f"{V1}/events/stream", headers={**BOB, **headers}) as r:
        assert r.status == 200
        async with asyncio.timeout(10):
            pending: int | None = None
            async for line in r.content:
                # The stream's first block names where it starts (an id, no event): only the
                # ids of blocks that carry an event are events' positions.
                if line.startswith(b"id: "):
                    pending = int(line[4:])
                elif line.startswith(b"event: ") and pending is not None:
                    ids.append(pending)
                    if len(ids) == count:
                        return ids
    raise AssertionError(f"the stream ended after {ids}")


def positions(page: dict[str, Any]) -> list[int]:
    return [e["position"] for e in page["events"]]


async def what_b_sees(api: ApiClient, *, with_a: bool) -> dict[str, Any]:
    """B's observable positions and cursors, with or without A writing in between."""
    seen: dict[str, Any] = {}
    between: Callable[[], Awaitable[object]]
    between = (lambda: noise(api, 125)) if with_a else (lambda: asyncio.sleep(0))
    await between()
    cid = (await api.post(CTX, {}, expect=201)).json["id"]
    await between()
    async with api.client.ws_connect(f"{V1}/ws/{cid}", headers=BOB) as ws:
        assert (await ws.receive_json(timeout=5))["type"] == "context"
        for text in ("one", "two", "three"):
            await api.post(f"{CTX}/{cid}/messages", {"role": "user", "content": text}, expect=201)
            await between()
        frames = []
        for _ in range(3):
            msg = await ws.receive(timeout=5)
            assert msg.type == WSMsgType.TEXT
            frames.append(msgspec.json.decode(msg.data)["event"])
    seen["websocket"] = [f["position"] for f in frames]
    seen["hashes"] = {f["hash"] for f in frames}
    for n in range(3):  # more contexts, for listing pages
        await api.post(CTX, {"metadata": {"n": n}}, expect=201)
        await between()

    pages, after = [], 0
    while True:
        page = (await api.get(f"{V1}/events?after={after}&limit=3", expect=200)).json
        pages.append((positions(page), page["next_after"]))
        if not page["events"]:
            break
        after = page["next_after"]
    seen["audit"] = pages
    only = (await api.get(f"{V1}/events?type=message.appended&limit=10", expect=200)).json
    seen["audit filtered"] = (positions(only), only["next_after"])
    later = (await api.get(f"{V1}/events?after=2&limit=1000", expect=200)).json
    seen["audit after 2"] = (positions(later), later["next_after"])
    beyond = (await api.get(f"{V1}/events?after=1000000", expect=200)).json
    seen["audit beyond"] = (positions(beyond), beyond["next_after"])
    seen["history"] = positions((await api.get(f"{CTX}/{cid}/events", expect=200)).json)

    cursors, cursor = [], None
    while True:
        query = "?limit=1" + (f"&cursor={cursor}" if cursor else "")
        cursor = (await api.get(f"{CTX}{query}", expect=200)).json["next_cursor"]
        if cursor is None:
            break
        cursors.append(cursor)
    seen["listing cursors"] = cursors

    seen["sse from 0"] = await sse_ids(api, {"Last-Event-ID": "0"}, 7)
    seen["sse resumed"] = await sse_ids(api, {"Last-Event-ID": "4"}, 3)

    call, headers = modern(
        "tools/call",
        {"name": "get_history", "arguments": {"context_id": cid}},
        **{"Mcp-Name": "get_history"},
    )
    status, _, reply = await post(api.client, call, {**headers, **BOB})
    assert status == 200, reply
    events = reply["result"]["structuredContent"]["events"]
    seen["mcp history"] = [e["position"] for e in events]
    return seen


async def test_b_sees_the_same_positions_and_cursors_whatever_a_writes(
    aiohttp_client: Any, tmp_path: Path
) -> None:
    alone = await what_b_sees(await start(aiohttp_client, tmp_path / "alone.db"), with_a=False)
    crowded_api = await start(aiohttp_client, tmp_path / "crowded.db")
    crowded = await what_b_sees(crowded_api, with_a=True)
    assert crowded == alone
    # B's own events, numbered: its context (1), three messages (2-4), three contexts (5-7).
    assert alone["history"] == alone["mcp history"] == [1, 2, 3, 4]
    assert alone["websocket"] == [2, 3, 4]
    assert [p for page, _ in alone["audit"] for p in page] == list(range(1, 8))
    assert alone["audit"][-1] == ([], 7)
    assert alone["audit filtered"] == ([2, 3, 4], 7)
    assert alone["audit after 2"] == ([3, 4, 5, 6, 7], 7)
    assert alone["audit beyond"] == ([], 1_000_000)
    assert alone["sse from 0"] == list(range(1, 8))
    assert alone["sse resumed"] == [5, 6, 7]
    assert len(alone["listing cursors"]) == 3
    assert alone["hashes"] == {""}
    # The log holds A's 1,000 events (8 x 125) as well: B's numbers are not the log's positions.
    assert await crowded_api.client.app[appkeys.STORE].head() == 1007


async def test_an_open_server_shows_the_log_positions_and_hashes(
    aiohttp_client: Any, tmp_path: Path
) -> None:
    api = (await start(aiohttp_client, tmp_path / "open.db", keys=())).as_key(None)
    cid = (await api.post(CTX, {}, expect=201)).json["id"]
    await api.post(f"{CTX}/{cid}/messages", {"role": "user", "content": "x"}, expect=201)
    page = (await api.get(f"{V1}/events?after=1", expect=200)).json
    store = api.client.app[appkeys.STORE]
    (logged,), _ = await store.read_all(1, 1)
    assert positions(page) == [2]
    assert page["next_after"] == 2
    assert page["events"][0]["hash"] == logged.hash
