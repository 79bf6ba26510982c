"""``GET /api/v1/contexts/{id}/messages``: a context's messages a page at a time, now or at a
version, and ``GET /contexts/{id}?messages=false`` (the context without them): how a client
(the web view) reads a 10,000-message context without taking it in one answer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from api import appkeys, create_app, testing
from api.testing import ApiClient

CTX = "/api/v1/contexts"


@pytest.fixture
async def api(aiohttp_client: Any, tmp_path: Path) -> ApiClient:
    app = create_app(testing.settings(str(tmp_path / "messages.db")))
    client: TestClient[web.Request, web.Application] = await aiohttp_client(app)
    api = ApiClient(client, app[appkeys.OPENAPI], "key-alice")
    await api.wait_ready()
    return api


async def test_pages_forward_backward_and_at_a_version(api: ApiClient) -> None:
    cid = (await api.post(CTX, {}, expect=201)).json["id"]
    texts = [f"m{i}" for i in range(7)]
    body = {"messages": [{"role": "user", "content": t} for t in texts]}
    await api.post(f"{CTX}/{cid}/messages", body, expect=201)
    url = f"{CTX}/{cid}/messages"
    first = (await api.get(f"{url}?limit=3", expect=200)).json
    assert [m["content"] for m in first["messages"]] == texts[:3]
    assert (first["seqs"], first["next_after"], first["total"]) == ([0, 1, 2], 2, 7)
    rest = (await api.get(f"{url}?after=2", expect=200)).json
    assert [m["content"] for m in rest["messages"]] == texts[3:]
    assert rest["next_after"] is None
    last = await api.get(f"{url}?direction=backward&limit=2", expect=200)
    assert [m["content"] for m in last.json["messages"]] == ["m6", "m5"]
    assert last.headers["ETag"] == '"8"'
    # Version 4 held m0..m2 (each message of an append is a version of its own).
    old = (await api.get(f"{url}?version=4&direction=backward", expect=200)).json
    assert [m["content"] for m in old["messages"]] == ["m2", "m1", "m0"]
    assert (old["version"], old["total"], old["next_after"]) == (4, 3, None)
    await api.get(f"{url}?version=9", expect=404)
    for bad in ("limit=0", "limit=1001", "after=-1", "direction=up", "version=0", "x=1"):
        r = await api.get(f"{url}?{bad}", expect=400)
        assert r.json["error"]["details"]["in"] == "query"


async def test_a_context_without_its_messages(api: ApiClient) -> None:
    cid = (await api.post(CTX, {"metadata": {"a": 1}}, expect=201)).json["id"]
    await api.post(f"{CTX}/{cid}/messages", {"role": "user", "content": "hi"}, expect=201)
    now = (await api.get(f"{CTX}/{cid}?messages=false", expect=200)).json
    assert (now["messages"], now["metadata"], now["version"]) == ([], {"a": 1}, 2)
    assert now["total_tokens"] > 0
    then = (await api.get(f"{CTX}/{cid}?version=2&messages=false", expect=200)).json
    assert then["messages"] == []
    full = (await api.get(f"{CTX}/{cid}", expect=200)).json
    assert [m["content"] for m in full["messages"]] == ["hi"]
