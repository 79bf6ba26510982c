"""Every status code the OpenAPI document lists is one the server really answers: for each
operation and each documented status, a request that gets exactly that status (and, through
``api.testing.ApiClient``, a body that matches the document). A status nobody can reach must
leave the document; a new one needs a way to reach it here.

500 is the exception: it is the documented answer to a bug, which no correct request reaches
(``tests/test_rest_input.py`` shows its shape). The MCP endpoint (``/mcp``) answers JSON-RPC, so
its statuses have a table of their own (``MCP``): one request per documented status.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

import eventstore as es
from api import appkeys, create_app, testing
from api.mcp import endpoint as mcp_endpoint
from api.testing import ApiClient
from projections.service import Contexts
from tests.support.clients import AppClient

V1 = "/api/v1"
CTX = f"{V1}/contexts"
UNKNOWN = "00000000-0000-4000-8000-000000000000"
STREAM, WS = f"{V1}/events/stream", f"{V1}/ws/{{id}}"
EXEMPT = {500}
BAD_SUBJECT = "bad-subject"
MCP_PATH = "/mcp"
JSON = {"Content-Type": "application/json"}
FOREIGN_ORIGIN = "http://evil.example"
METRICS_TOKEN = "metrics-secret"
TYPED = {"type": "msgpack", "data": "AQ=="}
CHECKPOINT = {"checkpoint_id": "c1", "checkpoint": TYPED, "metadata": TYPED}
WRITES = {
    "checkpoint_id": "c1",
    "task_id": "t1",
    "writes": [{"idx": 0, "channel": "c", "value": TYPED}],
}

# A request each operation accepts: (query suffix, body); {mid} is the context's message.
VALID: dict[tuple[str, str], tuple[str, Any]] = {
    ("GET", "/"): ("", None),
    ("GET", "/healthz"): ("", None),
    ("GET", "/readyz"): ("", None),
    ("GET", "/livez"): ("", None),
    ("GET", "/metrics"): ("", None),
    ("GET", "/openapi.json"): ("", None),
    ("GET", "/docs"): ("", None),
    ("GET", "/ui"): ("", None),
    ("GET", "/ui/assets/{name}"): ("", None),
    ("POST", CTX): ("", {}),
    ("GET", CTX): ("", None),
    ("GET", f"{CTX}/{{id}}"): ("", None),
    ("DELETE", f"{CTX}/{{id}}"): ("", {}),
    ("POST", f"{CTX}/{{id}}/messages"): ("", {"role": "user", "content": "x"}),
    ("GET", f"{CTX}/{{id}}/messages"): ("", None),
    ("PATCH", f"{CTX}/{{id}}/messages/{{message_id}}"): ("", {"content": "y"}),
    ("POST", f"{CTX}/{{id}}/messages/{{message_id}}/redact"): ("", {}),
    ("PATCH", f"{CTX}/{{id}}/metadata"): ("", {"a": 1}),
    ("GET", f"{CTX}/{{id}}/window"): ("", None),
    ("PUT", f"{CTX}/{{id}}/window"): ("", {"max_tokens": 10}),
    ("POST", f"{CTX}/{{id}}/window"): ("", {"max_tokens": 10}),
    ("POST", f"{CTX}/{{id}}/summaries"): ("", {"text": "s", "through_message_id": "{mid}"}),
    ("POST", f"{CTX}/{{id}}/rollback"): ("", {"to_version": 1}),
    ("POST", f"{CTX}/{{id}}/fork"): ("", {}),
    ("GET", f"{CTX}/{{id}}/events"): ("", None),
    ("GET", f"{CTX}/{{id}}/diff"): ("?from=1", None),
    ("GET", f"{CTX}/{{id}}/diff/parent"): ("", None),
    ("GET", f"{CTX}/{{id}}/lineage"): ("", None),
    ("POST", f"{CTX}/{{id}}/checkpoints"): ("", CHECKPOINT),
    ("POST", f"{CTX}/{{id}}/checkpoints/writes"): ("", WRITES),
    ("POST", f"{CTX}/{{id}}/checkpoints/remove"): ("", {"all": True}),
    ("GET", f"{V1}/events"): ("", None),
    ("GET", f"{V1}/search"): ("?q=m", None),
    ("GET", STREAM): ("", None),
    ("GET", WS): ("", None),
    ("POST", f"{V1}/mcp/contexts"): ("", {}),
    ("GET", f"{V1}/mcp/contexts/{{id}}"): ("", None),
    ("GET", f"{V1}/mcp/capabilities"): ("", None),
    ("POST", f"{V1}/subjects/{{subject}}/erase"): ("", None),
}
# Statuses only some operations can give, and how: (query suffix, body).
SPECIAL: dict[tuple[str, str, int], tuple[str, Any]] = {
    ("POST", f"{CTX}/{{id}}/messages", 409): ("", {"role": "user", "content": "x", "id": "{mid}"}),
    ("POST", f"{CTX}/{{id}}/rollback", 409): ("", {"to_version": 99}),
    ("POST", f"{CTX}/{{id}}/fork", 409): ("", {"at_version": 99}),
    ("GET", f"{CTX}/{{id}}/window", 422): ("?policy=last_n", None),
    ("POST", f"{CTX}/{{id}}/window", 422): ("", {"policy": "last_n"}),
    ("GET", f"{CTX}/{{id}}", 400): ("?version=zero", None),
    ("GET", f"{V1}/search", 404): (f"?q=m&context_id={UNKNOWN}", None),
    ("GET", f"{CTX}/{{id}}/diff/parent", 422): ("", None),  # the fresh context is no fork
}
PARENT_DIFF = f"{CTX}/{{id}}/diff/parent"
"""Answers about a fork: the fresh context is forked first, but for its 422 (not a fork)."""


def documented(doc: dict[str, Any]) -> list[tuple[str, str, int]]:
    """Every (method, path template, status) the document lists, but 500."""
    return sorted(
        (method.upper(), path, int(status))
        for path, ops in doc["paths"].items()
        for method, op in ops.items()
        for status in op["responses"]
        if int(status) not in EXEMPT
    )


def fill(template: str, cid: str, mid: str) -> str:
    # A subject over 256 characters is the one malformed subject.
    subject = "s" * 300 if mid == BAD_SUBJECT else "subject-1"
    path = template.replace("{id}", cid).replace("{message_id}", mid)
    asset = "missing.js" if mid == UNKNOWN else "app.js"  # the web view's files
    return path.replace("{subject}", subject).replace("{name}", asset)


def filled(body: Any, mid: str) -> Any:
    if isinstance(body, dict):
        return {k: (v.replace("{mid}", mid) if isinstance(v, str) else v) for k, v in body.items()}
    return body


async def fresh(api: ApiClient) -> tuple[str, str]:
    cid = (await api.post(CTX, {}, expect=201)).json["id"]
    r = await api.post(f"{CTX}/{cid}/messages", {"role": "user", "content": "m"}, expect=201)
    return cid, r.json["messages"][0]["id"]


async def slow_body(client: AppClient, method: str, path: str) -> int:
    """Send a request whose body never finishes; the status the server answers with."""
    reader, writer = await asyncio.open_connection(client.host, client.port)
    try:
        writer.write(
            f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nX-API-Key: key-alice\r\n"
            "Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{".encode()
        )
        await writer.drain()
        async with asyncio.timeout(10):
            return int((await reader.readline()).split()[1])
    finally:
        writer.close()


async def status_of(api: ApiClient, method: str, template: str, status: int) -> int:
    """The status a request meant to get ``status`` from this operation gets."""
    cid, mid = await fresh(api)
    if template == PARENT_DIFF and status != 422:
        cid = (await api.post(f"{CTX}/{cid}/fork", {}, expect=201)).json["id"]
    path = fill(template, cid, mid)
    suffix, body = SPECIAL.get((method, template, status), VALID[(method, template)])
    body = filled(body, mid)
    if template == WS:
        return await _websocket(api, path, status)
    if template == STREAM:
        return await _stream(api, path, status)
    send = api
    headers: dict[str, str] = {}
    data: bytes | None = None
    if template == "/metrics" and status != 401:
        headers["Authorization"] = f"Bearer {METRICS_TOKEN}"
    match status:
        case 304:
            headers["If-None-Match"] = (await api.get(path)).headers["ETag"]
        case 400 if "{subject}" in template:
            path = fill(template, cid, BAD_SUBJECT)
        case 400 if (method, template, status) not in SPECIAL:
            if body is None:
                suffix += ("&" if "?" in suffix else "?") + "bogus=1"
            else:
                body, data, headers = None, b"{", JSON
        case 401:
            send = api.as_key(None)
        case 403:
            headers["Origin"] = FOREIGN_ORIGIN
        case 404:
            path = fill(template, UNKNOWN, UNKNOWN)
        case 408:
            return await slow_body(api.client, method, path + suffix)
        case 412:
            headers["If-Match"] = '"999"'
        case 413:
            body, data, headers = None, b'{"a": "' + b"x" * 5000 + b'"}', JSON
        case 415:
            body, data, headers = None, b"{}", {"Content-Type": "text/plain"}
        case 422 if (method, template, status) not in SPECIAL:
            # The same Idempotency-Key with another request.
            key = {"Idempotency-Key": f"k-{uuid.uuid4()}"}
            first = await api.request(method, path + suffix, json=body, headers=key)
            assert first.status < 300, first.json
            headers = key
            body = (
                {"metadata": {"other": 1}}
                if template.endswith(("contexts", "fork"))
                else {"reason": "another"}
                if template.endswith(("redact", "{id}"))
                else None
            )
            data = b'{"role": "user", "content": "other"}' if body is None else None
            if template.endswith("metadata"):
                body, data = {"b": 2}, None
            elif template.endswith("window") and method == "PUT":
                body, data = {"max_tokens": 11}, None
            elif template.endswith("message_id}"):
                body, data = {"content": "other"}, None
            elif template.endswith("summaries"):
                body, data = {"text": "other", "through_message_id": mid}, None
            elif template.endswith("rollback"):
                body, data = {"to_version": 2}, None
            elif template.endswith("checkpoints"):
                body, data = {**CHECKPOINT, "checkpoint_id": "c2"}, None
            elif template.endswith("writes"):
                body, data = {**WRITES, "task_id": "t2"}, None
            elif template.endswith("remove"):
                body, data = {"checkpoints": [{"checkpoint_id": "c1"}]}, None
            if data is not None:
                headers = {**key, **JSON}
    r = await send.request(method, path + suffix, json=body, data=data, headers=headers)
    return r.status


async def _websocket(api: ApiClient, path: str, status: int) -> int:
    if status == 400:  # a plain GET, no Upgrade
        return (await api.get(path)).status
    key = {} if status == 401 else {"X-API-Key": "key-alice"}
    if status == 403:
        key["Origin"] = FOREIGN_ORIGIN
    if status == 404:
        path = fill(WS, UNKNOWN, UNKNOWN)
    try:
        async with api.client.ws_connect(path, headers=key) as ws:
            await ws.receive(timeout=10)
            return 101
    except aiohttp.WSServerHandshakeError as e:
        return e.status


async def _stream(api: ApiClient, path: str, status: int) -> int:
    key = {} if status == 401 else {"X-API-Key": "key-alice"}
    if status == 403:
        key["Origin"] = FOREIGN_ORIGIN
    suffix = "?after=nope" if status == 400 else ""
    async with api.client.get(path + suffix, headers=key) as r:
        return r.status


# -- the three servers the statuses need ------------------------------------------------------


@pytest.fixture
async def apis(
    aiohttp_client: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> dict[str, ApiClient]:
    """``main``: small body limit and body timeout; ``limited``: a used-up rate limit;
    ``starting``: a projector that never catches up, a store that fails, and room for one
    live connection."""

    async def connect(name: str, **settings: Any) -> ApiClient:
        app = create_app(testing.settings(str(tmp_path / f"{name}.db"), **settings))
        client: AppClient = await aiohttp_client(app)
        return ApiClient(client, app[appkeys.OPENAPI], "key-alice")

    main = await connect("main", max_body_bytes=4096, body_timeout=0.2, metrics_token=METRICS_TOKEN)
    await main.wait_ready()
    limited = await connect("limited", rate_limit=0.001, rate_burst=1)
    await limited.wait_ready()
    await limited.get(f"{V1}/events", expect=200)  # the one token there is

    real_start = Contexts.start
    never = asyncio.Event()

    async def stuck(self: Contexts, **_: Any) -> None:
        await never.wait()

    monkeypatch.setattr(Contexts, "start", stuck)
    # One live connection in all: an MCP event stream held open leaves none (503).
    starting = await connect("starting", shutdown_timeout=0.1, max_live=1)
    monkeypatch.setattr(Contexts, "start", real_start)
    app: web.Application = starting.client.app

    async def unavailable(*args: Any, **kwargs: Any) -> Any:
        raise es.StoreUnavailable("the disk is gone")

    store = app[appkeys.STORE]
    monkeypatch.setattr(store, "read_all", unavailable)
    monkeypatch.setattr(store, "head", unavailable)
    return {"main": main, "limited": limited, "starting": starting}


async def test_every_documented_status_is_reachable(
    apis: dict[str, ApiClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The "starting" server never catches up: MCP need not wait long to say so (503).
    monkeypatch.setattr(mcp_endpoint, "STARTUP_WAIT", 0.05)
    main = apis["main"]
    unreachable = []
    for method, template, status in documented(main.checker.doc):
        api = {429: apis["limited"], 503: apis["starting"]}.get(status, main)
        if template == MCP_PATH:
            got = await mcp_status_of(api, method, status)
        elif status in (429, 503):
            got = await _refused(api, method, template, status)
        else:
            got = await status_of(api, method, template, status)
        if got != status:
            unreachable.append(f"{method} {template}: documented {status}, got {got}")
    assert not unreachable, "\n".join(unreachable)


async def _refused(api: ApiClient, method: str, template: str, status: int) -> int:
    # Nothing else answers on these servers, so any request to the operation shows it.
    path = fill(template, UNKNOWN, UNKNOWN)
    suffix, body = VALID[(method, template)]
    if template == WS:
        return await _websocket(api, path, 101)
    if template == STREAM:
        return await _stream(api, path, 200)
    return (await api.request(method, path + suffix, json=filled(body, UNKNOWN))).status


# -- the MCP endpoint -------------------------------------------------------------------------

MCP_ACCEPT = {"Accept": "application/json, text/event-stream"}
HANDSHAKE = "2025-11-25"
INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": HANDSHAKE, "capabilities": {}, "clientInfo": {"name": "t"}},
}
TOOLS_LIST = {"jsonrpc": "2.0", "id": 2, "method": "tools/list", "params": {}}
INITIALIZED = {"jsonrpc": "2.0", "method": "notifications/initialized"}
STATELESS_CALL = {
    "jsonrpc": "2.0",
    "id": 3,
    "method": "tools/call",
    "params": {
        "name": "list_contexts",
        "arguments": {},
        "_meta": {
            "io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientCapabilities": {},
        },
    },
}
STATELESS_HEADERS = {
    "MCP-Protocol-Version": "2026-07-28",
    "Mcp-Method": "tools/call",
    "Mcp-Name": "list_contexts",
}


async def mcp_session(api: ApiClient) -> str:
    r = await api.post(MCP_PATH, INITIALIZE, headers=MCP_ACCEPT, expect=200)
    return r.headers["Mcp-Session-Id"]


async def mcp_status_of(api: ApiClient, method: str, status: int) -> int:
    """The status a request to /mcp meant to get ``status`` gets (each through ApiClient,
    so its body is checked against the document, but the event streams that never end)."""
    if status == 408:
        return await slow_body(api.client, method, MCP_PATH)
    if (method, status) == ("GET", 503):  # the server's one live connection is taken
        stream = {"X-API-Key": "key-alice", "Accept": "text/event-stream"}
        held, other = await mcp_session(api), await mcp_session(api)
        async with api.client.get(MCP_PATH, headers={**stream, "Mcp-Session-Id": held}) as first:
            assert first.status == 200
            return (await api.get(MCP_PATH, headers={**stream, "Mcp-Session-Id": other})).status
    if (method, status) in (("GET", 200), ("GET", 409)):
        headers = {"X-API-Key": "key-alice", "Accept": "text/event-stream"}
        headers["Mcp-Session-Id"] = await mcp_session(api)
        async with api.client.get(MCP_PATH, headers=headers) as first:
            if status == 200:
                return first.status
            return (await api.get(MCP_PATH, headers=headers)).status
    send = api
    body: Any = TOOLS_LIST if method == "POST" else None
    data: bytes | None = None
    headers = dict(MCP_ACCEPT)
    if method == "GET":
        headers["Accept"] = "text/event-stream"
    if status in (200, 202, 204, 405, 409, 429) or (method != "POST" and status == 406):
        headers["Mcp-Session-Id"] = await mcp_session(api) if status != 429 else "none"
    match method, status:
        case "POST", 200:
            body = INITIALIZE
        case "POST", 202:
            body = INITIALIZED
        case "POST", 400:
            body, data, headers = None, b"{", {**headers, **JSON}
        case "POST", 413:
            body, data, headers = None, b'{"a": "' + b"x" * 5000 + b'"}', {**headers, **JSON}
        case "POST", 415:
            body, data, headers = None, b"{}", {**headers, "Content-Type": "text/plain"}
        case "POST", 503:
            body, headers = STATELESS_CALL, {**headers, **STATELESS_HEADERS}
        case _, 401:
            send = api.as_key(None)
        case _, 403:
            headers["Origin"] = "https://attacker.example"
        case _, 404:
            headers["Mcp-Session-Id"] = "no-such-session"
        case _, 405:
            headers["MCP-Protocol-Version"] = "2026-07-28"
        case _, 406:
            headers["Accept"] = "text/plain"
    r = await send.request(method, MCP_PATH, json=body, data=data, headers=headers)
    return r.status
