"""Several ``ctxlog serve`` nodes on one PostgreSQL behave as one service: a write on one node
reaches live followers on another, a read names the version it must see (``min_version``),
and a node killed under concurrent appends loses nothing acknowledged while the others serve
on."""

from __future__ import annotations

import asyncio
import sys
import uuid
from typing import Any

import aiohttp
import pytest

from tests.conftest import PG_DSN
from tests.support.mcp_helpers import ACCEPT, modern
from tests.support.nodes import Nodes, appended_in_log
from tests.support.server_process import ROOT, ServerProcess

pytestmark = pytest.mark.skipif(
    not PG_DSN, reason="PostgreSQL tests run when CTXLOG_TEST_PG_DSN is set (.ci/run sets it)"
)

ALICE = {"X-API-Key": "key-alice"}
V1 = "/api/v1"


async def create(session: aiohttp.ClientSession, node: ServerProcess) -> str:
    async with session.post(f"{node.url}{V1}/contexts", json={}, headers=ALICE) as r:
        assert r.status == 201, await r.text()
        return str((await r.json())["id"])


async def append(
    session: aiohttp.ClientSession, node: ServerProcess, cid: str, text: str, key: str | None = None
) -> dict[str, Any]:
    headers = {**ALICE, "Prefer": "return=minimal"}
    if key is not None:
        headers["Idempotency-Key"] = key
    body = {"role": "user", "content": text}
    async with session.post(
        f"{node.url}{V1}/contexts/{cid}/messages", json=body, headers=headers
    ) as r:
        assert r.status == 201, await r.text()
        answer: dict[str, Any] = await r.json()
        return answer


async def get(
    session: aiohttp.ClientSession, node: ServerProcess, path: str, **query: str
) -> tuple[int, Any, aiohttp.typedefs.LooseHeaders]:
    async with session.get(f"{node.url}{V1}{path}", params=query, headers=ALICE) as r:
        return r.status, await r.json(), r.headers


async def test_a_write_on_one_node_reaches_live_followers_on_another(
    nodes: Nodes, session: aiohttp.ClientSession
) -> None:
    a, b = await nodes.add(2)
    cid = await create(session, a)
    async with session.ws_connect(f"{b.ws_url}{V1}/ws/{cid}", headers=ALICE) as ws:
        first = await ws.receive_json(timeout=30)
        assert first["type"] == "context"
        async with session.get(
            f"{b.url}{V1}/events/stream", params={"context_id": cid}, headers=ALICE
        ) as sse:
            assert sse.status == 200
            appended = await append(session, a, cid, "from node A")
            frame = await ws.receive_json(timeout=30)
            assert frame["type"] == "event"
            assert frame["event"]["type"] == "message.appended"
            assert frame["event"]["data"]["message_id"] == appended["message_ids"][0]
            seen = b""
            async with asyncio.timeout(30):
                while b"message.appended" not in seen:
                    seen += await sse.content.readany()


async def test_a_read_on_another_node_waits_for_the_version_the_caller_saw(
    nodes: Nodes, session: aiohttp.ClientSession
) -> None:
    a, b = await nodes.add(2)
    cid = await create(session, a)
    for n in range(5):
        version = (await append(session, a, cid, f"m{n}"))["version"]
        # Read at once on the other node: it answers with that version or a later one.
        status, body, _ = await get(session, b, f"/contexts/{cid}", min_version=str(version))
        assert status == 200, body
        assert body["version"] >= version
        assert body["messages"][-1]["content"] == f"m{n}"
        status, window, _ = await get(
            session, b, f"/contexts/{cid}/window", min_version=str(version)
        )
        assert status == 200, window
        assert window["version"] >= version
    for path in ("/messages", "/events", "/diff/parent"):
        status, body, _ = await get(session, b, f"/contexts/{cid}{path}", min_version="1")
        assert status in (200, 422), body  # diff/parent: not a fork, but past the wait
    # A version the log does not hold is not found (as for ?version=), not a wait.
    status, body, _ = await get(session, b, f"/contexts/{cid}", min_version=str(version + 50))
    assert status == 404, body
    assert body["error"]["details"]["current_version"] == version
    # Another tenant's context reads as not found, whatever version is asked for.
    async with session.get(
        f"{b.url}{V1}/contexts/{cid}",
        params={"min_version": "99"},
        headers={"X-API-Key": "key-bob"},
    ) as r:
        assert r.status == 404
    status, body, _ = await get(session, b, f"/contexts/{cid}", min_version="0")
    assert status == 400, body
    # The MCP tools that read a context take it too.
    answer = await mcp_tool(session, b, "get_window", {"context_id": cid, "min_version": version})
    assert not answer["isError"], answer
    assert answer["structuredContent"]["version"] >= version
    answer = await mcp_tool(
        session, b, "get_context", {"context_id": cid, "min_version": version + 50}
    )
    assert answer["isError"], answer


