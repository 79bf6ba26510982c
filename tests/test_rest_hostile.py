"""Hostile input against the real server: every case gets a 4xx that the OpenAPI document lists
for that operation, in the one error shape, and writes nothing (the log's head is the same
before and after); the server keeps serving everyone else.

The corpus is generated from a table of endpoints, each with a valid body that is accepted as
it is: malformed JSON, a 10 MB body, 10,000-deep nesting, NUL, invalid UTF-8 and lone
surrogates in every string field and key, numbers past 64 bits, repeated keys, wrong content
types, bad headers; then SQL- and path-looking ids and query values. Adding an endpoint is one
row in ``ENDPOINTS``. Malformed HTTP, header injection, slow clients and idle live connections
are in ``tests/test_rest_hostile_connections.py``.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import pytest

from api import appkeys, create_app, testing
from api.testing import ApiClient, Checker
from tests.support.hostile import ALICE, HOSTILE_IDS, JSON, Answer, corpus, send
from tests.support.server_process import (
    ServerProcess,
    key_secrets,
    seed_context,
    serving,
)

V1 = "/api/v1"
CTX = f"{V1}/contexts"
LIMITS = {"CTXLOG_BODY_TIMEOUT": "1", "CTXLOG_KEEPALIVE_TIMEOUT": "2"}


@dataclass(frozen=True)
class Endpoint:
    """A write endpoint: method, path ({ctx}, {mid} filled in) and a body it accepts."""

    name: str
    method: str
    path: str
    body: dict[str, Any]


CREATE = {
    "metadata": {"m": "v", "n": {"deep": ["x"]}},
    "window": {"max_tokens": 9, "model": "gpt-4"},
}
PARTS = [
    {"type": "text", "text": "t"},
    {"type": "tool_call", "id": "c1", "name": "f", "arguments": {"k": "v", "n": 1}},
]
MESSAGE = {"role": "assistant", "name": "nm", "metadata": {"mk": "mv"}, "content": PARTS}
ENDPOINTS = [
    Endpoint("create", "POST", CTX, CREATE),
    Endpoint("mcp_create", "POST", f"{V1}/mcp/contexts", CREATE),
    Endpoint("append", "POST", "{ctx}/messages", {"messages": [MESSAGE], "expected_version": 2}),
    Endpoint(
        "append_one", "POST", "{ctx}/messages",
        {"role": "user", "content": "hi", "name": "n", "metadata": {"a": "b"}},
    ),
    Endpoint("edit", "PATCH", "{ctx}/messages/{mid}", {"content": "new", "expected_version": 2}),
    Endpoint("redact", "POST", "{ctx}/messages/{mid}/redact", {"reason": "why"}),
    Endpoint("metadata", "PATCH", "{ctx}/metadata", {"k": "v", "o": {"p": "q", "n": 3}}),
    Endpoint("window", "PUT", "{ctx}/window", {"max_tokens": 50, "model": "gpt-4"}),
    Endpoint("record_window", "POST", "{ctx}/window", {"max_tokens": 50, "model": "gpt-4"}),
    Endpoint("summary", "POST", "{ctx}/summaries", {"text": "s", "through_message_id": "{mid}"}),
    Endpoint("rollback", "POST", "{ctx}/rollback", {"to_version": 1, "reason": "r"}),
    Endpoint("fork", "POST", "{ctx}/fork", {"at_version": 1, "metadata": {"f": "g"}}),
    Endpoint("delete", "DELETE", "{ctx}", {"reason": "gone"}),
]  # fmt: skip

# Paths that name a context (and a message): hostile ids in them name nothing.
ID_PATHS = [
    ("GET", "{ctx}"),
    ("GET", "{ctx}/events"),
    ("GET", "{ctx}/window"),
    ("GET", "{ctx}/diff?from=1"),
    ("GET", "{ctx}/lineage"),
    ("GET", f"{V1}/mcp/contexts/{{id}}"),
    ("POST", "{ctx}/messages"),
    ("PATCH", "{ctx}/messages/{mid}"),
    ("POST", "{ctx}/rollback"),
    ("DELETE", "{ctx}"),
]


# -- the server and helpers -------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    db = tmp_path_factory.mktemp("hostile") / "hostile.db"
    with serving(db, env=LIMITS, secrets=key_secrets()) as proc:
        yield proc


def fill(text: str, cid: str, mid: str) -> str:
    return text.replace("{ctx}", f"{CTX}/{cid}").replace("{id}", cid).replace("{mid}", mid)


def filled(body: Any, cid: str, mid: str) -> Any:
    return msgspec.json.decode(fill(msgspec.json.encode(body).decode(), cid, mid))


def refused(checker: Checker, method: str, path: str, answer: Answer) -> str | None:
    """Why ``answer`` is not a documented 4xx in the error shape (None: it is)."""
    if not 400 <= answer.status < 500:
        return f"status {answer.status}: {answer.body[:200]!r}"
    if answer.content_type != "application/json":
        return f"{answer.status} is {answer.content_type}, not JSON"
    try:
        checker.check(
            method, path.partition("?")[0], answer.status, answer.json, "application/json"
        )
    except AssertionError as e:
        return str(e)
    if b"key-alice" in answer.body:
        return "the API key is echoed"
    return None


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=[e.name for e in ENDPOINTS])
async def test_the_valid_body_is_accepted(
    endpoint: Endpoint, server: ServerProcess, session: aiohttp.ClientSession
) -> None:
    # The corpus only means something if the body it mutates is good as it is.
    cid, mid = await seed_context(session, server)
    data = msgspec.json.encode(filled(endpoint.body, cid, mid))
    url = server.url + fill(endpoint.path, cid, mid)
    answer = await send(session, endpoint.method, url, data, JSON)
    assert 200 <= answer.status < 300, answer.body


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=[e.name for e in ENDPOINTS])
async def test_hostile_bodies_get_a_documented_4xx_and_write_nothing(
    endpoint: Endpoint, server: ServerProcess, checker: Checker, session: aiohttp.ClientSession
) -> None:
    cid, mid = await seed_context(session, server)
    body = filled(endpoint.body, cid, mid)
    path = fill(endpoint.path, cid, mid)
    before = server.head()
    failures = []
    cases = 0
    found = checker.operation(endpoint.method, path)
    assert found is not None
    taken = {p["name"] for p in found[1]["parameters"] if p["in"] == "header"}
    for what, data, headers in corpus(body, taken):
        cases += 1
        try:
            answer = await send(session, endpoint.method, server.url + path, data, headers)
        except aiohttp.ClientError as e:  # the server may stop reading an oversized body
            failures.append(f"{what}: {type(e).__name__}")
            continue
        why = refused(checker, endpoint.method, path, answer)
        if why is not None:
            failures.append(f"{what}: {why}")
    assert not failures, "\n".join(failures)
    assert server.head() == before, "a hostile request wrote to the log"
    assert cases > 20


async def test_hostile_ids_name_nothing(
    server: ServerProcess, checker: Checker, session: aiohttp.ClientSession
) -> None:
    cid, mid = await seed_context(session, server)
    before = server.head()
    failures = []
    for method, template in ID_PATHS:
        for bad in HOSTILE_IDS:
            for which in ("ctx", "mid") if "{mid}" in template else ("ctx",):
                path = fill(
                    template, bad if which == "ctx" else cid, bad if which == "mid" else mid
                )
                if which == "ctx" and "{id}" in template:
                    path = template.replace("{id}", bad)
                data = b"{}" if method != "GET" else None
                answer = await send(session, method, server.url + path, data, JSON)
                # Ids that are not UUIDs name no resource (404). ".." is resolved by the client
                # first (RFC 3986), so those land on another route: a read there may succeed,
                # a write must not.
                normalized = ".." in bad and "%" not in bad
                if answer.status >= 500 or (
                    answer.status != 404
                    and not (normalized and (method == "GET" or answer.status >= 400))
                ):
                    failures.append(f"{method} {path[:80]}: {answer.status}")
                elif answer.status >= 400 and (why := refused(checker, method, path, answer)):
                    failures.append(f"{method} {path[:80]}: {why}")
    assert not failures, "\n".join(failures)
    assert server.head() == before


async def test_sql_looking_query_values_are_only_values(
    server: ServerProcess, session: aiohttp.ClientSession
) -> None:
    cid, _ = await seed_context(session, server)
    drop = "'; DROP TABLE events;--"
    for query in (
        {"type": drop},
        {"actor": "' OR '1'='1"},
        {"actor": drop, "type": "message.appended"},
    ):
        async with session.get(f"{server.url}{V1}/events", params=query, headers=ALICE) as r:
            assert r.status == 200
            assert (await r.json())["events"] == []
    async with session.get(
        f"{server.url}{CTX}", params={f"metadata.{drop}": drop}, headers=ALICE
    ) as r:
        assert r.status == 200
        assert (await r.json())["contexts"] == []
    for query in ({"context_id": drop}, {"after": "1; DROP"}, {"since": drop}):
        async with session.get(f"{server.url}{V1}/events", params=query, headers=ALICE) as r:
            assert r.status == 400
    # The log is still all there.
    async with session.get(f"{server.url}{CTX}/{cid}/events", headers=ALICE) as r:
        assert r.status == 200
        assert len((await r.json())["events"]) == 2


# Metadata keys that look like JSON paths or break them: each names only itself.
PATH_LOOKING_KEYS = ['a"b', "c\\d", 'x\\"y', "$", "[0]", "a.b", "$.a", "", "k" * 4000]


async def test_hostile_query_parameters_are_400_or_only_values(
    server: ServerProcess, checker: Checker, session: aiohttp.ClientSession
) -> None:
    # Query parameter names and values reach SQLite (metadata filters, log filters) and the
    # log (a recorded window's model): NUL anywhere is a 400 like in a body, too many
    # metadata filters a 400, and keys that look like JSON paths are only keys.
    cid, _ = await seed_context(session, server)
    ids = {}
    for key in PATH_LOOKING_KEYS:
        body = {"metadata": {key: "v", "probe": "hostile-query"}}
        async with session.post(f"{server.url}{CTX}", json=body, headers=ALICE) as r:
            assert r.status == 201, await r.text()
            ids[key] = (await r.json())["id"]
    before = server.head()
    failures = []
    for query in (
        "metadata.a%00=1",
        "metadata.a=1%00",
        "metadata.%00=1",
        "&".join(f"metadata.k{i}=v" for i in range(21)),
        "&".join(f"metadata.k{i}=v" for i in range(400)),
    ):
        answer = await send(session, "GET", f"{server.url}{CTX}?{query}", None, ALICE)
        if answer.status != 400 or refused(checker, "GET", CTX, answer):
            failures.append(f"?{query[:40]}: {answer.status} {answer.body[:200]!r}")
    window = f"{CTX}/{cid}/window"
    for path, query in (
        (f"{V1}/events", "actor=a%00"),
        (f"{V1}/events", "type=message.appended%00"),
        (f"{V1}/events", "a%00=1"),
        (window, "record=true&model=gpt-4%00"),
        (window, "record=true&model%00=gpt-4"),
        (f"{CTX}/{cid}", "version=1&x%00"),
    ):
        answer = await send(session, "GET", f"{server.url}{path}?{query}", None, ALICE)
        template = f"{CTX}/{{id}}" + path.removeprefix(f"{CTX}/{cid}") if cid in path else path
        if answer.status != 400 or refused(checker, "GET", template, answer):
            failures.append(f"{path[-20:]}?{query}: {answer.status} {answer.body[:200]!r}")
    assert not failures, "\n".join(failures)
    assert server.head() == before, "a hostile query wrote to the log"
    for key in PATH_LOOKING_KEYS:
        params = {f"metadata.{key}": "v", "metadata.probe": "hostile-query"}
        async with session.get(f"{server.url}{CTX}", params=params, headers=ALICE) as r:
            assert r.status == 200, (key[:20], await r.text())
            found = [c["id"] for c in (await r.json())["contexts"]]
            assert found == [ids[key]], key[:20]
    # A key longer than a request line may be: aiohttp's parser refuses it (plain 400).
    answer = await send(session, "GET", f"{server.url}{CTX}?metadata.{'k' * 9000}=v", None, ALICE)
    assert answer.status == 400


async def test_a_forged_list_cursor_is_400(aiohttp_client: Any, tmp_path: Path) -> None:
    # Cursors are opaque, but a client can forge one: a position past 64 bits must be a 400
    # like any other cursor the server did not issue, not an OverflowError in SQLite (500).
    app = create_app(testing.settings(str(tmp_path / "ctx.db")))
    api = ApiClient(await aiohttp_client(app), app[appkeys.OPENAPI], "key-alice")
    await api.wait_ready()
    forged = base64.urlsafe_b64encode(b"p" + b"9" * 30).decode().rstrip("=")
    r = await api.get(f"{CTX}?cursor={forged}")
    assert r.status == 400, r.json
    assert r.json["error"]["details"]["path"] == "$.cursor"
