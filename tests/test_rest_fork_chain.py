"""A chain of 1,000 forks, each forked from the one before, through the real server: every
fork is served, the rest of the service with it, and the database survives a restart, a
``ctxlog rebuild`` and a ``ctxlog verify`` (a chain of ~326 once overflowed the projector's
stack and left the database unservable)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.support.cli_helpers import child_env, command
from tests.support.server_process import ServerProcess, seed_context

CTX = "/api/v1/contexts"
ALICE = {"X-API-Key": "key-alice"}
BOB = {"X-API-Key": "key-bob"}
DEPTH = 1000


async def _get(session: aiohttp.ClientSession, url: str, headers: dict[str, str]) -> Any:
    async with session.get(url, headers=headers) as r:
        assert r.status == 200, (url, r.status, await r.text())
        return await r.json()


async def _others_served(
    session: aiohttp.ClientSession, server: ServerProcess, others: dict[str, dict[str, str]]
) -> None:
    for cid, headers in others.items():
        body = await _get(session, f"{server.url}{CTX}/{cid}", headers)
        assert [m["content"] for m in body["messages"]] == ["x"]
    await _get(session, f"{server.url}/healthz", {})


def _remove_readmodel(folder: Path) -> None:
    for path in folder.glob("chain.db.readmodel*"):
        path.unlink()


def _ctxlog(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command(*args), env=child_env(), capture_output=True, text=True, timeout=600, check=False
    )


@pytest.mark.slow
async def test_a_chain_of_1000_forks_is_served_restarted_rebuilt_and_verified(
    tmp_path: Path,
) -> None:
    db = tmp_path / "chain.db"
    server = ServerProcess(db)
    await server.started()
    try:
        async with aiohttp.ClientSession() as session:
            other_a, _ = await seed_context(session, server, "key-ann")
            other_b, _ = await seed_context(session, server, "key-bob")
            others = {other_a: ALICE, other_b: BOB}
            root, _ = await seed_context(session, server)
            chain = [root]
            for i in range(DEPTH):
                url = f"{server.url}{CTX}/{chain[-1]}/fork"
                async with session.post(url, json={}, headers=ALICE) as r:
                    body = await r.json()
                    assert r.status == 201, (i + 1, r.status, body)
                at = 2 if i == 0 else 1  # the root holds a message; each fork is one event
                assert body["parent"] == {"context_id": chain[-1], "version": at}
                # A fork answers with its head (its one message is a page away).
                assert (body["messages"], body["next"] is not None) == ([], True)
                chain.append(body["id"])
                if i % 100 == 99:
                    await _others_served(session, server, others)
            deepest = chain[-1]
            lineage = await _get(session, f"{server.url}{CTX}/{deepest}/lineage", ALICE)
            assert [a["context_id"] for a in lineage["ancestors"]] == chain[-2::-1]
            # A write to the deepest fork, then time travel back to its first version.
            url = f"{server.url}{CTX}/{deepest}/messages"
            async with session.post(url, json={"role": "user", "content": "y"}, headers=ALICE) as r:
                assert r.status == 201, await r.text()
            first = await _get(session, f"{server.url}{CTX}/{deepest}?version=1", ALICE)
            assert [m["content"] for m in first["messages"]] == ["x"]
    finally:
        assert server.stop() == 0

    # The read model is set aside: the restart replays the whole chain from the log.
    _remove_readmodel(tmp_path)
    await server.started(within=300)
    try:
        async with aiohttp.ClientSession() as session:
            body = await _get(session, f"{server.url}{CTX}/{deepest}", ALICE)
            assert [m["content"] for m in body["messages"]] == ["x", "y"]
            await _others_served(session, server, others)
    finally:
        assert server.stop() == 0
    assert "Traceback" not in server.output(), server.output()[-3000:]

    rebuilt = _ctxlog("rebuild", "--db", db)
    assert rebuilt.returncode == 0, rebuilt.stdout + rebuilt.stderr
    verified = _ctxlog("verify", "--db", db)
    assert verified.returncode == 0, verified.stdout + verified.stderr
