"""Nodes on one PostgreSQL share one read model: a node started on a long log is ready without
replaying it, one node (elected) applies the log, and when that node is killed under
concurrent appends another takes over from the checkpoint, nothing applied twice."""

from __future__ import annotations

import asyncio
import re
import sys
import uuid

import aiohttp
import pytest

from eventstore import EventMetadata, EventStore, MessageAppended
from tests.conftest import PG_DSN
from tests.support.nodes import Nodes, appended_in_log
from tests.support.server_process import ROOT, ServerProcess
from tests.test_deploy_nodes import ALICE, V1, _writer, create, get

pytestmark = pytest.mark.skipif(
    not PG_DSN, reason="PostgreSQL tests run when CTXLOG_TEST_PG_DSN is set (.ci/run sets it)"
)


async def metric(session: aiohttp.ClientSession, node: ServerProcess, name: str) -> float:
    """The value of an unlabelled metric of ``node``."""
    async with session.get(f"{node.url}/metrics") as r:
        assert r.status == 200
        text = await r.text()
    found = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
    assert found is not None, text
    return float(found.group(1))


async def applying(session: aiohttp.ClientSession, candidates: list[ServerProcess]) -> list[int]:
    """The indexes of the nodes that say they apply the log."""
    return [
        i
        for i, node in enumerate(candidates)
        if await metric(session, node, "ctxlog_projector_applying") == 1
    ]


async def the_projector(
    session: aiohttp.ClientSession, candidates: list[ServerProcess]
) -> ServerProcess:
    """The one node that applies the log (waiting up to a minute for one to)."""
    for _ in range(600):
        found = await applying(session, candidates)
        if len(found) == 1:  # (two for a moment: a failover's overlap; ask again)
            return candidates[found[0]]
        await asyncio.sleep(0.1)
    raise AssertionError("no node applies the log")


async def test_a_node_started_on_a_long_log_is_ready_without_replaying_it(
    nodes: Nodes, session: aiohttp.ClientSession
) -> None:
    (a,) = await nodes.add(1)
    contexts = [await create(session, a) for _ in range(10)]
    store = await EventStore.open_url(nodes.db)
    try:  # a long log: 3,000 messages written straight to it, as another writer would
        for n in range(30):
            for cid in contexts:
                version = await store.stream_version(cid)
                events = [
                    MessageAppended(message_id=f"m{n}-{i}", role="user", content=f"text {n} {i}")
                    for i in range(10)
                ]
                await store.append(cid, events, version, metadata=EventMetadata(tenant="tenant-a"))
        head = await store.head()
        last = {cid: await store.stream_version(cid) for cid in contexts}
    finally:
        await store.close()
    for cid in contexts:  # node A's projector applied it all
        status, body, _ = await get(session, a, f"/contexts/{cid}", min_version=str(last[cid]))
        assert status == 200, body
    assert await metric(session, a, "ctxlog_projector_applied_events_total") >= head - 20

    (b,) = await nodes.add(1)
    # Ready (caught up with the head) having applied nothing: it opened the shared model.
    assert await metric(session, b, "ctxlog_projector_applied_events_total") == 0
    assert await metric(session, b, "ctxlog_projector_applying") == 0
    assert await metric(session, b, "ctxlog_projector_position") >= head
    for cid in contexts:
        status_a, window_a, _ = await get(session, a, f"/contexts/{cid}/window")
        status_b, window_b, _ = await get(session, b, f"/contexts/{cid}/window")
        assert status_a == status_b == 200
        assert window_a == window_b
        assert window_b["version"] == last[cid]
    status, found, _ = await get(session, b, "/search", q="text 29")
    assert status == 200, found
    assert found["hits"]


