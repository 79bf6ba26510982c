"""The REST API end to end through aiohttp's test client: every endpoint's happy path and its
error paths, ETag/If-Match, idempotency keys, time travel, and restarts on the same file.
Every JSON response is also checked against the OpenAPI document (``api.testing``)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from api import appkeys, create_app, testing
from api.app import YOUNG_OBJECTS
from api.testing import ApiClient
from tests.support.clients import AppClient

V1 = "/api/v1"
CTX = f"{V1}/contexts"
UNKNOWN = "00000000-0000-4000-8000-000000000000"

Connect = Callable[[], Awaitable[ApiClient]]


@pytest.fixture
def connect(aiohttp_client: Any, tmp_path: Path) -> Connect:
    """Start an app on the test database (again, for a restart) and wait until it is ready."""

    async def start() -> ApiClient:
        app = create_app(testing.settings(str(tmp_path / "ctx.db")))
        client: AppClient = await aiohttp_client(app)
        api = ApiClient(client, app[appkeys.OPENAPI], "key-alice")
        await api.wait_ready()
        return api

    return start


@pytest.fixture
async def api(connect: Connect) -> ApiClient:
    return await connect()


async def new_context(api: ApiClient, **body: Any) -> str:
    r = await api.post(CTX, body, expect=201)
    return str(r.json["id"])


async def add(api: ApiClient, cid: str, content: str, role: str = "user") -> dict[str, Any]:
    r = await api.post(f"{CTX}/{cid}/messages", {"role": role, "content": content}, expect=201)
    return dict(r.json)


# -- create, read, delete ---------------------------------------------------------------------


async def test_create_returns_the_context_with_its_etag(api: ApiClient) -> None:
    r = await api.post(
        CTX, {"metadata": {"user": "u1"}, "window": {"max_tokens": 500, "model": "gpt-4o"}},
        expect=201,
    )  # fmt: skip
    body = r.json
    assert set(body) >= {"id", "version", "messages", "metadata", "window", "created_at"}
    assert body["version"] == 1
    assert body["messages"] == []
    assert body["metadata"] == {"user": "u1"}
    assert body["window"]["max_tokens"] == 500
    assert r.headers["ETag"] == '"1"'
    assert r.headers["Location"] == f"{CTX}/{body['id']}"
    got = await api.get(f"{CTX}/{body['id']}", expect=200)
    assert got.json == body


async def test_create_without_a_body(api: ApiClient) -> None:
    r = await api.request("POST", CTX, expect=201)
    assert r.json["metadata"] == {}


async def test_get_unknown_or_malformed_ids_is_404(api: ApiClient) -> None:
    await api.get(f"{CTX}/{UNKNOWN}", expect=404)
    await api.get(f"{CTX}/not-a-uuid", expect=404)
    await api.get(f"{CTX}/{UNKNOWN}/window", expect=404)


async def test_delete_tombstones_and_keeps_history(api: ApiClient) -> None:
    cid = await new_context(api)
    await add(api, cid, "hello")
    r = await api.delete(f"{CTX}/{cid}", expect=204)
    assert r.body == b""
    await api.get(f"{CTX}/{cid}", expect=404)
    await api.post(f"{CTX}/{cid}/messages", {"role": "user", "content": "x"}, expect=404)
    await api.delete(f"{CTX}/{cid}", expect=404)
    audit = await api.get(f"{V1}/events?context_id={cid}", expect=200)
    assert [e["type"] for e in audit.json["events"]] == [
        "context.created", "message.appended", "context.deleted",
    ]  # fmt: skip
    listed = await api.get(CTX, expect=200)
    assert cid not in [c["id"] for c in listed.json["contexts"]]


# -- messages ---------------------------------------------------------------------------------


async def test_append_one_message_returns_the_context(api: ApiClient) -> None:
    cid = await new_context(api)
    body = await add(api, cid, "hello")
    assert body["version"] == 2
    [message] = body["messages"]
    assert message["role"] == "user"
    assert message["content"] == "hello"
    assert message["tokens"] > 0
    assert message["version"] == 2


async def test_append_several_atomically_and_minimal(api: ApiClient) -> None:
    cid = await new_context(api)
    mid = "11111111-2222-4333-8444-555555555555"
    r = await api.post(
        f"{CTX}/{cid}/messages",
        {"messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": [{"type": "text", "text": "hi"}], "name": "ann",
             "metadata": {"k": 1}, "id": mid},
        ]},
        headers={"Prefer": "return=minimal"},
        expect=201,
    )  # fmt: skip
    assert r.json["version"] == 3
    assert len(r.json["message_ids"]) == 2
    assert r.json["message_ids"][1] == mid
    assert r.headers["ETag"] == '"3"'
    got = (await api.get(f"{CTX}/{cid}")).json
    assert [m["id"] for m in got["messages"]] == r.json["message_ids"]
    assert got["messages"][1]["name"] == "ann"
    # One bad message fails the whole batch: nothing is written.
    r = await api.post(
        f"{CTX}/{cid}/messages",
        {"messages": [{"role": "user", "content": "ok"}, {"role": "robot", "content": "x"}]},
        expect=400,
    )
    assert r.json["error"]["details"]["path"] == "$.messages[1].role"
    await api.post(
        f"{CTX}/{cid}/messages",
        {"messages": [{"role": "user", "content": "ok"}, {"role": "user", "content": "x",
                                                           "id": mid}]},
        expect=409,
    )  # fmt: skip
    assert (await api.get(f"{CTX}/{cid}")).json["version"] == 3


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"role": "user"},
        {"content": "x"},
        {"role": "user", "content": "x", "messages": [{"role": "user", "content": "y"}]},
        {"messages": []},
        {"role": "user", "content": 5},
        {"role": "user", "content": "x", "colour": "red"},
        {"role": "user", "content": [{"type": "video", "url": "x"}]},
        {"role": "user", "content": "x", "id": "nope"},
        {"role": "user", "content": "nul\u0000"},
    ],
)
async def test_bad_appends_are_400_and_write_nothing(api: ApiClient, body: Any) -> None:
    cid = await new_context(api)
    r = await api.post(f"{CTX}/{cid}/messages", body, expect=400)
    assert r.json["error"]["details"]["path"].startswith("$")
    assert (await api.get(f"{CTX}/{cid}")).json["version"] == 1


async def test_edit_and_redact(api: ApiClient) -> None:
    cid = await new_context(api)
    mid = (await add(api, cid, "my password is hunter2"))["messages"][0]["id"]
    r = await api.patch(f"{CTX}/{cid}/messages/{mid}", {"content": "my password is ***"},
                        expect=200)  # fmt: skip
    assert r.json["messages"][0]["content"] == "my password is ***"
    assert r.json["messages"][0]["edited_version"] == 3
    r = await api.post(f"{CTX}/{cid}/messages/{mid}/redact", {"reason": "pii"}, expect=200)
    message = r.json["messages"][0]
    assert message["content"] == ""
    assert message["redacted"] is True
    assert message["content_hash"]
    # Redact with no body at all; unknown and malformed message ids are 404.
    await api.request("POST", f"{CTX}/{cid}/messages/{UNKNOWN}/redact", expect=404)
    await api.patch(f"{CTX}/{cid}/messages/nope", {"content": "x"}, expect=404)
    await api.patch(f"{CTX}/{cid}/messages/{mid}", {"text": "x"}, expect=400)


async def test_metadata_merge_patch(api: ApiClient) -> None:
    cid = await new_context(api, metadata={"a": 1, "b": {"c": 2, "d": 3}})
    r = await api.request(
        "PATCH", f"{CTX}/{cid}/metadata", data=b'{"a": null, "b": {"c": 9}, "e": "x"}',
        headers={"Content-Type": "application/merge-patch+json"}, expect=200,
    )  # fmt: skip
    assert r.json["metadata"] == {"b": {"c": 9, "d": 3}, "e": "x"}
    await api.patch(f"{CTX}/{cid}/metadata", [1, 2], expect=400)


async def test_configure_window(api: ApiClient) -> None:
    cid = await new_context(api)
    r = await api.put(f"{CTX}/{cid}/window", {"max_tokens": 50, "policy": "tokens"}, expect=200)
    assert r.json["window"]["max_tokens"] == 50
    await api.put(f"{CTX}/{cid}/window", {"max_tokens": 0}, expect=400)


# -- listing ----------------------------------------------------------------------------------


async def test_list_is_newest_first_paginated_and_filterable(api: ApiClient) -> None:
    ids = [await new_context(api, metadata={"n": str(i), "even": i % 2 == 0}) for i in range(5)]
    two = {"messages": [{"role": "user", "content": "hello"}, {"role": "user", "content": "you"}]}
    await api.post(f"{CTX}/{ids[3]}/messages", two, expect=201)
    seen: list[str] = []
    cursor = None
    while True:
        query = "?limit=2" + (f"&cursor={cursor}" if cursor else "")
        page = (await api.get(CTX + query, expect=200)).json
        assert len(page["contexts"]) <= 2
        seen += [c["id"] for c in page["contexts"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == ids[::-1]
    filtered = (await api.get(f"{CTX}?metadata.n=3", expect=200)).json
    assert [c["id"] for c in filtered["contexts"]] == [ids[3]]
    item = filtered["contexts"][0]
    assert item["message_count"] == 2  # from the read model's counts, not loaded messages
    full = (await api.get(f"{CTX}/{ids[3]}", expect=200)).json
    assert item["total_tokens"] == full["total_tokens"] > 0
    assert item["updated_by"] == full["updated_by"] == "alice"  # the key's actor
    await api.get(f"{CTX}?cursor=@@@", expect=400)
    await api.get(f"{CTX}?limit=0", expect=400)


# -- concurrency: ETag, If-Match --------------------------------------------------------------


async def test_if_match_guards_writes(api: ApiClient) -> None:
    cid = await new_context(api)
    message = {"role": "user", "content": "x"}
    r = await api.post(f"{CTX}/{cid}/messages", message, headers={"If-Match": '"1"'}, expect=201)
    assert r.headers["ETag"] == '"2"'
    r = await api.post(f"{CTX}/{cid}/messages", message, headers={"If-Match": '"1"'}, expect=412)
    assert r.json["error"]["code"] == "version_conflict"
    assert r.json["error"]["details"]["current_version"] == 2
    r = await api.post(f"{CTX}/{cid}/messages", {**message, "expected_version": 1}, expect=412)
    assert r.json["error"]["details"]["current_version"] == 2
    await api.post(f"{CTX}/{cid}/messages", {**message, "expected_version": 2}, expect=201)
    await api.delete(f"{CTX}/{cid}", headers={"If-Match": '"2"'}, expect=412)
    await api.patch(f"{CTX}/{cid}/metadata", {"a": 1}, headers={"If-Match": "2"}, expect=412)
    r = await api.post(
        f"{CTX}/{cid}/messages", {**message, "expected_version": 2},
        headers={"If-Match": '"3"'}, expect=400,
    )  # fmt: skip
    assert (await api.get(f"{CTX}/{cid}")).json["version"] == 3


async def test_if_none_match_is_304(api: ApiClient) -> None:
    cid = await new_context(api)
    r = await api.get(f"{CTX}/{cid}", headers={"If-None-Match": '"1"'})
    assert r.status == 304
    await add(api, cid, "x")
    await api.get(f"{CTX}/{cid}", headers={"If-None-Match": '"1"'}, expect=200)


async def test_concurrent_appends_without_if_match_all_land(api: ApiClient) -> None:
    cid = await new_context(api)
    await asyncio.gather(*(add(api, cid, f"m{i}") for i in range(5)))
    assert (await api.get(f"{CTX}/{cid}")).json["version"] == 6


# -- idempotency ------------------------------------------------------------------------------


async def test_idempotency_key_replays_the_first_result(connect: Connect) -> None:
    api = await connect()
    key = {"Idempotency-Key": "create-1"}
    first = await api.post(CTX, {"metadata": {"a": 1}}, headers=key, expect=201)
    again = await api.post(CTX, {"metadata": {"a": 1}}, headers=key, expect=201)
    assert again.json == first.json
    assert again.headers["Idempotent-Replayed"] == "true"
    cid = first.json["id"]
    akey = {"Idempotency-Key": "append-1"}
    one = await api.post(f"{CTX}/{cid}/messages", {"role": "user", "content": "x"}, headers=akey,
                         expect=201)  # fmt: skip
    await add(api, cid, "after")
    two = await api.post(f"{CTX}/{cid}/messages", {"role": "user", "content": "x"}, headers=akey,
                         expect=201)  # fmt: skip
    assert two.json == one.json  # the first result, not the context as it is now
    # The same key with another request: 422, nothing written.
    r = await api.post(f"{CTX}/{cid}/messages", {"role": "user", "content": "y"}, headers=akey,
                       expect=422)  # fmt: skip
    assert r.json["error"]["code"] == "idempotency_key_reused"
    # After a restart on the same file, still the first result.
    api = await connect()
    three = await api.post(f"{CTX}/{cid}/messages", {"role": "user", "content": "x"},
                           headers=akey, expect=201)  # fmt: skip
    assert three.json == one.json
    assert (await api.get(f"{CTX}/{cid}")).json["version"] == 3
    listed = (await api.get(CTX)).json["contexts"]
    assert len(listed) == 1


async def test_idempotency_keys_are_per_tenant(api: ApiClient) -> None:
    key = {"Idempotency-Key": "same"}
    a = await api.post(CTX, {}, headers=key, expect=201)
    b = await api.as_key("key-bob").post(CTX, {}, headers=key, expect=201)
    assert a.json["id"] != b.json["id"]


# -- history, time travel, views --------------------------------------------------------------


async def test_events_of_a_context_page_both_ways(api: ApiClient) -> None:
    cid = await new_context(api)
    for i in range(4):
        await add(api, cid, f"m{i}")
    r = await api.get(f"{CTX}/{cid}/events?limit=2", expect=200)
    assert [e["version"] for e in r.json["events"]] == [1, 2]
    assert r.json["next_from_version"] == 3
    assert r.json["events"][0]["actor"] == "alice"
    assert r.json["events"][1]["data"]["content"] == "m0"
    r = await api.get(f"{CTX}/{cid}/events?from_version=3&limit=10", expect=200)
    assert [e["version"] for e in r.json["events"]] == [3, 4, 5]
    assert r.json["next_from_version"] is None
    r = await api.get(f"{CTX}/{cid}/events?direction=backward&limit=2", expect=200)
    assert [e["version"] for e in r.json["events"]] == [5, 4]
    await api.get(f"{CTX}/{cid}/events?direction=sideways", expect=400)


async def test_time_travel_by_version_and_time(api: ApiClient) -> None:
    cid = await new_context(api)
    await add(api, cid, "first")
    await asyncio.sleep(0.01)
    middle = datetime.now(UTC).isoformat()
    await asyncio.sleep(0.01)
    await add(api, cid, "second")
    r = await api.get(f"{CTX}/{cid}?version=2", expect=200)
    assert [m["content"] for m in r.json["messages"]] == ["first"]
    assert r.headers["ETag"] == '"2"'
    r = await api.get(f"{CTX}/{cid}?at={middle}", expect=200)  # '+' arrives as a space
    assert r.json["version"] == 2
    await api.get(f"{CTX}/{cid}?version=9", expect=404)
    await api.get(f"{CTX}/{cid}?version=1&at={middle}", expect=400)
    await api.get(f"{CTX}/{cid}?at=yesterday", expect=400)
    # Before the context existed: a 404 that says so, and since when it exists.
    r = await api.get(f"{CTX}/{cid}?at=2000-01-01T00:00:00Z", expect=404)
    assert "did not exist yet at 2000-01-01T00:00:00Z" in r.json["error"]["message"]
    assert r.json["error"]["details"]["at"] == "2000-01-01T00:00:00Z"
    assert r.json["error"]["details"]["created_at"] <= middle.replace("+00:00", "Z")


async def test_window_with_accounting_and_record(api: ApiClient) -> None:
    cid = await new_context(api, window={"max_tokens": 1000})
    await add(api, cid, "be brief", role="system")
    for i in range(5):
        await add(api, cid, f"message number {i}")
    r = await api.get(f"{CTX}/{cid}/window", expect=200)
    assert r.json["max_tokens"] == 1000
    assert len(r.json["entries"]) == 6
    assert r.json["total_tokens"] <= 1000
    small = await api.get(f"{CTX}/{cid}/window?max_tokens=30", expect=200)
    assert len(small.json["entries"]) < 6
    assert small.json["left_out"]
    last = await api.get(f"{CTX}/{cid}/window?policy=last_n&last_n=2", expect=200)
    assert [e["content"] for e in last.json["entries"][1:]] == [
        "message number 3", "message number 4",
    ]  # fmt: skip
    await api.get(f"{CTX}/{cid}/window?policy=last_n", expect=422)
    await api.get(f"{CTX}/{cid}/window?policy=most", expect=400)
    await api.get(f"{CTX}/{cid}/window?model=no-such-model-xyz", expect=200)
    before = (await api.get(f"{CTX}/{cid}/events?direction=backward&limit=1")).json["events"]
    refused = await api.get(f"{CTX}/{cid}/window?record=true&max_tokens=30", expect=400)
    assert "POST" in refused.json["error"]["message"]
    after = (await api.get(f"{CTX}/{cid}/events?direction=backward&limit=1")).json["events"]
    assert after == before  # a GET never writes
    recorded = await api.post(f"{CTX}/{cid}/window", {"max_tokens": 30}, expect=200)
    events = (await api.get(f"{CTX}/{cid}/events?direction=backward&limit=1")).json["events"]
    assert events[0]["type"] == "window.served"
    assert events[0]["data"]["window_hash"] == recorded.json["window_hash"]
    assert recorded.json["max_tokens"] == 30


async def test_summaries_shape_the_window(api: ApiClient) -> None:
    cid = await new_context(api)
    ids = [(await add(api, cid, f"m{i}"))["messages"][-1]["id"] for i in range(3)]
    r = await api.post(
        f"{CTX}/{cid}/summaries",
        {"text": "they said m0 and m1", "through_message_id": ids[1]},
        expect=201,
    )
    assert r.json["summaries"][0]["through_message_id"] == ids[1]
    window = (await api.get(f"{CTX}/{cid}/window")).json
    assert [e["kind"] for e in window["entries"]] == ["summary", "message"]
    await api.post(f"{CTX}/{cid}/summaries", {"text": "x", "through_message_id": UNKNOWN},
                   expect=404)  # fmt: skip
    await api.post(f"{CTX}/{cid}/summaries", {"text": "x", "through_message_id": "nope"},
                   expect=400)  # fmt: skip


async def test_rollback_fork_diff_lineage(api: ApiClient) -> None:
    cid = await new_context(api)
    await add(api, cid, "keep")
    await add(api, cid, "drop")
    r = await api.post(f"{CTX}/{cid}/rollback", {"to_version": 2}, expect=200)
    assert [m["content"] for m in r.json["messages"]] == ["keep"]
    assert r.json["version"] == 4
    await api.post(f"{CTX}/{cid}/rollback", {"to_version": 99}, expect=409)
    await api.post(f"{CTX}/{cid}/rollback", {"to_version": 0}, expect=400)
    diff = (await api.get(f"{CTX}/{cid}/diff?from=3&to=4", expect=200)).json
    assert len(diff["removed"]) == 1
    await api.get(f"{CTX}/{cid}/diff", expect=400)
    await api.get(f"{CTX}/{cid}/diff?from=1&to=50", expect=404)

    fork = await api.post(f"{CTX}/{cid}/fork", {"at_version": 3, "metadata": {"branch": "b"}},
                          expect=201)  # fmt: skip
    fid = fork.json["id"]
    assert fid != cid
    # A fork answers with its head; its messages are a page away (issue 15, item 16).
    assert fork.json["messages"] == []
    page = (await api.get(fork.json["next"], expect=200)).json
    assert [m["content"] for m in page["messages"]] == ["keep", "drop"]
    assert fork.json["parent"] == {"context_id": cid, "version": 3}
    plain = await api.request("POST", f"{CTX}/{cid}/fork", expect=201)
    lineage = (await api.get(f"{CTX}/{cid}/lineage", expect=200)).json
    assert {f["context_id"] for f in lineage["forks"]} == {fid, plain.json["id"]}
    child = (await api.get(f"{CTX}/{fid}/lineage", expect=200)).json
    assert child["ancestors"] == [{"context_id": cid, "version": 3}]
    await api.post(f"{CTX}/{cid}/fork", {"at_version": 99}, expect=409)


# -- MCP views --------------------------------------------------------------------------------


async def test_mcp_views(api: ApiClient) -> None:
    r = await api.post(f"{V1}/mcp/contexts", {"metadata": {"mcp": {"client": "x"}}}, expect=201)
    cid = r.json["id"]
    assert r.json["metadata"]["mcp"] == {
        "client": "x", "window": {"max_tokens": 4096, "current_tokens": 0},
    }  # fmt: skip
    await add(api, cid, "hello there")
    got = await api.get(f"{V1}/mcp/contexts/{cid}", expect=200)
    current = got.json["metadata"]["mcp"]["window"]["current_tokens"]
    assert current == got.json["total_tokens"] > 0
    # The plain view is the same context, without the rendered MCP block.
    plain = await api.get(f"{CTX}/{cid}", expect=200)
    assert plain.json["metadata"] == {"mcp": {"client": "x"}}
    caps = await api.get(f"{V1}/mcp/capabilities", expect=200)
    assert {"token_counting", "context_window_management"} <= set(caps.json["capabilities"])
    await api.get(f"{V1}/mcp/contexts/{UNKNOWN}", expect=404)


# -- restarts ---------------------------------------------------------------------------------


async def test_restart_on_the_same_file_serves_the_same_state(connect: Connect) -> None:
    api = await connect()
    cid = await new_context(api, metadata={"k": "v"})
    await add(api, cid, "remember me")
    before = (await api.get(f"{CTX}/{cid}")).json
    window = (await api.get(f"{CTX}/{cid}/window")).json
    api = await connect()
    assert (await api.get(f"{CTX}/{cid}", expect=200)).json == before
    assert (await api.get(f"{CTX}/{cid}/window", expect=200)).json == window
    await add(api, cid, "and me")
    assert (await api.get(f"{CTX}/{cid}")).json["version"] == 3


async def test_a_ready_server_keeps_its_startup_heap_out_of_full_collections(
    aiohttp_client: Any, tmp_path: Path
) -> None:
    import gc

    thresholds = gc.get_threshold()
    app = create_app(testing.settings(str(tmp_path / "ctx.db")))
    client: AppClient = await aiohttp_client(app)
    await ApiClient(client, app[appkeys.OPENAPI], "key-alice").wait_ready()
    assert gc.get_freeze_count() > 0  # frozen once ready: the collector skips it
    assert gc.get_threshold()[0] == YOUNG_OBJECTS  # and collects young objects less often
    await client.close()
    assert gc.get_freeze_count() == 0  # and back to normal when the server is gone
    assert gc.get_threshold() == thresholds
