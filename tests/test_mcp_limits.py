"""One key cannot take every MCP session or follower of the log (the real server, over HTTP).

Each key may hold ``CTXLOG_MCP_SESSIONS_PER_KEY`` handshake-era sessions (429 past it, 503
past the server's ``CTXLOG_MCP_MAX_SESSIONS``); a session's resource subscriptions follow the
log and take one of the key's live connection slots, counted with its WebSockets and event
streams (``CTXLOG_MAX_LIVE_PER_KEY``, ``CTXLOG_MAX_LIVE``); a session idle for
``CTXLOG_MCP_SESSION_IDLE`` seconds ends, and its follower with it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator, Mapping
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from api.config import load_settings
from api.settings import SettingsError
from api.testing import Checker
from tests.support.server_process import ServerProcess, openapi_checker, seed_context, serving

ALICE, ANN, BOB = "key-alice", "key-ann", "key-bob"
ACCEPT = {"Accept": "application/json, text/event-stream"}
VERSION = "2025-11-25"
INITIALIZE = {
    "jsonrpc": "2.0",
    "id": "init",
    "method": "initialize",
    "params": {"protocolVersion": VERSION, "capabilities": {}, "clientInfo": {"name": "t"}},
}


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        yield session


def _server(tmp_path: Path, env: Mapping[str, str]) -> Iterator[ServerProcess]:
    with serving(tmp_path / "ctx.db", env=env) as proc:
        yield proc


async def rpc(
    http: aiohttp.ClientSession,
    server: ServerProcess,
    key: str,
    body: dict[str, Any],
    session: str | None = None,
) -> tuple[int, Mapping[str, str], Any]:
    headers = {"X-API-Key": key, **ACCEPT}
    if session is not None:
        headers.update({"Mcp-Session-Id": session, "MCP-Protocol-Version": VERSION})
    async with http.post(f"{server.url}/mcp", json=body, headers=headers) as r:
        text = await r.text()
        return r.status, r.headers, (await r.json()) if text else None


async def open_session(
    http: aiohttp.ClientSession, server: ServerProcess, key: str
) -> tuple[int, Mapping[str, str], Any]:
    """``initialize``: (status, headers, body); the session's id is in the headers."""
    return await rpc(http, server, key, INITIALIZE)


async def new_session(http: aiohttp.ClientSession, server: ServerProcess, key: str) -> str:
    status, headers, body = await open_session(http, server, key)
    assert status == 200, body
    return headers["Mcp-Session-Id"]


def call(method: str, params: dict[str, Any], id_: Any = 1) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": id_, "method": method, "params": params}


def uri(cid: str) -> str:
    return f"ctxlog://contexts/{cid}"


def assert_refused(checker: Checker, status: int, headers: Mapping[str, str], body: Any) -> None:
    """A documented refusal of POST /mcp: a JSON-RPC error that says when to retry."""
    checker.check("POST", "/mcp", status, body, "application/json")
    assert "error" in body, body
    assert "result" not in body, body
    assert int(headers["Retry-After"]) >= 1


async def sse_status(http: aiohttp.ClientSession, server: ServerProcess, key: str) -> int:
    """The status of the REST API's event stream for ``key`` (closed at once)."""
    headers = {"X-API-Key": key, "Accept": "text/event-stream"}
    async with http.get(f"{server.url}/api/v1/events/stream", headers=headers) as r:
        return r.status


# -- sessions per key -------------------------------------------------------------------------


@pytest.fixture
def capped(tmp_path: Path) -> Iterator[ServerProcess]:
    yield from _server(tmp_path, {"CTXLOG_MCP_SESSIONS_PER_KEY": "3"})


async def test_one_key_past_its_sessions_is_refused_while_others_are_served(
    capped: ServerProcess, http: aiohttp.ClientSession
) -> None:
    server, checker = capped, openapi_checker(capped)
    mine = [await new_session(http, server, ALICE) for _ in range(3)]
    status, headers, body = await open_session(http, server, ALICE)
    assert status == 429, body
    assert_refused(checker, status, headers, body)
    assert body["id"] == "init"
    assert "Mcp-Session-Id" not in headers
    # Another key, of the same tenant or another, still opens sessions and writes.
    for key in (ANN, BOB):
        other = await new_session(http, server, key)
        cid, _ = await seed_context(http, server, key)
        append = {
            "name": "append_messages",
            "arguments": {"context_id": cid, "messages": [{"role": "user", "content": "hi"}]},
        }
        status, _, body = await rpc(http, server, key, call("tools/call", append), other)
        assert status == 200, body
        assert body["result"]["isError"] is False, body
    # The key's own sessions still serve, and ending one makes room for another.
    status, _, body = await rpc(http, server, ALICE, call("ping", {}), mine[0])
    assert status == 200, body
    headers = {"X-API-Key": ALICE, "Mcp-Session-Id": mine[0]}
    async with http.delete(f"{server.url}/mcp", headers=headers) as r:
        assert r.status == 204
    await new_session(http, server, ALICE)


