"""Hostile input against the MCP endpoint (``/mcp``) of the real server, in a 2025-11-25
session, a 2025-03-26 session (the one revision with batches) and stateless 2026-07-28
requests: every case is refused — a 4xx the OpenAPI document lists for ``POST /mcp``, a
JSON-RPC error, or a tool result with ``isError: true`` — never a 5xx, and writes nothing (the
log's head is the same before and after).

As in ``tests/test_rest_hostile.py`` the corpus is generated from valid requests (each checked to be
accepted and to write): malformed JSON-RPC, a 10 MB body, 10,000-deep nesting, NUL, invalid
UTF-8 and lone surrogates in every string and key, numbers past 64 bits, out-of-range versions,
wrong content types, hostile ids, URIs and headers, and batch abuse. The last test shows the
per-key rate limit reaching /mcp: 429 with ``Retry-After``.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import pytest

from api import appkeys, create_app, testing
from api.testing import ApiClient, Checker
from tests.support.clients import AppClient
from tests.support.hostile import HOSTILE_IDS, Answer, corpus, send
from tests.support.server_process import (
    ServerProcess,
    key_secrets,
    seed_context,
    serving,
)

ALICE = {"X-API-Key": "key-alice"}
JSON = {**ALICE, "Content-Type": "application/json"}
ACCEPT = {"Accept": "application/json, text/event-stream"}
SESSION, LEGACY, MODERN = "2025-11-25", "2025-03-26", "2026-07-28"
ENVELOPE = {
    "io.modelcontextprotocol/protocolVersion": MODERN,
    "io.modelcontextprotocol/clientCapabilities": {},
}
# Each case opens a session of its own and leaves it: more than a key's default 100.
LIMITS = {
    "CTXLOG_BODY_TIMEOUT": "1",
    "CTXLOG_KEEPALIVE_TIMEOUT": "2",
    "CTXLOG_MCP_SESSIONS_PER_KEY": "1000",
}

CONTENT = [
    {"type": "text", "text": "t"},
    {"type": "tool_call", "id": "c1", "name": "f", "arguments": {"k": "v"}},
]
MESSAGE = {"role": "assistant", "name": "nm", "metadata": {"mk": "mv"}, "content": CONTENT}
# Write tools, each with arguments it accepts ({id}, {mid}: a fresh context and its message,
# at version 2); the versions in them are the ones bent out of range.
TOOLS: dict[str, dict[str, Any]] = {
    "create_context": {"metadata": {"m": "v"}, "window": {"max_tokens": 9, "model": "gpt-4"}},
    "append_messages": {"context_id": "{id}", "messages": [MESSAGE], "expected_version": 2},
    "edit_message": {
        "context_id": "{id}", "message_id": "{mid}", "content": "new", "expected_version": 2,
    },
    "add_summary": {"context_id": "{id}", "text": "s", "through_message_id": "{mid}"},
    "rollback": {"context_id": "{id}", "to_version": 1, "reason": "r", "expected_version": 2},
    "fork": {"context_id": "{id}", "at_version": 1, "metadata": {"f": "g"}},
    "redact_message": {"context_id": "{id}", "message_id": "{mid}", "reason": "why"},
}  # fmt: skip
VERSIONS = ("expected_version", "to_version", "at_version")
"""Fields whose every value but the context's real versions is refused."""
OUT_OF_RANGE = (0, -1, 3, 2**63 - 1, -(2**63))
HOSTILE_URIS = [
    "ctxlog://contexts/../../etc/passwd",
    "ctxlog://contexts/%2e%2e%2f",
    "ctxlog://contexts/'; DROP TABLE events;--",
    "file:///etc/passwd",
    "ctxlog://contexts/{id}@0",
    "ctxlog://contexts/{id}@99999999999999999999",
    "ctxlog://contexts/{id}/events?limit=99999999999999999999",
    "ctxlog://contexts/{id}/events?from_version=-1",
    "ctxlog://contexts/{id}/../{id}",
    "ctxlog://contexts/{id}\x00",
    "",
]

# Headers each era reads (the other era ignores them: a valid request there).
HOSTILE_HEADERS = {
    SESSION: [
        ("Mcp-Session-Id", "../../etc/passwd"),
        ("Mcp-Session-Id", "'; DROP TABLE sessions;--"),
        ("Mcp-Session-Id", "s" * 4000),
    ],
    MODERN: [
        ("Mcp-Method", "tools/list"),
        ("Mcp-Name", "=?base64?!!!?="),
        ("Mcp-Name", "=?base64?Y3JlYXRlX2NvbnRleHQ=?="),  # create_context: not this call
    ],
    "both": [("MCP-Protocol-Version", "9999-99-99"), ("MCP-Protocol-Version", "' OR '1'='1")],
}


