"""Raw HTTP helpers for the MCP transport tests (``test_mcp_http``, ``test_mcp_stateless``):
a server on a loopback port, JSON-RPC messages, the stateless envelope and event streams."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiohttp
from multidict import CIMultiDictProxy

from api import create_app, testing
from tests.support.clients import AppClient

ALICE = {"X-API-Key": "key-alice"}
BOB = {"X-API-Key": "key-bob"}
ACCEPT = {"Accept": "application/json, text/event-stream"}
MODERN = "2026-07-28"
ENVELOPE = {
    "io.modelcontextprotocol/protocolVersion": MODERN,
    "io.modelcontextprotocol/clientCapabilities": {},
    "io.modelcontextprotocol/clientInfo": {"name": "raw", "version": "1"},
}


async def start(aiohttp_client: Any, tmp_path: Path, **settings: Any) -> AppClient:
    """The API (test keys) on a real loopback port, once its projector has caught up."""
    app = create_app(testing.settings(str(tmp_path / "ctx.db"), **settings))
    client: AppClient = await aiohttp_client(app)
    async with asyncio.timeout(10):
        while (await client.get("/healthz")).status != 200:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
    return client


async def post(
    client: AppClient, body: Any, headers: dict[str, str] | None = None, *, raw: bool = False
) -> tuple[int, CIMultiDictProxy[str], Any]:
    sent = {**ALICE, **ACCEPT, "Content-Type": "application/json", **(headers or {})}
    data = body if raw else json.dumps(body)
    async with client.post("/mcp", data=data, headers=sent) as r:
        text = await r.text()
        return r.status, r.headers, json.loads(text) if text else None


def request(method: str, params: dict[str, Any] | None = None, id_: Any = 1) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": id_, "method": method, "params": params or {}}


async def initialize(client: AppClient, version: str = "2025-11-25", **headers: str) -> str:
    params = {
        "protocolVersion": version,
        "capabilities": {},
        "clientInfo": {"name": "t", "version": "1"},
    }
    status, got, body = await post(client, request("initialize", params), headers)
    assert status == 200
    assert body["result"]["protocolVersion"] == version
    session = got["Mcp-Session-Id"]
    initialized = {"jsonrpc": "2.0", "method": "notifications/initialized"}
    status, _, body = await post(client, initialized, {"Mcp-Session-Id": session, **headers})
    assert (status, body) == (202, None)
    return session


def modern(
    method: str, params: dict[str, Any] | None = None, **headers: str
) -> tuple[Any, dict[str, str]]:
    body = request(method, {**(params or {}), "_meta": dict(ENVELOPE)})
    sent = {"MCP-Protocol-Version": MODERN, "Mcp-Method": method, **headers}
    return body, sent


async def next_event(stream: aiohttp.ClientResponse) -> Any:
    async with asyncio.timeout(10):
        data = None
        async for line in stream.content:
            if line.startswith(b"data: "):
                data = json.loads(line[6:])
            elif line == b"\n" and data is not None:
                return data
    raise AssertionError("the stream ended")
