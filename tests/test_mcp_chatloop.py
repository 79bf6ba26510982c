"""The chat loop through MCP tools, driven by the official MCP client (issue 16 item 5):
append_messages, get_window with record, append_messages with the window's version as
expected_version — it lands; a real change in between is still a version conflict."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from api.testing import ApiClient
from tests.support.mcp_sdk import call, connected, serve


@pytest.fixture
async def served(tmp_path: Path, aiohttp_client: Any) -> tuple[str, ApiClient]:
    return await serve(aiohttp_client, tmp_path)


async def test_the_chat_loop_through_mcp_tools(served: tuple[str, ApiClient]) -> None:
    url, api = served
    async with connected(url) as client:
        cid = (await call(client, "create_context"))["id"]
        for turn in range(2):
            question = [{"role": "user", "content": f"q{turn}"}]
            await call(client, "append_messages", context_id=cid, messages=question)
            shown = await call(client, "get_window", context_id=cid, record=True)
            answer = [{"role": "assistant", "content": f"a{turn}"}]
            done = await call(
                client, "append_messages", context_id=cid, messages=answer,
                expected_version=shown["version"],
            )  # fmt: skip
            assert done["version"] == shown["version"] + 2
        # A change by someone else between the window and the reply is a conflict.
        shown = await call(client, "get_window", context_id=cid, record=True)
        await api.patch(f"/api/v1/contexts/{cid}/metadata", {"topic": "x"}, expect=200)
        late = await client.call_tool("append_messages", {
            "context_id": cid, "messages": [{"role": "assistant", "content": "late"}],
            "expected_version": shown["version"],
        })  # fmt: skip
        assert late.is_error
        error = late.structured_content["error"]
        assert error["code"] == "version_conflict"
        assert error["details"]["current_version"] == shown["version"] + 2
    events = (await api.get(f"/api/v1/contexts/{cid}/events?limit=100")).json["events"]
    assert [e["type"] for e in events].count("window.served") == 3
    texts = [m["content"] for m in (await api.get(f"/api/v1/contexts/{cid}")).json["messages"]]
    assert texts == ["q0", "a0", "q1", "a1"]
