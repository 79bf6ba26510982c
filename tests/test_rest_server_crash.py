"""The running server keeps its promises across SIGKILL: a few crash cycles of
``scripts/crash.py`` (the script runs 20 or more), and the idempotent retries they rely on."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from api import appkeys, create_app, testing
from api.testing import ApiClient
from tests.support import crash_cycles as crash
from tests.support.clients import AppClient

CTX = "/api/v1/contexts"


@pytest.mark.slow
async def test_acknowledged_writes_survive_sigkill_and_retries_do_not_duplicate(
    tmp_path: Path,
) -> None:
    report = await crash.run(tmp_path / "crash.db", cycles=3, writers=12, contexts=6, seed=7)
    assert not report.failures, report.summary()
    assert report.cycles == 3
    assert report.acked > 50
    assert report.contexts_compared >= 6
    assert report.retried > 0
    assert report.deepest_fork >= 3  # a fork of the deepest fork each cycle
    assert report.erasures >= 3  # an erasure each cycle (retried until answered)


@pytest.fixture
async def api(aiohttp_client: Any, tmp_path: Path) -> ApiClient:
    app = create_app(testing.settings(str(tmp_path / "ctx.db")))
    client: AppClient = await aiohttp_client(app)
    api = ApiClient(client, app[appkeys.OPENAPI], "key-alice")
    await api.wait_ready()
    return api


async def test_a_retried_fork_replays_after_the_parent_moved_on(api: ApiClient) -> None:
    # A fork without at_version forks the parent's current version; its retry (same key, same
    # body) must answer with that first fork, not compare against the parent's new version.
    cid = (await api.post(CTX, {}, expect=201)).json["id"]
    await api.post(f"{CTX}/{cid}/messages", {"role": "user", "content": "a"}, expect=201)
    key = {"Idempotency-Key": "fork-once"}
    first = await api.post(f"{CTX}/{cid}/fork", {}, headers=key, expect=201)
    await api.post(f"{CTX}/{cid}/messages", {"role": "user", "content": "b"}, expect=201)
    again = await api.post(f"{CTX}/{cid}/fork", {}, headers=key)
    assert again.status == 201, again.json
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json["id"] == first.json["id"]
    assert again.json["parent"] == {"context_id": cid, "version": 2}


async def test_a_fork_key_reused_for_another_fork_is_422(api: ApiClient) -> None:
    # Replaying a fork must not mean accepting any fork under its key: another body, or
    # another parent, under the same Idempotency-Key is a different request.
    cid = (await api.post(CTX, {}, expect=201)).json["id"]
    other = (await api.post(CTX, {}, expect=201)).json["id"]
    key = {"Idempotency-Key": "fork-key"}
    await api.post(f"{CTX}/{cid}/fork", {"metadata": {"a": 1}}, headers=key, expect=201)
    r = await api.post(f"{CTX}/{cid}/fork", {"metadata": {"a": 2}}, headers=key)
    assert r.status == 422, r.json
    r = await api.post(f"{CTX}/{other}/fork", {"metadata": {"a": 1}}, headers=key)
    assert r.status == 422, r.json
    r = await api.post(f"{CTX}/{cid}/fork", {"metadata": {"a": 1}}, headers=key, expect=201)
    assert r.headers["Idempotent-Replayed"] == "true"
