"""Tenant isolation on the real server, endpoint by endpoint: another tenant's key finds
nothing (404, exactly as for an id that does not exist; a WebSocket closes 1008), no key and a
wrong key are 401, and nothing of one tenant shows in another's listings, audits or streams.
Keys never appear in the server's log, in stored events or in any answer.

``ROWS`` is the matrix: one row per endpoint (REST, WebSocket, SSE); a test checks that every
documented operation under /api/ has a row, so a new endpoint is one row away from covered.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import msgspec
import pytest
from aiohttp import WSMsgType

from api.testing import KEYS, Checker
from tests.support.server_process import ServerProcess, serving

V1 = "/api/v1"
CTX = f"{V1}/contexts"
UNKNOWN = "00000000-0000-4000-8000-000000000000"
ALICE, ANN, BOB = "key-alice", "key-ann", "key-bob"
SUBJECT = "subject-alice"
WRONG = "key-mallory-not-configured"
SECRETS = [k.key for k in KEYS] + [WRONG]
TYPED = {"type": "msgpack", "data": "AQ=="}
CHECKPOINT = {"checkpoint_id": "c1", "checkpoint": TYPED, "metadata": TYPED}
WRITES = {
    "checkpoint_id": "c1",
    "task_id": "t1",
    "writes": [{"idx": 0, "channel": "c", "value": TYPED}],
}
EXCLUDED_PREFIXES = ("/mcp",)
"""The MCP endpoint (``/mcp``) has its rows in ``tests/test_mcp_isolation.py``: its answers
are JSON-RPC, not HTTP statuses. (The REST views under /api/v1/mcp/ are in this matrix.)"""


@dataclass(frozen=True)
class Row:
    """One endpoint: ``kind`` http, ws or sse; ``path`` with {ctx}, {id} and {mid}; whether it
    names one context (another tenant then gets 404) or is scoped to the caller's tenant."""

    method: str
    path: str
    body: Any = None
    kind: str = "http"
    names_context: bool = True

    @property
    def template(self) -> str:
        path = self.path.partition("?")[0].replace("{ctx}", f"{CTX}/{{id}}")
        return path.replace("{mid}", "{message_id}")

    def __str__(self) -> str:
        return f"{self.kind}:{self.method} {self.path}"


ROWS = [
    Row("GET", "{ctx}"),
    Row("GET", "{ctx}?version=1"),
    Row("DELETE", "{ctx}"),
    Row("POST", "{ctx}/messages", {"role": "user", "content": "x"}),
    Row("GET", "{ctx}/messages?direction=backward"),
    Row("GET", "{ctx}/messages?version=1"),
    Row("PATCH", "{ctx}/messages/{mid}", {"content": "y"}),
    Row("POST", "{ctx}/messages/{mid}/redact", {}),
    Row("PATCH", "{ctx}/metadata", {"a": 1}),
    Row("GET", "{ctx}/window"),
    Row("POST", "{ctx}/window", {"max_tokens": 10}),
    Row("PUT", "{ctx}/window", {"max_tokens": 10}),
    Row("POST", "{ctx}/summaries", {"text": "s", "through_message_id": "{mid}"}),
    Row("POST", "{ctx}/rollback", {"to_version": 1}),
    Row("POST", "{ctx}/fork", {}),
    Row("GET", "{ctx}/events"),
    Row("GET", "{ctx}/diff?from=1"),
    Row("GET", "{ctx}/diff/parent"),
    Row("GET", f"{V1}/search?q=secret&context_id={{id}}"),
    Row("GET", "{ctx}/lineage"),
    Row("POST", "{ctx}/checkpoints", CHECKPOINT),
    Row("POST", "{ctx}/checkpoints/writes", WRITES),
    Row("POST", "{ctx}/checkpoints/remove", {"all": True}),
    Row("GET", f"{V1}/mcp/contexts/{{id}}"),
    Row("GET", f"{V1}/ws/{{id}}", kind="ws"),
    Row("POST", CTX, {}, names_context=False),
    Row("GET", CTX, names_context=False),
    Row("GET", f"{V1}/events", names_context=False),
    Row("GET", f"{V1}/search?q=secret", names_context=False),
    Row("GET", f"{V1}/events/stream", kind="sse", names_context=False),
    Row("POST", f"{V1}/mcp/contexts", {}, names_context=False),
    Row("GET", f"{V1}/mcp/capabilities", names_context=False),
    Row("POST", f"{V1}/subjects/{{subject}}/erase", names_context=False),
]
NAMING = [r for r in ROWS if r.names_context]