# -- the server and helpers -------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    db = tmp_path_factory.mktemp("hostile-mcp") / "hostile.db"
    with serving(db, env=LIMITS, secrets=key_secrets()) as proc:
        yield proc


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
        yield session


def message(name: str, arguments: dict[str, Any], era: str) -> dict[str, Any]:
    params: dict[str, Any] = {"name": name, "arguments": arguments}
    if era == MODERN:
        params["_meta"] = ENVELOPE
    return {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": params}


async def era_headers(
    http: aiohttp.ClientSession, server: ServerProcess, era: str, method: str, name: str = ""
) -> dict[str, str]:
    """What a POST in ``era`` needs besides its body: a fresh session, or the routing headers."""
    if era == MODERN:
        if not (name.isascii() and name.isprintable()):
            name = "=?base64?" + base64.b64encode(name.encode()).decode() + "?="
        return {"MCP-Protocol-Version": MODERN, "Mcp-Method": method, "Mcp-Name": name, **ACCEPT}
    params = {"protocolVersion": era, "capabilities": {}, "clientInfo": {"name": "h"}}
    init = {"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": params}
    async with http.post(f"{server.url}/mcp", json=init, headers={**ALICE, **ACCEPT}) as r:
        assert r.status == 200, await r.text()
        return {"Mcp-Session-Id": r.headers["Mcp-Session-Id"], **ACCEPT}


def fill(value: Any, cid: str, mid: str) -> Any:
    text = msgspec.json.encode(value).decode().replace("{id}", cid).replace("{mid}", mid)
    return msgspec.json.decode(text)


def refusal(checker: Checker, answer: Answer) -> str | None:
    """Why ``answer`` is not a refusal (None: it is one)."""
    if answer.status == 202 and not answer.body:
        return None  # a notification or a response: nothing to run, nothing written
    if answer.status >= 500 or answer.content_type != "application/json":
        return f"{answer.status} {answer.content_type}: {answer.body[:200]!r}"
    try:
        checker.check("POST", "/mcp", answer.status, answer.json, "application/json")
    except AssertionError as e:
        return str(e)
    if b"key-alice" in answer.body:
        return "the API key is echoed"
    replies = answer.json if isinstance(answer.json, list) else [answer.json]
    for reply in replies:
        result = reply.get("result")
        if result is not None and result.get("isError") is not True:
            return f"{answer.status}, accepted: {answer.body[:200]!r}"
    return None


def bent_versions(body: dict[str, Any]) -> Iterator[tuple[str, bytes]]:
    arguments = body["params"]["arguments"]
    for field in VERSIONS:
        if field in arguments:
            for value in OUT_OF_RANGE:
                bent = {**arguments, field: value}
                changed = {**body, "params": {**body["params"], "arguments": bent}}
                yield f"{field}={value}", msgspec.json.encode(changed)


def mcp_corpus(body: dict[str, Any]) -> Iterator[tuple[str, bytes, dict[str, str]]]:
    """The REST corpus of a JSON-RPC message (no header of the REST API's applies here),
    then the versions it names bent out of range."""
    yield from corpus(body, set())
    for what, data in bent_versions(body):
        yield what, data, JSON


# -- the corpus -------------------------------------------------------------------------------


@pytest.mark.parametrize("era", [SESSION, MODERN])
@pytest.mark.parametrize("tool", list(TOOLS))
async def test_the_valid_requests_are_accepted(
    tool: str, era: str, server: ServerProcess, http: aiohttp.ClientSession
) -> None:
    # The corpus only means something if the requests it bends are good as they are.
    cid, mid = await seed_context(http, server)
    headers = {**JSON, **await era_headers(http, server, era, "tools/call", tool)}
    before = server.head()
    body = msgspec.json.encode(message(tool, fill(TOOLS[tool], cid, mid), era))
    answer = await send(http, "POST", f"{server.url}/mcp", body, headers)
    assert answer.status == 200, answer.body
    assert answer.json["result"]["isError"] is False, answer.body
    assert server.head() > before


@pytest.mark.parametrize("era", [SESSION, MODERN])
@pytest.mark.parametrize("tool", list(TOOLS))
async def test_hostile_messages_are_refused_and_write_nothing(
    tool: str, era: str, server: ServerProcess, checker: Checker, http: aiohttp.ClientSession
) -> None:
    cid, mid = await seed_context(http, server)
    routing = await era_headers(http, server, era, "tools/call", tool)
    body = message(tool, fill(TOOLS[tool], cid, mid), era)
    before = server.head()
    failures, cases = [], 0
    for what, data, headers in mcp_corpus(body):
        cases += 1
        try:
            answer = await send(http, "POST", f"{server.url}/mcp", data, {**headers, **routing})
        except aiohttp.ClientError as e:  # the server may stop reading an oversized body
            failures.append(f"{what}: {type(e).__name__}")
            continue
        if (why := refusal(checker, answer)) is not None:
            failures.append(f"{what}: {why}")
    assert not failures, "\n".join(failures)
    assert server.head() == before, "a hostile request wrote to the log"
    assert cases > 20


@pytest.mark.parametrize("era", [SESSION, MODERN])
async def test_hostile_ids_uris_and_headers_name_nothing(
    era: str, server: ServerProcess, checker: Checker, http: aiohttp.ClientSession
) -> None:
    cid, mid = await seed_context(http, server)
    before = server.head()
    cases: list[tuple[str, dict[str, Any], dict[str, str]]] = []
    for bad in HOSTILE_IDS:
        for tool in ("append_messages", "edit_message", "rollback", "fork"):
            for field in ("context_id", "message_id"):
                arguments = fill(TOOLS[tool], cid, mid)
                if field in arguments:
                    cases.append((f"{tool} {field}={bad[:20]!r}", message(tool, {
                        **arguments, field: bad}, era), {}))  # fmt: skip
    for template in HOSTILE_URIS:
        uri = template.replace("{id}", cid)
        for method in ("resources/read", "resources/subscribe"):
            if era == MODERN and method == "resources/subscribe":
                continue
            params: dict[str, Any] = {"uri": uri, **({"_meta": ENVELOPE} if era == MODERN else {})}
            cases.append((f"{method} {uri[:40]!r}", {
                "jsonrpc": "2.0", "id": 1, "method": method, "params": params}, {}))  # fmt: skip
    valid = message("append_messages", fill(TOOLS["append_messages"], cid, mid), era)
    for name, value in HOSTILE_HEADERS[era] + HOSTILE_HEADERS["both"]:
        cases.append((f"{name}: {value[:20]!r}", valid, {name: value}))
    failures = []
    for what, body, extra in cases:
        name = body["params"].get("name") or body["params"].get("uri", "")
        routing = await era_headers(http, server, era, body["method"], name)
        data = msgspec.json.encode(body)
        answer = await send(http, "POST", f"{server.url}/mcp", data, {**JSON, **routing, **extra})
        if (why := refusal(checker, answer)) is not None:
            failures.append(f"{what}: {why}")
    assert not failures, "\n".join(failures)
    assert server.head() == before


@pytest.mark.parametrize("era", [SESSION, LEGACY, MODERN])
async def test_batch_abuse_is_refused_and_writes_nothing(
    era: str, server: ServerProcess, checker: Checker, http: aiohttp.ClientSession
) -> None:
    cid, mid = await seed_context(http, server)
    routing = await era_headers(http, server, era, "tools/call", "append_messages")
    good = message("append_messages", fill(TOOLS["append_messages"], cid, mid), era)
    bad = {**good, "params": {**good["params"], "arguments": {"context_id": "../"}}}
    ping = {"jsonrpc": "2.0", "id": 2, "method": "ping"}
    init = {"jsonrpc": "2.0", "id": 3, "method": "initialize", "params": {}}
    batches: dict[str, list[Any]] = {
        "empty": [],
        "nested": [[good], [[bad]]],
        "non-messages": [1, "x", None, True, {}, []],
        "hostile items": [bad, {**bad, "id": None}, {**bad, "jsonrpc": "1.0"}, init],
        "5,000 items": [[] for _ in range(5000)],
        "duplicate ids": [bad, bad, {**bad, "method": "resources/read"}],
        "10,000 pings": [{**ping, "id": i} for i in range(10_000)],
    }
    if era != LEGACY:
        batches["one good write"] = [good]  # batches exist only in 2025-03-26
    before = server.head()
    failures = []
    for what, batch in batches.items():
        data = msgspec.json.encode(batch)
        answer = await send(http, "POST", f"{server.url}/mcp", data, {**JSON, **routing})
        if era != LEGACY and answer.status != 400:
            failures.append(f"{what}: {answer.status}, not 400")
        elif what == "10,000 pings" and era == LEGACY:
            # Over the body limit, or answered ping by ping: never a 5xx either way.
            if answer.status >= 500 or (answer.status == 200 and len(answer.json) != 10_000):
                failures.append(f"{what}: {answer.status} {answer.body[:200]!r}")
        elif (why := refusal(checker, answer)) is not None:
            failures.append(f"{what}: {why}")
    assert not failures, "\n".join(failures)
    assert server.head() == before


@pytest.mark.parametrize("era", [SESSION, MODERN])
async def test_hostile_list_filters_are_refused_or_only_keys(
    era: str, server: ServerProcess, checker: Checker, http: aiohttp.ClientSession
) -> None:
    # 2,000 metadata filters were 2,000 conditions in one statement, too large for SQLite (a
    # 500); keys that look like JSON paths name only themselves.
    failures = []
    for what, metadata in (
        ("2,000 filters", {f"k{i}": "v" for i in range(2000)}),
        ("21 filters", {f"k{i}": "v" for i in range(21)}),
    ):
        body = message("list_contexts", {"metadata": metadata}, era)
        routing = await era_headers(http, server, era, "tools/call", "list_contexts")
        answer = await send(http, "POST", f"{server.url}/mcp", msgspec.json.encode(body),
                            {**JSON, **routing})  # fmt: skip
        if (why := refusal(checker, answer)) is not None:
            failures.append(f"{what}: {why}")
    assert not failures, "\n".join(failures)
    key = f'odd"key\\$[0].{era}'
    create = message("create_context", {"metadata": {key: "v"}}, era)
    routing = await era_headers(http, server, era, "tools/call", "create_context")
    answer = await send(http, "POST", f"{server.url}/mcp", msgspec.json.encode(create),
                        {**JSON, **routing})  # fmt: skip
    created = answer.json["result"]["structuredContent"]["id"]
    body = message("list_contexts", {"metadata": {key: "v"}}, era)
    routing = await era_headers(http, server, era, "tools/call", "list_contexts")
    answer = await send(http, "POST", f"{server.url}/mcp", msgspec.json.encode(body),
                        {**JSON, **routing})  # fmt: skip
    found = answer.json["result"]["structuredContent"]["contexts"]
    assert [c["id"] for c in found] == [created]


# -- one key's request rate -------------------------------------------------------------------


async def test_a_rate_limited_key_gets_429_with_retry_after_on_mcp(
    aiohttp_client: Any, tmp_path: Path
) -> None:
    app = create_app(testing.settings(str(tmp_path / "ctx.db"), rate_limit=0.01, rate_burst=3))
    client: AppClient = await aiohttp_client(app)
    alice = ApiClient(client, app[appkeys.OPENAPI], "key-alice")
    await alice.wait_ready()
    hello = {"protocolVersion": SESSION, "capabilities": {}, "clientInfo": {"name": "n"}}
    init = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": hello}
    r = await alice.post("/mcp", init, headers=ACCEPT, expect=200)
    session = {**ACCEPT, "Mcp-Session-Id": r.headers["Mcp-Session-Id"]}
    ping = {"jsonrpc": "2.0", "id": 2, "method": "ping"}
    await alice.post("/mcp", ping, headers=session, expect=200)
    # One bucket per key, whichever door: the REST request takes the last token.
    await alice.get("/api/v1/contexts", expect=200)
    for method in ("POST", "GET", "DELETE"):
        r = await alice.request(method, "/mcp", json=ping if method == "POST" else None,
                                headers=session)  # fmt: skip
        assert r.status == 429, (method, r.body)
        assert int(r.headers["Retry-After"]) >= 1
        assert r.json["error"]["code"] == -32600
        assert "result" not in r.json
    await alice.get("/api/v1/contexts", expect=429)
    # Another key of the same tenant has its own bucket; so does another tenant's.
    for key in ("key-ann", "key-bob"):
        other = alice.as_key(key)
        await other.post("/mcp", init, headers=ACCEPT, expect=200)
    # A key that is not valid is 401 before it can take anyone's tokens.
    await alice.as_key("key-nobody").post("/mcp", ping, headers=session, expect=401)
