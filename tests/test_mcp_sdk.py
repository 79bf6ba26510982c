"""The official MCP Python SDK client against ctxlog: over Streamable HTTP in both protocol
eras (the 2026-07-28 stateless one, reached by the SDK's ``server/discover`` probe, and the
``initialize`` handshake) and over stdio (``python -m api.mcp``).

Each run connects, lists and calls every tool, reads every kind of resource, gets the prompt,
subscribes to a context and sees the update a REST append causes, gets error results for bad
arguments, and is refused another tenant's context.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import uuid
import warnings
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx2
import mcp_types as types
import pytest
from aiohttp import web
from mcp import Client
from mcp.client.stdio import StdioServerParameters
from mcp.client.stdio import stdio_client as sdk_stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPDeprecationWarning, MCPError

from api import appkeys, create_app, testing
from api.testing import ApiClient
from tests.support.clients import AppClient

TOOLS = {
    "create_context", "append_messages", "get_context", "get_window", "get_history",
    "rollback", "fork", "diff", "add_summary", "edit_message", "redact_message",
    "search_messages", "list_contexts",
}  # fmt: skip
KEYS_ENV = ",".join(f"{k.key}:{k.tenant}:{k.actor}" for k in testing.KEYS)
V1 = "/api/v1"


class Served:
    """The API on a real loopback port: a REST client, and MCP clients per key."""

    def __init__(self, rest: AppClient, app: web.Application) -> None:
        self.url = str(rest.make_url("/mcp"))
        self.rest = ApiClient(rest, app[appkeys.OPENAPI], "key-alice")

    @contextlib.asynccontextmanager
    async def client(self, key: str, mode: str, handler: Any = None) -> AsyncIterator[Client]:
        async with httpx2.AsyncClient(
            headers={"X-API-Key": key}, timeout=httpx2.Timeout(30, read=300)
        ) as http:
            transport = streamable_http_client(self.url, http_client=http)
            async with Client(transport, mode=mode, message_handler=handler) as client:
                yield client


@pytest.fixture
async def served(tmp_path: Path, aiohttp_client: Any) -> Served:
    app = create_app(testing.settings(str(tmp_path / "ctx.db")))
    rest: AppClient = await aiohttp_client(app)
    served = Served(rest, app)
    await served.rest.wait_ready()
    return served


# -- the whole tour, whatever the transport ---------------------------------------------------


def first_text(result: types.CallToolResult) -> str:
    """The text of a result's first content block (a text block)."""
    block = result.content[0]
    assert isinstance(block, types.TextContent)
    return block.text


def structured(result: types.CallToolResult) -> Any:
    """The structured result, checked to be what the text block says."""
    assert not result.is_error, result.content
    assert json.loads(first_text(result)) == result.structured_content
    return result.structured_content


async def tour(client: Client) -> dict[str, Any]:
    """List and call every tool; returns what later steps need."""
    listed = await client.list_tools()
    assert {t.name for t in listed.tools} == TOOLS
    for tool in listed.tools:
        assert tool.input_schema["type"] == "object"
        assert tool.output_schema is not None
        assert tool.output_schema["type"] == "object"

    async def call(name: str, **arguments: Any) -> Any:
        return structured(await client.call_tool(name, arguments))

    ctx = await call("create_context", metadata={"title": "trip"}, window={"max_tokens": 500})
    cid = ctx["id"]
    appended = await call(
        "append_messages",
        context_id=cid,
        messages=[
            {"role": "system", "content": "You plan journeys."},
            {"role": "user", "content": "Plan a walk along the riverbank"},
            {"role": "assistant", "content": [{"type": "text", "text": "Start at the bridge."}]},
        ],
    )
    system_id, user_id, assistant_id = appended["message_ids"]
    assert appended["version"] == 4  # one event per message
    now = await call("get_context", context_id=cid)
    assert [m["id"] for m in now["messages"]] == [system_id, user_id, assistant_id]
    assert (await call("get_context", context_id=cid, version=1))["messages"] == []
    window = await call("get_window", context_id=cid, max_tokens=40)
    assert window["context_id"] == cid
    assert window["entries"]
    history = await call("get_history", context_id=cid, limit=10)
    assert [e["type"] for e in history["events"]][:2] == ["context.created", "message.appended"]
    edited = await call(
        "edit_message", context_id=cid, message_id=user_id, content="Plan a riverside walk"
    )
    redacted = await call("redact_message", context_id=cid, message_id=assistant_id, reason="pii")
    assert redacted["version"] == edited["version"] + 1
    summary = await call("add_summary", context_id=cid, text="A walk.", through_message_id=user_id)
    assert summary["summary_id"]
    diff = await call("diff", context_id=cid, from_version=4)
    assert user_id in diff["edited"]
    assert assistant_id in diff["redacted"]
    rolled = await call("rollback", context_id=cid, to_version=4, reason="undo")
    assert rolled["version"] == summary["version"] + 1 == 8
    fork = await call("fork", context_id=cid, at_version=4, metadata={"title": "branch"})
    assert fork["parent_id"] == cid
    assert fork["parent_version"] == 4
    found = await call("search_messages", query="riverbank")
    assert {h["message_id"] for h in found["hits"]} == {user_id}  # the original is back
    listed_contexts = await call("list_contexts", limit=10)
    assert {c["id"] for c in listed_contexts["contexts"]} == {cid, fork["context_id"]}
    return {"cid": cid, "user_id": user_id}