# -- the server and helpers -------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    db = tmp_path_factory.mktemp("isolation") / "isolation.db"
    with serving(db, secrets=SECRETS) as proc:
        yield proc
    # Nor is any stored: not in an event's data, nor in its metadata.
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        rows = conn.execute("SELECT data, metadata, actor, tenant FROM events").fetchall()
    finally:
        conn.close()
    assert rows
    stored = b"".join(d + m + (a or "").encode() + (t or "").encode() for d, m, a, t in rows)
    for secret in SECRETS:
        assert secret.encode() not in stored, "an API key was stored in an event"


async def call(
    session: aiohttp.ClientSession,
    server: ServerProcess,
    method: str,
    path: str,
    key: str,
    body: Any = None,
    *,
    bearer: bool = False,
) -> tuple[int, Any, bytes]:
    headers = {"Authorization": f"Bearer {key}"} if bearer else {"X-API-Key": key} if key else {}
    async with session.request(method, server.url + path, json=body, headers=headers) as r:
        raw = await r.read()
        parsed = json.loads(raw) if r.content_type == "application/json" else None
        return r.status, parsed, raw


async def alices_context(session: aiohttp.ClientSession, server: ServerProcess) -> tuple[str, str]:
    """A context of tenant-a with a message; (context id, message id)."""
    status, created, _ = await call(
        session, server, "POST", CTX, ALICE, {"metadata": {"owner": "alice-only"}}
    )
    assert status == 201
    cid = created["id"]
    status, appended, _ = await call(
        session, server, "POST", f"{CTX}/{cid}/messages", ALICE,
        {"role": "user", "content": "alice's secret"},
    )  # fmt: skip
    assert status == 201
    return cid, appended["messages"][0]["id"]


def fill(row: Row, cid: str, mid: str) -> tuple[str, Any]:
    path = row.path.replace("{ctx}", f"{CTX}/{cid}").replace("{id}", cid).replace("{mid}", mid)
    path = path.replace("{subject}", SUBJECT)
    body = row.body
    if body is not None:
        body = msgspec.json.decode(msgspec.json.encode(body).replace(b"{mid}", mid.encode()))
    return path, body


async def ws_outcome(
    session: aiohttp.ClientSession, server: ServerProcess, path: str, key: str | None
) -> tuple[str, int | None]:
    """("refused", HTTP status) at the handshake, or ("closed", code) / ("open", None)."""
    headers = {"X-API-Key": key} if key else {}
    try:
        ws = await session.ws_connect(server.ws_url + path, headers=headers)
    except aiohttp.WSServerHandshakeError as e:
        return "refused", e.status
    try:
        msg = await ws.receive(timeout=10)
        if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSED, WSMsgType.CLOSING):
            return "closed", ws.close_code
        return "open", None
    finally:
        await ws.close()


# -- the matrix -------------------------------------------------------------------------------


def test_the_matrix_covers_every_endpoint(checker: Checker) -> None:
    documented = {
        (method.upper(), path)
        for path, ops in checker.doc["paths"].items()
        for method in ops
        if path.startswith("/api/") and not path.startswith(EXCLUDED_PREFIXES)
    }
    covered = {(row.method, row.template) for row in ROWS}
    assert documented - covered == set(), "endpoints without a row in the isolation matrix"
    assert covered - documented == set(), "rows for endpoints that do not exist"


