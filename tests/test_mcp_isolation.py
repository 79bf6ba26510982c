"""Tenant isolation of the MCP endpoint (``/mcp``) on the real server, in both protocol eras
(a 2025-11-25 session, and stateless 2026-07-28 requests): the rows of ``tests/test_rest_isolation``
for MCP.

Another tenant's key finds nothing: a tool answers with the result ``isError: true`` it gives
for a context that does not exist, a resource read or a prompt with the JSON-RPC error it gives
for one — byte for byte the same once the id asked for is swapped for an unknown one. A
subscription to another tenant's context is refused as one to nothing, and its changes never
reach the subscriber. No key and a wrong key are 401 before anything is read. Listings and
searches never show another tenant's contexts; keys appear in no answer, no log, no event.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest

from api.mcp import resources, tools
from api.testing import KEYS
from tests.support.server_process import ServerProcess, serving

V1 = "/api/v1"
CTX = f"{V1}/contexts"
UNKNOWN = "00000000-0000-4000-8000-000000000000"
ALICE, ANN, BOB = "key-alice", "key-ann", "key-bob"
WRONG = "key-mallory-not-configured"
SECRETS = [k.key for k in KEYS] + [WRONG]
HANDSHAKE, MODERN = "2025-11-25", "2026-07-28"
ERAS = (HANDSHAKE, MODERN)
ENVELOPE = {
    "io.modelcontextprotocol/protocolVersion": MODERN,
    "io.modelcontextprotocol/clientCapabilities": {},
}
_NAMED = {"tools/call": "name", "prompts/get": "name", "resources/read": "uri"}


@dataclass(frozen=True)
class Row:
    """One MCP request: a method and its params ({id} and {mid} filled in). ``tool`` rows are
    ``tools/call`` of that tool; ``names_context``: another tenant then gets "not found"."""

    label: str
    method: str
    params: dict[str, Any] = field(default_factory=dict)
    names_context: bool = True
    eras: tuple[str, ...] = ERAS

    def __str__(self) -> str:
        return self.label


def tool(name: str, label: str = "", **arguments: Any) -> Row:
    scoped = "context_id" not in arguments
    params = {"name": name, "arguments": arguments}
    return Row(label or name, "tools/call", params, names_context=not scoped)


def read(suffix: str, label: str) -> Row:
    return Row(label, "resources/read", {"uri": "ctxlog://contexts/{id}" + suffix})


CONTEXT_ROWS = [
    tool("append_messages", context_id="{id}", messages=[{"role": "user", "content": "x"}]),
    tool("get_context", context_id="{id}"),
    tool("get_context", "get_context@1", context_id="{id}", version=1),
    tool("get_window", context_id="{id}", max_tokens=100),
    tool("get_window", "get_window+record", context_id="{id}", record=True),
    tool("get_history", context_id="{id}"),
    tool("rollback", context_id="{id}", to_version=1),
    tool("fork", context_id="{id}"),
    tool("diff", context_id="{id}", from_version=1),
    tool("add_summary", context_id="{id}", text="s", through_message_id="{mid}"),
    tool("edit_message", context_id="{id}", message_id="{mid}", content="y"),
    tool("redact_message", context_id="{id}", message_id="{mid}"),
    tool("search_messages", "search_messages in one", context_id="{id}", query="secret"),
    read("", "context"),
    read("@1", "context-version"),
    read("/window", "context-window"),
    read("/events", "context-events"),
    read("/events?from_version=1&limit=5", "context-events?page"),
    Row(
        "continue_conversation", "prompts/get",
        {"name": "continue_conversation", "arguments": {"context_id": "{id}"}},
    ),
    Row("subscribe", "resources/subscribe", {"uri": "ctxlog://contexts/{id}"}, eras=(HANDSHAKE,)),
]  # fmt: skip
SCOPED_ROWS = [
    tool("create_context", metadata={"owner": "x"}),
    tool("list_contexts"),
    tool("search_messages", query="secret"),
    Row("tools/list", "tools/list", names_context=False),
    Row("resources/list", "resources/list", names_context=False),
    Row("templates", "resources/templates/list", names_context=False),
    Row("prompts/list", "prompts/list", names_context=False),
    Row("ping", "ping", names_context=False, eras=(HANDSHAKE,)),
    Row("discover", "server/discover", names_context=False, eras=(MODERN,)),
    Row(
        "listen", "subscriptions/listen",
        {"notifications": {"resourceSubscriptions": ["ctxlog://contexts/{id}"]}},
        names_context=False, eras=(MODERN,),
    ),
]  # fmt: skip
ROWS = CONTEXT_ROWS + SCOPED_ROWS


def by_era(rows: list[Row]) -> list[Any]:
    return [pytest.param(r, era, id=f"{era}-{r}") for r in rows for era in r.eras]


# -- the server and helpers -------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    db = tmp_path_factory.mktemp("isolation-mcp") / "isolation.db"
    # Each case opens a session of its own and leaves it: more than a key's default 100.
    with serving(db, env={"CTXLOG_MCP_SESSIONS_PER_KEY": "1000"}, secrets=SECRETS) as proc:
        yield proc
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        rows = conn.execute("SELECT data, metadata FROM events").fetchall()
    finally:
        conn.close()
    stored = b"".join(d + m for d, m in rows)
    for secret in SECRETS:
        assert secret.encode() not in stored, "an API key was stored in an event"


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        yield session


@dataclass
class Answer:
    status: int
    headers: Any
    raw: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.raw)


def key_headers(key: str | None, *, bearer: bool = False) -> dict[str, str]:
    if key is None:
        return {}
    return {"Authorization": f"Bearer {key}"} if bearer else {"X-API-Key": key}


async def rpc(
    http: aiohttp.ClientSession,
    server: ServerProcess,
    era: str,
    method: str,
    params: dict[str, Any],
    headers: dict[str, str],
    mcp_session: str | None = None,
) -> Answer:
    """One request in ``era`` (a handshake-era one in ``mcp_session``), read whole."""
    sent = {"Accept": "application/json, text/event-stream", **headers}
    if era == MODERN:
        params = {**params, "_meta": ENVELOPE}
        sent.update({"MCP-Protocol-Version": MODERN, "Mcp-Method": method})
        if (name := params.get(_NAMED.get(method, ""))) is not None:
            sent["Mcp-Name"] = name
    else:
        sent["MCP-Protocol-Version"] = HANDSHAKE
        if mcp_session is not None:
            sent["Mcp-Session-Id"] = mcp_session
    body = {"jsonrpc": "2.0", "id": 7, "method": method, "params": params}
    async with http.post(f"{server.url}/mcp", json=body, headers=sent) as r:
        answer = Answer(r.status, r.headers, await _body(r))
    for secret in SECRETS:
        assert secret.encode() not in answer.raw, f"{method}: a key is in the answer"
    return answer


async def _body(r: aiohttp.ClientResponse) -> bytes:
    if r.content_type != "text/event-stream":
        return await r.read()
    # A listen stream never ends by itself: its first message stands for it.
    async with asyncio.timeout(10):
        async for line in r.content:
            if line.startswith(b"data: "):
                return line[6:]
    raise AssertionError("the stream ended")


async def open_session(http: aiohttp.ClientSession, server: ServerProcess, key: str) -> str:
    """A 2025-11-25 session of ``key``, initialized."""
    params = {"protocolVersion": HANDSHAKE, "capabilities": {}, "clientInfo": {"name": "t"}}
    body = {"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": params}
    headers = {**key_headers(key), "Accept": "application/json, text/event-stream"}
    async with http.post(f"{server.url}/mcp", json=body, headers=headers) as r:
        assert r.status == 200, await r.text()
        session = r.headers["Mcp-Session-Id"]
    done = {"jsonrpc": "2.0", "method": "notifications/initialized"}
    headers["Mcp-Session-Id"] = session
    async with http.post(f"{server.url}/mcp", json=done, headers=headers) as r:
        assert r.status == 202
    return session


async def rest(http: aiohttp.ClientSession, server: ServerProcess, path: str, key: str,
               body: Any) -> Any:  # fmt: skip
    async with http.post(server.url + path, json=body, headers=key_headers(key)) as r:
        assert r.status == 201, await r.text()
        return await r.json()


async def alices_context(http: aiohttp.ClientSession, server: ServerProcess) -> tuple[str, str]:
    """A context of tenant-a holding one message: (context id, message id)."""
    created = await rest(http, server, CTX, ALICE, {"metadata": {"owner": "alice-only"}})
    cid = created["id"]
    appended = await rest(http, server, f"{CTX}/{cid}/messages", ALICE,
                          {"role": "user", "content": "alice's secret"})  # fmt: skip
    return cid, appended["messages"][0]["id"]


def fill(params: dict[str, Any], cid: str, mid: str) -> dict[str, Any]:
    text = json.dumps(params).replace("{id}", cid).replace("{mid}", mid)
    filled: dict[str, Any] = json.loads(text)
    return filled


async def as_key(
    http: aiohttp.ClientSession, server: ServerProcess, era: str, key: str
) -> dict[str, Any]:
    """What ``rpc`` needs to send as ``key`` in ``era`` (a fresh session when it has them)."""
    session = await open_session(http, server, key) if era == HANDSHAKE else None
    return {"headers": key_headers(key), "mcp_session": session}


# -- the matrix -------------------------------------------------------------------------------


def test_the_matrix_covers_every_tool_and_resource() -> None:
    called = {r.params["name"] for r in ROWS if r.method == "tools/call"}
    assert called == set(tools.TOOLS), "tools without a row in the isolation matrix"
    read_rows = {r.label.partition("?")[0] for r in ROWS if r.method == "resources/read"}
    assert read_rows == {t["name"] for t in resources.TEMPLATES}


@pytest.mark.parametrize(("row", "era"), by_era(CONTEXT_ROWS))
async def test_another_tenants_context_is_exactly_not_found(
    row: Row, era: str, server: ServerProcess, http: aiohttp.ClientSession
) -> None:
    cid, mid = await alices_context(http, server)
    bob = await as_key(http, server, era, BOB)
    before = server.head()
    theirs = await rpc(http, server, era, row.method, fill(row.params, cid, mid), **bob)
    unknown = await rpc(http, server, era, row.method, fill(row.params, UNKNOWN, mid), **bob)
    # Told apart from a context that does not exist in no way at all (the id asked for is
    # the only difference, and it is the caller's own).
    assert theirs.status == unknown.status
    assert theirs.raw.replace(cid.encode(), UNKNOWN.encode()) == unknown.raw
    assert b"alice" not in theirs.raw
    answer = theirs.json
    if row.method == "tools/call":
        assert theirs.status == 200
        result = answer["result"]
        assert result["isError"] is True
        assert result["structuredContent"]["error"]["code"] == "not_found"
    else:
        assert theirs.status == (200 if era == HANDSHAKE else 400), theirs.raw
        assert answer["error"]["code"] in (-32002, -32602)
        assert "result" not in answer
    assert server.head() == before, "another tenant's request wrote to the log"
    # The row is a good request: the owner's tenant (another key of it) gets an answer.
    ann = await as_key(http, server, era, ANN)
    mine = await rpc(http, server, era, row.method, fill(row.params, cid, mid), **ann)
    assert mine.status == 200, mine.raw
    assert "error" not in mine.json
    assert mine.json["result"].get("isError") is not True, mine.raw


@pytest.mark.parametrize("key", [None, WRONG, "bearer:" + WRONG, "bearer:"])
@pytest.mark.parametrize(("row", "era"), by_era(ROWS))
async def test_no_key_or_a_wrong_key_is_401(
    row: Row, era: str, key: str | None, server: ServerProcess, http: aiohttp.ClientSession
) -> None:
    cid, mid = await alices_context(http, server)
    # Even with a live session of the owner's: the key is checked before the session.
    session = await open_session(http, server, ALICE) if era == HANDSHAKE else None
    bearer = key is not None and key.startswith("bearer:")
    headers = key_headers(None if key is None else key.removeprefix("bearer:"), bearer=bearer)
    before = server.head()
    answer = await rpc(http, server, era, row.method, fill(row.params, cid, mid), headers, session)
    assert answer.status == 401, answer.raw
    assert answer.headers["WWW-Authenticate"].startswith("Bearer")
    assert answer.json["error"]["code"] == -32600
    assert b"alice" not in answer.raw
    assert cid.encode() not in answer.raw
    assert server.head() == before


@pytest.mark.parametrize("method", ["GET", "DELETE"])
async def test_a_session_is_its_keys_alone(
    method: str, server: ServerProcess, http: aiohttp.ClientSession
) -> None:
    alices = await open_session(http, server, ALICE)
    base = {"Accept": "text/event-stream", "MCP-Protocol-Version": HANDSHAKE}
    for key, bearer, want in ((None, False, 401), (WRONG, False, 401), (WRONG, True, 401),
                              (BOB, False, 404), (ANN, False, 404)):  # fmt: skip
        headers = {**base, **key_headers(key, bearer=bearer)}
        raws = []
        for session in (alices, "no-such-session"):
            headers["Mcp-Session-Id"] = session
            async with http.request(method, f"{server.url}/mcp", headers=headers) as r:
                raws.append(await r.read())
            assert r.status == want, (key, session, raws[-1])
        # Another key's session is told apart from none at all in no way.
        assert raws[0] == raws[1]
        assert alices.encode() not in raws[0]
    # A request in Alice's session with Bob's key is refused as if it named nothing, too.
    answer = await rpc(http, server, HANDSHAKE, "tools/list", {}, key_headers(BOB), alices)
    assert answer.status == 404
    # ... and the session is still Alice's.
    answer = await rpc(http, server, HANDSHAKE, "tools/list", {}, key_headers(ALICE), alices)
    assert answer.status == 200


# -- what a tenant sees -----------------------------------------------------------------------


@pytest.mark.parametrize("era", ERAS)
async def test_listings_and_searches_never_show_another_tenant(
    era: str, server: ServerProcess, http: aiohttp.ClientSession
) -> None:
    cid, _ = await alices_context(http, server)
    bob = await as_key(http, server, era, BOB)
    mine = await rpc(http, server, era, "tools/call",
                     {"name": "create_context", "arguments": {"metadata": {"t": "secret"}}},
                     **bob)  # fmt: skip
    bob_cid = mine.json["result"]["structuredContent"]["id"]
    await rpc(http, server, era, "tools/call", {"name": "append_messages", "arguments": {
        "context_id": bob_cid, "messages": [{"role": "user", "content": "bob's secret"}]}},
        **bob)  # fmt: skip
    alices_only = {"metadata": {"owner": "alice-only"}}
    calls = [
        ("tools/call", {"name": "list_contexts", "arguments": {}}),
        ("tools/call", {"name": "list_contexts", "arguments": {"limit": 1000}}),
        ("tools/call", {"name": "list_contexts", "arguments": alices_only}),
        ("tools/call", {"name": "search_messages", "arguments": {"query": "secret"}}),
        ("tools/call", {"name": "search_messages", "arguments": {"query": "alice"}}),
        ("tools/call", {"name": "search_messages", "arguments": {"query": "secret", "limit": 100}}),
        ("resources/list", {}),
    ]  # fmt: skip
    for method, params in calls:
        answer = await rpc(http, server, era, method, params, **bob)
        assert answer.status == 200, answer.raw
        assert cid.encode() not in answer.raw, params
        assert b"alice" not in answer.raw, params
        result = answer.json["result"]
        assert result.get("isError") is not True, answer.raw
        found = json.dumps(result)
        assert bob_cid in found or "alice" in json.dumps(params), params
    # Alice's own search does find hers: the query is one that matches.
    alice = await as_key(http, server, era, ALICE)
    search = {"name": "search_messages", "arguments": {"query": "secret", "context_id": cid}}
    answer = await rpc(http, server, era, "tools/call", search, **alice)
    assert cid.encode() in answer.raw
    assert bob_cid.encode() not in answer.raw


async def next_update(stream: aiohttp.ClientResponse) -> dict[str, Any]:
    """The next ``notifications/resources/*`` message on an MCP event stream."""
    async with asyncio.timeout(10):
        async for line in stream.content:
            if line.startswith(b"data: "):
                message: dict[str, Any] = json.loads(line[6:])
                if message.get("method", "").startswith("notifications/resources/"):
                    return message
    raise AssertionError("the stream ended")


@pytest.mark.parametrize("era", ERAS)
async def test_a_subscription_never_carries_another_tenants_changes(
    era: str, server: ServerProcess, http: aiohttp.ClientSession
) -> None:
    cid, _ = await alices_context(http, server)
    bobs = (await rest(http, server, CTX, BOB, {}))["id"]
    alice_uri, bob_uri = f"ctxlog://contexts/{cid}", f"ctxlog://contexts/{bobs}"
    unknown_uri = f"ctxlog://contexts/{UNKNOWN}"
    headers = {"Accept": "application/json, text/event-stream", "X-API-Key": BOB}
    if era == MODERN:
        wanted = {"resourceSubscriptions": [alice_uri, unknown_uri, bob_uri],
                  "resourcesListChanged": True}  # fmt: skip
        params = {"notifications": wanted, "_meta": ENVELOPE}
        body = {"jsonrpc": "2.0", "id": 9, "method": "subscriptions/listen", "params": params}
        headers.update({"MCP-Protocol-Version": MODERN, "Mcp-Method": "subscriptions/listen"})
    else:
        session = await open_session(http, server, BOB)
        for uri in (alice_uri, unknown_uri):
            answer = await rpc(http, server, era, "resources/subscribe", {"uri": uri},
                               key_headers(BOB), session)  # fmt: skip
            assert answer.json["error"]["code"] == -32002
        answer = await rpc(http, server, era, "resources/subscribe", {"uri": bob_uri},
                           key_headers(BOB), session)  # fmt: skip
        assert answer.json["result"] == {}
        headers.update({"Mcp-Session-Id": session, "MCP-Protocol-Version": HANDSHAKE})
    opened = (
        http.post(f"{server.url}/mcp", json=body, headers=headers)
        if era == MODERN
        else http.get(f"{server.url}/mcp", headers=headers)
    )
    async with opened as stream:
        assert stream.status == 200
        if era == MODERN:
            async with asyncio.timeout(10):
                while not (line := await stream.content.readline()).startswith(b"data: "):
                    pass
            ack = json.loads(line[6:])["params"]["notifications"]
            # Alice's context is left out exactly as a context that does not exist is.
            assert ack["resourceSubscriptions"] == [bob_uri]
        # Alice's changes (a new message, a new context) come first in the log; Bob's own
        # change after them is then the first thing his stream may carry.
        await rest(http, server, f"{CTX}/{cid}/messages", ALICE, {"role": "user", "content": "a"})
        await rest(http, server, CTX, ALICE, {})
        await rest(http, server, f"{CTX}/{bobs}/messages", BOB, {"role": "user", "content": "b"})
        first = await next_update(stream)
    assert first["method"] == "notifications/resources/updated", first
    assert first["params"]["uri"] == bob_uri
