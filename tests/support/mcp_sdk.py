"""ctxlog's MCP endpoint driven by the official MCP client over Streamable HTTP."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from api import appkeys, create_app, testing
from api.testing import ApiClient
from tests.support.clients import AppClient


async def serve(aiohttp_client: Any, tmp_path: Path) -> tuple[str, ApiClient]:
    """A server on a fresh database: its ``/mcp`` URL, and a REST client of the same key."""
    app = create_app(testing.settings(str(tmp_path / "ctx.db")))
    rest: AppClient = await aiohttp_client(app)
    api = ApiClient(rest, app[appkeys.OPENAPI], "key-alice")
    await api.wait_ready()
    return str(rest.make_url("/mcp")), api


@contextlib.asynccontextmanager
async def connected(url: str) -> AsyncIterator[Client]:
    """The official client, connected to ``url`` with the test key."""
    async with (
        httpx2.AsyncClient(headers={"X-API-Key": "key-alice"}, timeout=30) as http,
        Client(streamable_http_client(url, http_client=http), mode="auto") as client,
    ):
        yield client


async def call(client: Client, name: str, **arguments: Any) -> Any:
    """A tool's structured result; AssertionError if the tool answered an error."""
    result = await client.call_tool(name, arguments)
    assert not result.is_error, result.content
    return result.structured_content