@pytest.mark.parametrize("row", NAMING, ids=str)
async def test_another_tenants_context_is_exactly_a_404(
    row: Row, server: ServerProcess, checker: Checker, session: aiohttp.ClientSession
) -> None:
    cid, mid = await alices_context(session, server)
    path, body = fill(row, cid, mid)
    nothing, _ = fill(row, UNKNOWN, mid)
    before = server.head()
    if row.kind == "ws":
        assert await ws_outcome(session, server, path, BOB) == ("closed", 1008)
        assert await ws_outcome(session, server, nothing, BOB) == ("closed", 1008)
    else:
        status, theirs, raw = await call(session, server, row.method, path, BOB, body)
        assert status == 404, raw
        checker.check(row.method, path.partition("?")[0], status, theirs, "application/json")
        _, unknown, _ = await call(session, server, row.method, nothing, BOB, body)
        # Told apart from a context that does not exist in no way at all.
        assert theirs["error"] == unknown["error"]
        assert cid.encode() not in raw
        assert b"alice" not in raw
    assert server.head() == before, "another tenant's request wrote to the log"
    # The owner's tenant (another key of it) still reaches it.
    status, _, _ = await call(session, server, "GET", f"{CTX}/{cid}", ANN)
    assert status == 200


@pytest.mark.parametrize("key", [None, WRONG, "bearer:" + WRONG, "bearer:"])
@pytest.mark.parametrize("row", ROWS, ids=str)
async def test_no_key_or_a_wrong_key_is_401(
    row: Row, key: str | None, server: ServerProcess, checker: Checker,
    session: aiohttp.ClientSession,
) -> None:  # fmt: skip
    cid, mid = await alices_context(session, server)
    path, body = fill(row, cid, mid)
    before = server.head()
    if row.kind == "ws":
        sent = None if key is None or key.startswith("bearer:") else key
        assert await ws_outcome(session, server, path, sent) == ("refused", 401)
    else:
        bearer = key is not None and key.startswith("bearer:")
        sent = (key or "").removeprefix("bearer:")
        status, answer, raw = await call(
            session, server, row.method, path, sent, body, bearer=bearer
        )
        assert status == 401, raw
        assert answer["error"]["code"] == "unauthorized"
        checker.check(row.method, path.partition("?")[0], status, answer, "application/json")
        assert WRONG.encode() not in raw
    assert server.head() == before


# -- what a tenant-scoped endpoint shows ------------------------------------------------------


async def test_listings_and_audit_never_show_another_tenant(
    server: ServerProcess, session: aiohttp.ClientSession
) -> None:
    cid, _ = await alices_context(session, server)
    _, bobs, _ = await call(session, server, "POST", CTX, BOB, {"metadata": {"owner": "bob"}})
    bob_cid = bobs["id"]
    queries = [
        f"{V1}/events",
        f"{V1}/events?after=0&limit=1000",
        f"{V1}/events?context_id={cid}",
        f"{V1}/events?actor=alice",
        f"{V1}/events?type=context.created,message.appended",
        f"{V1}/events?since=2000-01-01T00:00:00Z",
        f"{CTX}",
        f"{CTX}?metadata.owner=alice-only",
        f"{CTX}?limit=1000",
        f"{V1}/search?q=secret",
        f"{V1}/search?q=alice*",
    ]
    for query in queries:
        status, answer, raw = await call(session, server, "GET", query, BOB)
        assert status == 200, (query, raw)
        assert cid.encode() not in raw, query
        assert b"alice" not in raw, query
        items = answer.get("events", answer.get("contexts", answer.get("hits")))
        assert all((i.get("context_id") or i.get("id")) == bob_cid for i in items), query
    # The lineage of a fork shows no fork made by another tenant... which cannot exist: a
    # fork needs the parent to be visible.
    status, _, _ = await call(session, server, "POST", f"{CTX}/{cid}/fork", BOB, {})
    assert status == 404