async def mcp_tool(
    session: aiohttp.ClientSession, node: ServerProcess, name: str, arguments: dict[str, Any]
) -> Any:
    """A stateless MCP tools/call on ``node``; its result."""
    body, sent = modern("tools/call", {"name": name, "arguments": arguments}, **{"Mcp-Name": name})
    headers = {**ALICE, **ACCEPT, "Content-Type": "application/json", **sent}
    async with session.post(f"{node.url}/mcp", json=body, headers=headers) as r:
        assert r.status == 200, await r.text()
        return (await r.json())["result"]


async def _writer(
    session: aiohttp.ClientSession,
    node: ServerProcess,
    contexts: list[str],
    acked: dict[str, str],
    stop: asyncio.Event,
    progress: asyncio.Condition,
) -> None:
    """Append until ``stop`` or the node is gone; ``acked``: message id -> text, for every
    append the node answered 201."""
    n = 0
    while not stop.is_set():
        text = f"{node.port}-{uuid.uuid4().hex}"
        cid = contexts[n % len(contexts)]
        n += 1
        try:
            answer = await append(session, node, cid, text, key=uuid.uuid4().hex)
        except (aiohttp.ClientError, AssertionError, TimeoutError):
            if node.proc is not None and node.proc.poll() is not None:
                return  # killed: what it did not answer is not acknowledged
            raise
        async with progress:
            acked[answer["message_ids"][0]] = text
            progress.notify_all()


async def test_a_node_killed_under_concurrent_appends_loses_nothing_acknowledged(
    nodes: Nodes, session: aiohttp.ClientSession
) -> None:
    a, b, c = await nodes.add(3)
    contexts = [await create(session, a) for _ in range(4)]
    acked: dict[str, str] = {}
    stop = asyncio.Event()
    progress = asyncio.Condition()
    writers = [
        asyncio.create_task(_writer(session, node, contexts, acked, stop, progress))
        for node in (a, b, c)
        for _ in range(3)
    ]
    async with progress:
        await progress.wait_for(lambda: len(acked) >= 150)
    c.kill()
    killed_at = len(acked)
    async with progress:  # the survivors keep taking appends
        await progress.wait_for(lambda: len(acked) >= killed_at + 150)
    stop.set()
    await asyncio.gather(*writers)

    # Every acknowledged append is in the log exactly once.
    assert PG_DSN
    found, versions = await appended_in_log(nodes.db, contexts)
    assert all(found.get(mid) == 1 for mid in acked), nodes.outputs()
    assert all(count == 1 for count in found.values())

    # A node started now folds the log afresh; the survivors' windows agree with it.
    (fresh,) = await nodes.add(1)
    held: set[str] = set()
    for cid, version in versions.items():
        windows = []
        for node in (a, b, fresh):
            status, window, _ = await get(
                session, node, f"/contexts/{cid}/window", min_version=str(version)
            )
            assert status == 200, window
            windows.append(window)
        assert windows[0] == windows[1] == windows[2]
        status, ctx, _ = await get(session, fresh, f"/contexts/{cid}")
        assert status == 200, ctx
        held |= {message["id"] for message in ctx["messages"]}
    assert held == set(found)
    verify = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "api", "verify", "--db", nodes.db, cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    output, _ = await verify.communicate()
    assert verify.returncode == 0, output.decode()


RUNS_IT = "retention: this node runs it"


async def _runner(candidates: list[ServerProcess]) -> ServerProcess:
    """The one node that says it runs retention (waiting up to a minute for one to)."""
    for _ in range(1200):
        running = [node for node in candidates if RUNS_IT in node.output()]
        if running:
            assert len(running) == 1, [node.log.name for node in running]
            return running[0]
        await asyncio.sleep(0.05)
    raise AssertionError("no node took the retention duty")


async def test_one_node_runs_retention_and_another_takes_over_when_it_dies(
    nodes: Nodes,
) -> None:
    env = {"CTXLOG_RETENTION": "tenant-a:365", "CTXLOG_RETENTION_INTERVAL": "1"}
    started = await nodes.add(3, **env)
    leader = await _runner(started)
    leader.kill()
    survivors = [node for node in started if node is not leader]
    await _runner(survivors)