async def test_the_server_past_its_sessions_answers_503(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    env = {"CTXLOG_MCP_SESSIONS_PER_KEY": "3", "CTXLOG_MCP_MAX_SESSIONS": "4"}
    for server in _server(tmp_path, env):
        for key in (ALICE, ALICE, ALICE, BOB):
            await new_session(http, server, key)
        status, headers, body = await open_session(http, server, ANN)
        assert status == 503, body
        assert_refused(openapi_checker(server), status, headers, body)


# -- idle sessions ----------------------------------------------------------------------------


@pytest.fixture
def idle(tmp_path: Path) -> Iterator[ServerProcess]:
    env = {
        "CTXLOG_MCP_SESSIONS_PER_KEY": "2",
        "CTXLOG_MAX_LIVE_PER_KEY": "1",
        "CTXLOG_MCP_SESSION_IDLE": "1",
    }
    yield from _server(tmp_path, env)


async def test_idle_sessions_expire_and_free_their_slots(
    idle: ServerProcess, http: aiohttp.ClientSession
) -> None:
    server = idle
    cid, _ = await seed_context(http, server, ALICE)
    first = await new_session(http, server, ALICE)
    status, _, body = await rpc(http, server, ALICE, call("resources/subscribe", {"uri": uri(cid)}),
                                first)  # fmt: skip
    assert status == 200, body
    await new_session(http, server, ALICE)
    assert (await open_session(http, server, ALICE))[0] == 429
    # The subscription follows the log: it holds the key's one live slot.
    assert await sse_status(http, server, ALICE) == 429
    # Nobody touches the sessions again: they expire by themselves, their follower stops and
    # the slot is free (the event stream asks nothing of MCP). Polled, within bounds.
    async with asyncio.timeout(30):
        while await sse_status(http, server, ALICE) != 200:  # noqa: ASYNC110
            await asyncio.sleep(0.2)
    status, _, _ = await rpc(http, server, ALICE, call("ping", {}), first)
    assert status == 404  # ended
    await new_session(http, server, ALICE)
    await new_session(http, server, ALICE)


async def test_a_session_with_an_open_event_stream_does_not_expire(
    idle: ServerProcess, http: aiohttp.ClientSession
) -> None:
    server = idle
    session = await new_session(http, server, ALICE)
    headers = {"X-API-Key": ALICE, "Mcp-Session-Id": session, "Accept": "text/event-stream"}
    async with http.get(f"{server.url}/mcp", headers=headers) as stream:
        assert stream.status == 200
        await asyncio.sleep(3)  # three idle timeouts, a dozen sweeps
        status, _, body = await rpc(http, server, ALICE, call("ping", {}), session)
        assert status == 200, body
    status, _, body = await rpc(http, server, ALICE, call("ping", {}), session)
    assert status == 200, body  # the idle clock starts again when the stream ends


# -- subscriptions per key --------------------------------------------------------------------


@pytest.fixture
def followers(tmp_path: Path) -> Iterator[ServerProcess]:
    env = {"CTXLOG_MAX_LIVE_PER_KEY": "2", "CTXLOG_MAX_LIVE": "3"}
    yield from _server(tmp_path, env)


async def test_subscriptions_are_live_connections_of_their_key(
    followers: ServerProcess, http: aiohttp.ClientSession
) -> None:
    server, checker = followers, openapi_checker(followers)
    cid, _ = await seed_context(http, server, ALICE)
    subscribe = call("resources/subscribe", {"uri": uri(cid)}, "sub")
    a, b, c = [await new_session(http, server, ALICE) for _ in range(3)]
    for session in (a, b):
        status, _, body = await rpc(http, server, ALICE, subscribe, session)
        assert status == 200, body
    # Two followers: the key's two live slots. A third is refused, and so is an event stream.
    status, headers, body = await rpc(http, server, ALICE, subscribe, c)
    assert status == 429, body
    assert_refused(checker, status, headers, body)
    assert body["id"] == "sub"
    assert await sse_status(http, server, ALICE) == 429
    # More subscriptions in a session that follows already take no other slot.
    other, _ = await seed_context(http, server, ALICE)
    more = call("resources/subscribe", {"uri": uri(other)})
    assert (await rpc(http, server, ALICE, more, a))[0] == 200
    # Another key follows too, up to the server's three live connections in all.
    bobs, _ = await seed_context(http, server, BOB)
    bob = [await new_session(http, server, BOB) for _ in range(2)]
    status, _, body = await rpc(http, server, BOB, call("resources/subscribe", {"uri": uri(bobs)}),
                                bob[0])  # fmt: skip
    assert status == 200, body
    status, headers, body = await rpc(
        http, server, BOB, call("resources/subscribe", {"uri": uri(bobs)}), bob[1]
    )
    assert status == 503, body
    assert_refused(checker, status, headers, body)
    # Unsubscribing from everything stops a session's follower and frees its slot.
    for watched in (cid, other):
        unsubscribe = call("resources/unsubscribe", {"uri": uri(watched)})
        assert (await rpc(http, server, ALICE, unsubscribe, a))[0] == 200
    status, _, body = await rpc(http, server, ALICE, subscribe, c)
    assert status == 200, body
    # Ending a session frees its slot too.
    async with http.delete(
        f"{server.url}/mcp", headers={"X-API-Key": ALICE, "Mcp-Session-Id": b}
    ) as r:
        assert r.status == 204
    assert await sse_status(http, server, ALICE) == 200


def test_the_limits_are_settings() -> None:
    env = {
        "CTXLOG_MCP_SESSIONS_PER_KEY": "7",
        "CTXLOG_MCP_MAX_SESSIONS": "70",
        "CTXLOG_MCP_SESSION_IDLE": "2.5",
    }
    settings = load_settings(env=env)
    assert (settings.mcp_sessions_per_key, settings.mcp_max_sessions) == (7, 70)
    assert settings.mcp_session_idle == 2.5
    defaults = load_settings(env={})
    assert (defaults.mcp_sessions_per_key, defaults.mcp_max_sessions) == (100, 1000)
    assert defaults.mcp_session_idle == 300.0
    for bad in (
        {"CTXLOG_MCP_SESSIONS_PER_KEY": "0"},
        {"CTXLOG_MCP_MAX_SESSIONS": "-1"},
        {"CTXLOG_MCP_SESSION_IDLE": "0"},
    ):
        with pytest.raises(SettingsError):
            load_settings(env=bad).check()
