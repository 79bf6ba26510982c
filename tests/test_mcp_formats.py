"""The MCP door in the providers' formats, driven by the official MCP client: append_messages
takes a format, get_window answers with the same ready-to-send messages as REST; and the tool
list a model reads on every turn stays small."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from api.mcp.tools import list_tools
from api.testing import ApiClient
from projections.tokens import counter
from tests.support.mcp_sdk import call, connected, serve
from tests.support.sdk import anthropic_alternates, validate

CHAT: list[dict[str, Any]] = [
    {"role": "system", "content": "Be terse."},
    {"role": "user", "content": "2+2?"},
    {"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_1", "type": "function",
         "function": {"name": "add", "arguments": '{"a":2,"b":2}'}}]},
    {"role": "tool", "tool_call_id": "call_1", "content": "4"},
    {"role": "assistant", "content": "4"},
]  # fmt: skip

TOOL_LIST_BUDGET = 3000
"""cl100k tokens the model-facing part of tools/list (names, descriptions, input schemas)
may cost in all; it was 5,345 before schemas were compacted."""


@pytest.mark.parametrize("version", ["2025-06-18", "2025-11-25", "2026-07-28"])
def test_the_tool_list_a_model_reads_is_under_budget(version: str) -> None:
    tools = list_tools(version)
    facing = [{k: t[k] for k in ("name", "description", "inputSchema")} for t in tools]
    tokens = counter("cl100k_base").count_text(json.dumps(facing))
    assert tokens < TOOL_LIST_BUDGET, tokens
    for tool in tools:
        assert tool["inputSchema"]["type"] == "object"
        assert "$defs" not in tool["inputSchema"]
        assert "$defs" not in tool.get("outputSchema", {})


@pytest.fixture
async def served(tmp_path: Path, aiohttp_client: Any) -> tuple[str, ApiClient]:
    return await serve(aiohttp_client, tmp_path)


async def test_append_and_window_in_provider_formats(served: tuple[str, ApiClient]) -> None:
    url, api = served
    async with connected(url) as client:
        cid = (await call(client, "create_context"))["id"]
        done = await call(client, "append_messages", context_id=cid, format="openai",
                          messages=CHAT)  # fmt: skip
        assert len(done["message_ids"]) == len(CHAT)
        w = await call(client, "get_window", context_id=cid, format="anthropic")
        validate("anthropic", w["messages"], w["system"])
        anthropic_alternates(w["messages"])
        rest = (await api.get(f"/api/v1/contexts/{cid}/window?format=anthropic")).json
        assert (w["messages"], w["system"]) == (rest["messages"], rest["system"])

        copy = (await call(client, "create_context"))["id"]
        await call(client, "append_messages", context_id=copy, format="anthropic",
                   system=w["system"], messages=w["messages"])  # fmt: skip
        back = await call(client, "get_window", context_id=copy, format="openai")
        validate("openai", back["messages"])
        assert back["messages"] == CHAT

        bad = await client.call_tool("append_messages", {
            "context_id": cid, "format": "openai",
            "messages": [{"role": "tool", "content": "x"}]})  # fmt: skip
        assert bad.is_error
        error = bad.structured_content["error"]
        assert error["code"] == "invalid_arguments"
        assert error["details"]["path"] == "$.messages[0].tool_call_id"
        native = await client.call_tool("append_messages", {
            "context_id": cid, "messages": [{"role": "robot", "content": "x"}]})  # fmt: skip
        assert native.is_error
        path = native.structured_content["error"]["details"]["path"]
        assert path == "$.messages[0].role"
        assert (await api.get(f"/api/v1/contexts/{cid}")).json["version"] == 1 + len(CHAT)