async def errors(client: Client, cid: str) -> None:
    """Bad arguments and unknown things are error results a model can read."""
    bad = await client.call_tool("get_context", {"context_id": "not-a-uuid"})
    assert bad.is_error
    assert "context_id" in first_text(bad)
    missing = await client.call_tool("get_context", {"context_id": str(uuid.uuid4())})
    assert missing.is_error
    assert "not found" in first_text(missing)
    role = await client.call_tool(
        "append_messages", {"context_id": cid, "messages": [{"role": "robot", "content": "x"}]}
    )
    assert role.is_error
    unknown_field = await client.call_tool("list_contexts", {"limits": 3})
    assert unknown_field.is_error
    version = await client.call_tool("rollback", {"context_id": cid, "to_version": 99})
    assert version.is_error
    with pytest.raises(MCPError) as e:
        await client.call_tool("no_such_tool", {})
    assert e.value.error.code == -32602


async def read_everything(client: Client, cid: str) -> None:
    """Every kind of resource, the listing, the templates and the prompt."""
    listing = await client.list_resources()
    assert f"ctxlog://contexts/{cid}" in {r.uri for r in listing.resources}
    templates = await client.list_resource_templates()
    assert len(templates.resource_templates) == 4
    base = f"ctxlog://contexts/{cid}"
    now = json.loads(_text(await client.read_resource(base)))
    assert now["id"] == cid
    assert now["version"] >= 8
    past = json.loads(_text(await client.read_resource(f"{base}@3")))
    assert past["version"] == 3
    assert len(past["messages"]) == 2
    window = json.loads(_text(await client.read_resource(f"{base}/window")))
    assert window["context_id"] == cid
    events = json.loads(_text(await client.read_resource(f"{base}/events?limit=2")))
    assert len(events["events"]) == 2
    assert events["next_from_version"] == 3
    prompts = await client.list_prompts()
    assert [p.name for p in prompts.prompts] == ["continue_conversation"]
    prompt = await client.get_prompt("continue_conversation", {"context_id": cid})
    roles = [m.role for m in prompt.messages]
    assert roles
    assert set(roles) <= {"user", "assistant"}
    assert "You plan journeys." in _prompt_text(prompt)
    short = await client.get_prompt(
        "continue_conversation", {"context_id": cid, "max_tokens": "25"}
    )
    assert len(short.messages) < len(prompt.messages)
    assert "left out" in (short.description or "")
    with pytest.raises(MCPError):
        await client.read_resource(f"ctxlog://contexts/{uuid.uuid4()}")


def _text(result: types.ReadResourceResult) -> str:
    content = result.contents[0]
    assert isinstance(content, types.TextResourceContents)
    assert content.mime_type == "application/json"
    return content.text


def _prompt_text(prompt: types.GetPromptResult) -> str:
    texts = [m.content for m in prompt.messages]
    assert all(isinstance(t, types.TextContent) for t in texts)
    return "\n".join(t.text for t in texts if isinstance(t, types.TextContent))


async def refused(client: Client, cid: str) -> None:
    """Another tenant's context does not exist for this caller."""
    result = await client.call_tool("get_context", {"context_id": cid})
    assert result.is_error
    assert "not found" in first_text(result)
    with pytest.raises(MCPError):
        await client.read_resource(f"ctxlog://contexts/{cid}")
    found = structured(await client.call_tool("search_messages", {"query": "riverbank"}))
    assert found["hits"] == []
    listed = await client.list_resources()
    assert listed.resources == []


async def rest_append(api: ApiClient, cid: str, text: str) -> None:
    await api.post(f"{V1}/contexts/{cid}/messages", {"role": "user", "content": text}, expect=201)