async def test_the_projector_killed_under_concurrent_appends_hands_over_to_another_node(
    nodes: Nodes, session: aiohttp.ClientSession
) -> None:
    started = await nodes.add(3)
    leader = await the_projector(session, started)
    survivors = [node for node in started if node is not leader]
    contexts = [await create(session, survivors[0]) for _ in range(4)]
    acked: dict[str, str] = {}
    stop = asyncio.Event()
    progress = asyncio.Condition()
    writers = [
        asyncio.create_task(_writer(session, node, contexts, acked, stop, progress))
        for node in started
        for _ in range(3)
    ]
    async with progress:
        await progress.wait_for(lambda: len(acked) >= 150)
    leader.kill()
    killed_at = len(acked)
    async with progress:  # the survivors keep taking appends, and reading their writes back
        await progress.wait_for(lambda: len(acked) >= killed_at + 150)
    stop.set()
    await asyncio.gather(*writers)
    successor = await the_projector(session, survivors)
    assert await metric(session, successor, "ctxlog_projector_applied_events_total") > 0

    found, versions = await appended_in_log(nodes.db, contexts)
    assert all(found.get(mid) == 1 for mid in acked), nodes.outputs()
    assert all(count == 1 for count in found.values())

    # Each message once in the shared read model, and every node's window the same.
    held: list[str] = []
    for cid, version in versions.items():
        windows = []
        for node in survivors:
            status, window, _ = await get(
                session, node, f"/contexts/{cid}/window", min_version=str(version)
            )
            assert status == 200, window
            windows.append(window)
        assert windows[0] == windows[1]
        status, ctx, _ = await get(session, survivors[1], f"/contexts/{cid}")
        assert status == 200, ctx
        assert ctx["version"] == version
        held += [message["id"] for message in ctx["messages"]]
    assert sorted(held) == sorted(found)
    # verify folds every context afresh from the log and compares the shared read model.
    verify = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "api", "verify", "--db", nodes.db, "--format", "json", cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    output, _ = await verify.communicate()
    assert verify.returncode == 0, output.decode()
    assert b'"status":"ok"' in output.replace(b" ", b""), output.decode()


async def test_a_node_reads_its_own_write_whichever_node_applies_it(
    nodes: Nodes, session: aiohttp.ClientSession
) -> None:
    a, b = await nodes.add(2)
    follower = b if await metric(session, a, "ctxlog_projector_applying") == 1 else a
    cid = await create(session, follower)
    for n in range(20):
        body = {"role": "user", "content": f"n{n} {uuid.uuid4().hex}"}
        async with session.post(
            f"{follower.url}{V1}/contexts/{cid}/messages", json=body, headers=ALICE
        ) as r:
            assert r.status == 201, await r.text()
        status, ctx, _ = await get(session, follower, f"/contexts/{cid}")
        assert status == 200
        assert ctx["messages"][-1]["content"] == body["content"]


async def ctxlog(*args: str) -> tuple[int, str]:
    """Run ``ctxlog ARGS``; (exit code, output)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "api", *args, cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    output, _ = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, output.decode()


async def test_rebuild_replays_the_shared_read_model_in_place_when_no_node_projects(
    nodes: Nodes, session: aiohttp.ClientSession
) -> None:
    (a,) = await nodes.add(1)
    cid = await create(session, a)
    for n in range(5):
        body = {"role": "user", "content": f"rebuilt {n}"}
        async with session.post(
            f"{a.url}{V1}/contexts/{cid}/messages", json=body, headers=ALICE
        ) as r:
            assert r.status == 201, await r.text()
    status, before, _ = await get(session, a, f"/contexts/{cid}/window", min_version="6")
    assert status == 200, before
    code, output = await ctxlog("rebuild", "--db", nodes.db)
    assert code == 6, output  # refused: node A is the projector
    assert "another node is the projector" in output
    a.stop()
    code, output = await ctxlog("rebuild", "--db", nodes.db, "--format", "json")
    assert code == 0, output
    assert '"events": 6' in output or '"events":6' in output, output
    code, output = await ctxlog("verify", "--db", nodes.db, "--format", "json")
    assert code == 0, output
    (b,) = await nodes.add(1)
    # The node opens what the rebuild left: nothing to apply, the same window.
    assert await metric(session, b, "ctxlog_projector_applied_events_total") == 0
    status, after, _ = await get(session, b, f"/contexts/{cid}/window")
    assert status == 200
    assert after == before
    status, found, _ = await get(session, b, "/search", q="rebuilt")
    assert status == 200
    assert len(found["hits"]) == 5
