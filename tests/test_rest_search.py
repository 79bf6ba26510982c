"""Full-text search over REST (``GET /api/v1/search``) and a fork's diff against its parent
(``GET /api/v1/contexts/{id}/diff/parent``): what the service already did, through the door
the web view uses. Every answer is checked against the OpenAPI document by ``ApiClient``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from api import appkeys, create_app, testing
from api.testing import ApiClient

V1 = "/api/v1"
CTX = f"{V1}/contexts"
SEARCH = f"{V1}/search"


@pytest.fixture
async def api(aiohttp_client: Any, tmp_path: Path) -> ApiClient:
    app = create_app(testing.settings(str(tmp_path / "search.db")))
    client: TestClient[web.Request, web.Application] = await aiohttp_client(app)
    api = ApiClient(client, app[appkeys.OPENAPI], "key-alice")
    await api.wait_ready()
    return api


async def _context(api: ApiClient, *texts: str) -> tuple[str, list[str]]:
    cid = (await api.post(CTX, {}, expect=201)).json["id"]
    if not texts:
        return cid, []
    body = {"messages": [{"role": "user", "content": t} for t in texts]}
    r = await api.post(f"{CTX}/{cid}/messages", body, expect=201)
    return cid, [m["id"] for m in r.json["messages"]]


async def test_search_finds_every_word_best_first_in_pages(api: ApiClient) -> None:
    cid, mids = await _context(
        api, "the quick brown fox", "a lazy dog", "quick quick fox fox", "brown bread"
    )
    r = await api.get(f"{SEARCH}?q=quick+fox", expect=200)
    hits = r.json["hits"]
    assert [h["message_id"] for h in hits] == [mids[2], mids[0]]
    assert {h["context_id"] for h in hits} == {cid}
    assert "fox" in hits[0]["snippet"]
    assert r.json["next_cursor"] is None
    # Pages: one hit at a time, following the cursor to the end.
    seen: list[str] = []
    url = f"{SEARCH}?q=quick&limit=1"
    while True:
        page = (await api.get(url, expect=200)).json
        seen += [h["message_id"] for h in page["hits"]]
        if page["next_cursor"] is None:
            break
        url = f"{SEARCH}?q=quick&limit=1&cursor={page['next_cursor']}"
    assert sorted(seen) == sorted([mids[0], mids[2]])
    # A prefix, and one context only.
    other, _ = await _context(api, "brownie points")
    assert len((await api.get(f"{SEARCH}?q=brown*", expect=200)).json["hits"]) == 3
    only = (await api.get(f"{SEARCH}?q=brown*&context_id={other}", expect=200)).json["hits"]
    assert [h["context_id"] for h in only] == [other]


async def test_search_is_the_callers_tenant_only(api: ApiClient) -> None:
    cid, _ = await _context(api, "alice's secret plan")
    bob = api.as_key("key-bob")
    await _context(bob, "bob's plan")
    hits = (await bob.get(f"{SEARCH}?q=plan", expect=200)).json["hits"]
    assert len(hits) == 1
    assert hits[0]["context_id"] != cid
    assert (await bob.get(f"{SEARCH}?q=secret", expect=200)).json["hits"] == []
    # Naming another tenant's context is a 404, exactly as for one that does not exist.
    theirs = await bob.get(f"{SEARCH}?q=secret&context_id={cid}", expect=404)
    nothing = await bob.get(f"{SEARCH}?q=secret&context_id={'0' * 8}-0000-4000-8000-{'0' * 12}")
    assert nothing.status == 404
    assert theirs.json["error"] == nothing.json["error"]


async def test_search_sees_edits_and_redactions(api: ApiClient) -> None:
    cid, mids = await _context(api, "original wording", "to be hidden")
    await api.patch(f"{CTX}/{cid}/messages/{mids[0]}", {"content": "revised wording"}, expect=200)
    await api.post(f"{CTX}/{cid}/messages/{mids[1]}/redact", {}, expect=200)
    assert (await api.get(f"{SEARCH}?q=original", expect=200)).json["hits"] == []
    assert len((await api.get(f"{SEARCH}?q=revised", expect=200)).json["hits"]) == 1
    assert (await api.get(f"{SEARCH}?q=hidden", expect=200)).json["hits"] == []


@pytest.mark.parametrize(
    ("query", "path"),
    [
        ("", "$"),  # missing: msgspec names the field in the message
        ("?q=", "$.q"),
        ("?q=%20%20", "$.q"),
        ("?q=x&limit=0", "$.limit"),
        ("?q=x&limit=101", "$.limit"),
        ("?q=x&cursor=nope", "$.cursor"),
        ("?q=x&context_id=not-a-uuid", "$.context_id"),
        ("?q=x&bogus=1", "$"),
    ],
)
async def test_a_bad_search_is_a_400_naming_the_parameter(
    api: ApiClient, query: str, path: str
) -> None:
    before = (await api.get(f"{V1}/events", expect=200)).json["next_after"]
    r = await api.get(SEARCH + query, expect=400)
    assert r.json["error"]["details"]["in"] == "query"
    assert r.json["error"]["details"]["path"] == path
    assert (await api.get(f"{V1}/events", expect=200)).json["next_after"] == before


async def test_operators_in_a_search_are_just_words(api: ApiClient) -> None:
    await _context(api, 'say "NEAR" OR AND NOT (x)')
    for q in ['"NEAR"', "OR", "NOT+(x)", "AND*", "%22"]:
        await api.get(f"{SEARCH}?q={q}", expect=200)


async def test_a_fork_against_its_parent(api: ApiClient) -> None:
    cid, mids = await _context(api, "one", "two")
    forked = (await api.post(f"{CTX}/{cid}/fork", {}, expect=201)).json
    fork, point = forked["id"], forked["parent"]["version"]
    added = await api.post(f"{CTX}/{fork}/messages", {"role": "user", "content": "3"}, expect=201)
    new_id = added.json["messages"][-1]["id"]
    await api.patch(f"{CTX}/{fork}/messages/{mids[0]}", {"content": "uno"}, expect=200)
    await api.post(f"{CTX}/{cid}/messages", {"role": "user", "content": "parent's"}, expect=201)
    url = f"{CTX}/{fork}/diff/parent"
    at_fork = (await api.get(f"{url}?parent_version={point}", expect=200)).json
    assert (at_fork["from_context"], at_fork["from_version"]) == (cid, point)
    assert at_fork["to_context"] == fork
    assert at_fork["added"] == [new_id]
    assert at_fork["edited"] == [mids[0]]
    assert at_fork["removed"] == []
    now = (await api.get(url, expect=200)).json
    assert now["from_version"] == point + 1
    assert len(now["removed"]) == 1  # the parent's message appended after the fork
    # Not a fork: 422; a parent version that does not exist: 404.
    r = await api.get(f"{CTX}/{cid}/diff/parent", expect=422)
    assert r.json["error"]["code"] == "invalid_command"
    await api.get(f"{url}?parent_version=99", expect=404)
    await api.get(f"{url}?parent_version=0", expect=400)
