"""Tenant isolation on every endpoint: another tenant's context is a plain 404, exactly like
one that does not exist, and nothing of it shows in listings, audits or live streams."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from api import appkeys, create_app, testing
from api.testing import ApiClient
from tests.support.clients import AppClient

V1 = "/api/v1"
CTX = f"{V1}/contexts"
UNKNOWN = "00000000-0000-4000-8000-000000000000"

MESSAGE = {"role": "user", "content": "x"}
TYPED = {"type": "msgpack", "data": "AQ=="}
CHECKPOINT = {"checkpoint_id": "c1", "checkpoint": TYPED, "metadata": TYPED}
WRITES = {
    "checkpoint_id": "c1",
    "task_id": "t1",
    "writes": [{"idx": 0, "channel": "c", "value": TYPED}],
}

# (method, path under the context, body): every endpoint that names a context.
ENDPOINTS: list[tuple[str, str, Any]] = [
    ("GET", "", None),
    ("GET", "?version=1", None),
    ("DELETE", "", None),
    ("POST", "/messages", MESSAGE),
    ("GET", "/messages", None),
    ("PATCH", "/messages/{mid}", {"content": "y"}),
    ("POST", "/messages/{mid}/redact", {}),
    ("PATCH", "/metadata", {"a": 1}),
    ("GET", "/window", None),
    ("POST", "/window", {"max_tokens": 10}),
    ("PUT", "/window", {"max_tokens": 10}),
    ("POST", "/summaries", {"text": "s", "through_message_id": "{mid}"}),
    ("POST", "/rollback", {"to_version": 1}),
    ("POST", "/fork", {}),
    ("GET", "/events", None),
    ("GET", "/diff?from=1", None),
    ("GET", "/diff/parent", None),
    ("GET", "/lineage", None),
    ("POST", "/checkpoints", CHECKPOINT),
    ("POST", "/checkpoints/writes", WRITES),
    ("POST", "/checkpoints/remove", {"all": True}),
]


@pytest.fixture
async def api(aiohttp_client: Any, tmp_path: Path) -> ApiClient:
    app = create_app(testing.settings(str(tmp_path / "ctx.db")))
    client: AppClient = await aiohttp_client(app)
    api = ApiClient(client, app[appkeys.OPENAPI], "key-alice")
    await api.wait_ready()
    return api


async def _context(api: ApiClient) -> tuple[str, str]:
    cid = (await api.post(CTX, {"metadata": {"secret": "yes"}}, expect=201)).json["id"]
    r = await api.post(f"{CTX}/{cid}/messages", MESSAGE, expect=201)
    return cid, r.json["messages"][0]["id"]


@pytest.mark.parametrize(("method", "suffix", "body"), ENDPOINTS)
async def test_another_tenant_gets_the_same_404_as_for_nothing(
    api: ApiClient, method: str, suffix: str, body: Any
) -> None:
    cid, mid = await _context(api)
    path = suffix.replace("{mid}", mid)
    if isinstance(body, dict):
        body = {k: (v.replace("{mid}", mid) if isinstance(v, str) else v) for k, v in body.items()}
    bob = api.as_key("key-bob")
    theirs = await bob.request(method, f"{CTX}/{cid}{path}", json=body, expect=404)
    nothing = await bob.request(method, f"{CTX}/{UNKNOWN}{path}", json=body, expect=404)
    assert theirs.json["error"] == {**nothing.json["error"]}
    assert cid not in theirs.body.decode()
    # Nothing was written for bob's attempt.
    assert (await api.get(f"{CTX}/{cid}", expect=200)).json["version"] == 2


async def test_mcp_views_are_isolated(api: ApiClient) -> None:
    cid, _ = await _context(api)
    await api.as_key("key-bob").get(f"{V1}/mcp/contexts/{cid}", expect=404)


async def test_listings_and_audit_show_only_the_tenant(api: ApiClient) -> None:
    cid, _ = await _context(api)
    bob = api.as_key("key-bob")
    bobs = (await bob.post(CTX, {}, expect=201)).json["id"]
    assert [c["id"] for c in (await bob.get(CTX)).json["contexts"]] == [bobs]
    assert [c["id"] for c in (await api.get(CTX)).json["contexts"]] == [cid]
    assert (await bob.get(f"{CTX}?metadata.secret=yes")).json["contexts"] == []
    audit = (await bob.get(f"{V1}/events")).json["events"]
    assert {e["context_id"] for e in audit} == {bobs}
    assert (await bob.get(f"{V1}/events?context_id={cid}")).json["events"] == []


async def test_a_tenant_shares_its_contexts_and_records_each_actor(api: ApiClient) -> None:
    cid, _ = await _context(api)
    ann = api.as_key("key-ann")
    await ann.post(f"{CTX}/{cid}/messages", MESSAGE, expect=201)
    events = (await api.get(f"{CTX}/{cid}/events")).json["events"]
    assert [e["actor"] for e in events] == ["alice", "alice", "ann"]
    by_ann = (await api.get(f"{V1}/events?actor=ann")).json["events"]
    assert [e["version"] for e in by_ann] == [3]
    assert all("tenant" not in e["metadata"] for e in events)
