"""The checkpoint endpoints (an agent framework's state on a context): each records one event
that the context's history hands back as sent; its content is sealed under the context's
subject and reads as "[erased]" once the subject is erased; a removal names checkpoints or
all of them, never both; If-Match and Idempotency-Key work as on every write."""

from __future__ import annotations

import base64
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from api import appkeys, create_app, testing
from api.testing import ApiClient

CTX = "/api/v1/contexts"
SECRET = b"\x81\xa5value\xa6secret"


def typed(data: bytes) -> dict[str, str]:
    return {"type": "msgpack", "data": base64.b64encode(data).decode()}


CHECKPOINT = {
    "checkpoint_ns": "child:1",
    "checkpoint_id": "1f0a-c1",
    "parent_checkpoint_id": "1f0a-c0",
    "checkpoint": typed(b"checkpoint"),
    "metadata": typed(b"metadata"),
    "blobs": [{"channel": "messages", "version": "00001.5", "value": typed(SECRET)}],
}
WRITES = {
    "checkpoint_id": "1f0a-c1",
    "task_id": "task-1",
    "task_path": "~__pregel_pull, agent",
    "writes": [{"idx": 0, "channel": "messages", "value": typed(SECRET)}],
}


@pytest.fixture
async def api(aiohttp_client: Any, tmp_path: Path) -> ApiClient:
    app = create_app(testing.settings(str(tmp_path / "ctx.db")))
    client: TestClient[web.Request, web.Application] = await aiohttp_client(app)
    found = ApiClient(client, app[appkeys.OPENAPI], "key-alice")
    await found.wait_ready()
    return found


async def test_checkpoint_events_come_back_from_history_as_sent(api: ApiClient) -> None:
    cid = (await api.post(CTX, {}, expect=201)).json["id"]
    saved = await api.post(f"{CTX}/{cid}/checkpoints", CHECKPOINT, expect=201)
    assert saved.json == {"context_id": cid, "version": 2}
    assert saved.headers["ETag"] == '"2"'
    await api.post(f"{CTX}/{cid}/checkpoints/writes", WRITES, expect=201)
    removed = {"checkpoints": [{"checkpoint_ns": "child:1", "checkpoint_id": "1f0a-c1"}]}
    await api.post(f"{CTX}/{cid}/checkpoints/remove", removed, expect=200)
    events = (await api.get(f"{CTX}/{cid}/events")).json["events"]
    assert [e["type"] for e in events] == [
        "context.created", "checkpoint.saved", "checkpoint.writes_recorded", "checkpoints.removed",
    ]  # fmt: skip
    data = events[1]["data"]
    assert data["checkpoint_id"] == "1f0a-c1"
    assert data["checkpoint_ns"] == "child:1"
    assert data["content"]["blobs"][0]["value"] == typed(SECRET)
    assert events[2]["data"]["content"]["writes"][0]["value"] == typed(SECRET)
    assert events[3]["data"]["checkpoints"] == removed["checkpoints"]
    # The context itself is as it was: no messages, one version per event.
    ctx = (await api.get(f"{CTX}/{cid}")).json
    assert ctx["messages"] == []
    assert ctx["version"] == 4


async def test_a_removal_names_checkpoints_or_all_never_both(api: ApiClient) -> None:
    cid = (await api.post(CTX, {}, expect=201)).json["id"]
    both = {"all": True, "checkpoints": [{"checkpoint_id": "c"}]}
    r = await api.post(f"{CTX}/{cid}/checkpoints/remove", both, expect=422)
    assert r.json["error"]["code"] == "invalid_command"
    await api.post(f"{CTX}/{cid}/checkpoints/remove", {}, expect=422)
    await api.post(f"{CTX}/{cid}/checkpoints/remove", {"all": True}, expect=200)
    bad = {**CHECKPOINT, "blobs": [{"channel": "c", "version": "1", "value": {"type": "x"}}]}
    r = await api.post(f"{CTX}/{cid}/checkpoints", bad, expect=400)
    assert r.json["error"]["details"]["path"] == "$.blobs[0].value"
    assert (await api.get(f"{CTX}/{cid}")).json["version"] == 2  # nothing else was written


async def test_if_match_and_idempotency_keys(api: ApiClient) -> None:
    cid = (await api.post(CTX, {}, expect=201)).json["id"]
    stale = {"If-Match": '"7"'}
    await api.post(f"{CTX}/{cid}/checkpoints", CHECKPOINT, headers=stale, expect=412)
    key = {"Idempotency-Key": "save-1"}
    first = await api.post(f"{CTX}/{cid}/checkpoints", CHECKPOINT, headers=key, expect=201)
    again = await api.post(f"{CTX}/{cid}/checkpoints", CHECKPOINT, headers=key, expect=201)
    assert again.json == first.json
    assert again.headers["Idempotent-Replayed"] == "true"
    await api.post(
        f"{CTX}/{cid}/checkpoints/remove", {"all": True, "expected_version": 2}, expect=200
    )


async def test_checkpoint_content_is_sealed_and_erased_with_the_subject(
    api: ApiClient, tmp_path: Path
) -> None:
    ctx = (await api.post(CTX, {"metadata": {"subject": "user-42"}}, expect=201)).json
    cid = ctx["id"]
    await api.post(f"{CTX}/{cid}/checkpoints", CHECKPOINT, expect=201)
    await api.post(f"{CTX}/{cid}/checkpoints/writes", WRITES, expect=201)
    # Sealed at rest: the plaintext is nowhere in the log's rows.
    conn = sqlite3.connect(f"file:{tmp_path / 'ctx.db'}?mode=ro", uri=True)
    try:
        rows = b"".join(r[0] for r in conn.execute("SELECT data FROM events"))
    finally:
        conn.close()
    assert SECRET not in rows
    assert base64.b64encode(SECRET) not in rows
    events = (await api.get(f"{CTX}/{cid}/events")).json["events"]
    assert events[1]["data"]["content"]["blobs"][0]["value"] == typed(SECRET)
    erased = await api.post("/api/v1/subjects/user-42/erase", expect=200)
    assert erased.json["contexts"] == [cid]
    events = (await api.get(f"{CTX}/{cid}/events")).json["events"]
    assert [e["data"]["content"] for e in events[1:3]] == ["[erased]", "[erased]"]
    # What is not content stays: ids, the namespace, the task.
    assert events[1]["data"]["checkpoint_id"] == "1f0a-c1"
    assert events[2]["data"]["task_id"] == "task-1"