async def test_an_event_stream_shows_only_the_callers_tenant(
    server: ServerProcess, session: aiohttp.ClientSession
) -> None:
    cid, _ = await alices_context(session, server)
    url = f"{server.url}{V1}/events/stream?after=0"
    async with session.get(url, headers={"X-API-Key": BOB}) as stream:
        assert stream.status == 200
        await call(session, server, "POST", f"{CTX}/{cid}/messages", ALICE,
                   {"role": "user", "content": "alice only"})  # fmt: skip
        _, bobs, _ = await call(session, server, "POST", CTX, BOB, {})
        # Bob's own event comes after Alice's in the log; everything before it is on the
        # stream by then, so what arrived up to it is all Bob will ever see of that stretch.
        seen: list[dict[str, Any]] = []
        async with asyncio.timeout(10):
            while bobs["id"] not in {e["context_id"] for e in seen}:
                line = (await stream.content.readline()).decode()
                if line.startswith("data: "):
                    seen.append(json.loads(line[6:]))
    assert seen
    assert all(e["metadata"].get("tenant") is None for e in seen)
    assert {e["context_id"] for e in seen}.isdisjoint({cid})
    assert all(e["actor"] == "bob" for e in seen)
    url = f"{server.url}{V1}/events/stream?after=0&context_id={cid}"
    async with session.get(url, headers={"X-API-Key": BOB}) as stream:
        assert stream.status == 200
        _, more, _ = await call(session, server, "POST", CTX, BOB, {})
        # The filter names Alice's context: Bob's stream carries nothing, not even his own.
        async with asyncio.timeout(10):
            first = (await stream.content.readline()).decode()
        assert first.startswith(("retry:", ":")), first
        assert more["id"]


async def test_a_websocket_of_one_tenant_never_carries_another_tenants_events(
    server: ServerProcess, session: aiohttp.ClientSession
) -> None:
    cid, _ = await alices_context(session, server)
    async with session.ws_connect(
        f"{server.ws_url}{V1}/ws/{cid}", headers={"X-API-Key": ANN}
    ) as ws:
        first = json.loads((await ws.receive(timeout=10)).data)
        assert first["context"]["id"] == cid
        # Bob appending to "this" id is a 404 for him, and nothing reaches Ann's socket but
        # her own tenant's next change.
        status, _, _ = await call(session, server, "POST", f"{CTX}/{cid}/messages", BOB,
                                  {"role": "user", "content": "bob's"})  # fmt: skip
        assert status == 404
        await call(session, server, "POST", f"{CTX}/{cid}/messages", ALICE,
                   {"role": "user", "content": "alice's next"})  # fmt: skip
        event = json.loads((await ws.receive(timeout=10)).data)
        assert event["event"]["data"]["content"] == "alice's next"


async def test_erasing_a_subject_erases_nothing_of_another_tenant(
    server: ServerProcess, session: aiohttp.ClientSession
) -> None:
    cid, _ = await alices_context(session, server)
    status, _, _ = await call(
        session, server, "POST", f"{CTX}/{cid}/messages", ALICE,
        {"role": "user", "content": "about alice", "metadata": {"subject": SUBJECT}},
    )  # fmt: skip
    assert status == 201
    status, erased, raw = await call(session, server, "POST", f"{V1}/subjects/{SUBJECT}/erase", BOB)
    assert status == 200, raw
    assert erased["contexts"] in (0, [])
    assert cid.encode() not in raw
    _, context, _ = await call(session, server, "GET", f"{CTX}/{cid}", ANN)
    assert [m["content"] for m in context["messages"]][-1] == "about alice"


async def test_answers_never_carry_a_key(
    server: ServerProcess, session: aiohttp.ClientSession
) -> None:
    cid, _ = await alices_context(session, server)
    for key in (ALICE, BOB, WRONG, ""):
        for method, path, body in (
            ("GET", f"{CTX}/{cid}", None),
            ("GET", f"{CTX}/{cid}/events", None),
            ("GET", f"{V1}/events?after=0&limit=1000", None),
            ("POST", f"{CTX}/{cid}/messages", {"role": "nobody"}),
            ("GET", f"{CTX}/not-a-uuid", None),
        ):
            _, _, raw = await call(session, server, method, path, key, body)
            for secret in SECRETS:
                assert secret.encode() not in raw, (method, path)