# -- Streamable HTTP --------------------------------------------------------------------------


async def test_stateless_era_via_discover(served: Served) -> None:
    async with served.client("key-alice", "auto") as client:
        assert client.protocol_version == "2026-07-28"
        assert client.server_info is not None
        assert client.server_info.name == "ctxlog"
        found = await tour(client)
        await errors(client, found["cid"])
        await read_everything(client, found["cid"])
        uri = f"ctxlog://contexts/{found['cid']}"
        async with client.listen(resource_subscriptions=[uri]) as subscription:
            assert subscription.honored.resource_subscriptions == [uri]
            await rest_append(served.rest, found["cid"], "and then lunch")
            async with asyncio.timeout(10):
                event = await anext(subscription)
            assert event.uri == uri  # type: ignore[union-attr]
        after = json.loads(_text(await client.read_resource(uri)))
        assert after["messages"][-1]["content"] == "and then lunch"
    async with served.client("key-bob", "auto") as bob:
        await refused(bob, found["cid"])
        async with bob.listen(resource_subscriptions=[uri]) as subscription:
            assert not subscription.honored.resource_subscriptions


async def test_handshake_era(served: Served) -> None:
    updates: asyncio.Queue[types.ResourceUpdatedNotification] = asyncio.Queue()

    async def handler(message: Any) -> None:
        if isinstance(message, types.ResourceUpdatedNotification):
            updates.put_nowait(message)

    async with served.client("key-alice", "legacy", handler) as client:
        assert client.protocol_version == "2025-11-25"
        found = await tour(client)
        await errors(client, found["cid"])
        await read_everything(client, found["cid"])
        uri = f"ctxlog://contexts/{found['cid']}"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", MCPDeprecationWarning)
            await client.subscribe_resource(uri)
            await rest_append(served.rest, found["cid"], "and then lunch")
            async with asyncio.timeout(10):
                notice = await updates.get()
            assert notice.params.uri == uri
            await client.unsubscribe_resource(uri)
    async with served.client("key-bob", "legacy") as bob:
        await refused(bob, found["cid"])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", MCPDeprecationWarning)
            with pytest.raises(MCPError):
                await bob.subscribe_resource(uri)


# -- stdio ------------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def stdio_client(db: Path, key: str, mode: str, handler: Any = None) -> AsyncIterator[Client]:
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "api.mcp", "--db", db.name],
        env={"CTXLOG_API_KEYS": KEYS_ENV, "CTXLOG_API_KEY": key},
        cwd=db.parent,
    )
    # The server's log goes to a file, read afterwards; stdout is the protocol's alone.
    log = db.parent / f"stdio-{key}-{mode}.log"
    with log.open("w") as errlog:
        transport = sdk_stdio_client(params, errlog=errlog)
        async with Client(transport, mode=mode, message_handler=handler) as client:
            yield client
    assert "Traceback" not in log.read_text()


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_stdio_both_eras(served: Served, tmp_path: Path, mode: str) -> None:
    db = tmp_path / "ctx.db"  # the database the REST API serves too
    updates: asyncio.Queue[str] = asyncio.Queue()

    async def handler(message: Any) -> None:
        if isinstance(message, types.ResourceUpdatedNotification):
            updates.put_nowait(message.params.uri)

    async with stdio_client(db, "key-alice", mode, handler) as client:
        expected = "2026-07-28" if mode == "auto" else "2025-11-25"
        assert client.protocol_version == expected
        found = await tour(client)
        await errors(client, found["cid"])
        await read_everything(client, found["cid"])
        uri = f"ctxlog://contexts/{found['cid']}"
        # The REST server is another process as far as the log goes: it sees the stdio
        # server's writes once its projector has polled them in.
        async with asyncio.timeout(15):
            while (await served.rest.get(f"{V1}/contexts/{found['cid']}")).status != 200:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        # A REST append, made by another process's writer on the same database, reaches
        # the stdio server through the log.
        if mode == "auto":
            async with client.listen(resource_subscriptions=[uri]) as subscription:
                await rest_append(served.rest, found["cid"], "and then lunch")
                async with asyncio.timeout(15):
                    event = await anext(subscription)
                assert event.uri == uri  # type: ignore[union-attr]
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", MCPDeprecationWarning)
                await client.subscribe_resource(uri)
            await rest_append(served.rest, found["cid"], "and then lunch")
            async with asyncio.timeout(15):
                assert await updates.get() == uri
    async with stdio_client(db, "key-bob", mode) as bob:
        await refused(bob, found["cid"])
