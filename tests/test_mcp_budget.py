"""A context answer over MCP holds what fits the server's response budget, as over REST:
``get_context`` and a context resource give the first messages whose JSON fits
``response_budget_bytes`` and ``next_messages_from``; asking again with the answer's version
and ``messages_from`` pages through the rest, now and at a past version."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.support.clients import AppClient
from tests.support.mcp_helpers import modern, post, start

BUDGET = 2_000
TEXTS = [f"{i:03d} " + "x" * 200 for i in range(30)]


async def tool(client: AppClient, name: str, arguments: dict[str, Any]) -> Any:
    body, headers = modern(
        "tools/call", {"name": name, "arguments": arguments}, **{"Mcp-Name": name}
    )
    status, _, reply = await post(client, body, headers)
    assert status == 200, reply
    result = reply["result"]
    assert not result["isError"], result
    return result["structuredContent"]


async def pages(client: AppClient, first: dict[str, Any], cid: str) -> list[str]:
    """Every message's content, following ``next_messages_from`` from ``first``."""
    seen, answer = [], first
    while True:
        assert answer["version"] == first["version"]
        size = sum(len(json.dumps(m, separators=(",", ":"))) for m in answer["messages"])
        assert size <= BUDGET
        seen += [m["content"] for m in answer["messages"]]
        if answer["next_messages_from"] is None:
            return seen
        assert answer["next_messages_from"] == answer["messages_from"] + len(answer["messages"])
        answer = await tool(client, "get_context", {
            "context_id": cid, "version": first["version"],
            "messages_from": answer["next_messages_from"],
        })  # fmt: skip


async def test_get_context_pages_past_the_response_budget(
    aiohttp_client: Any, tmp_path: Path
) -> None:
    client = await start(aiohttp_client, tmp_path, response_budget_bytes=BUDGET)
    cid = (await tool(client, "create_context", {}))["id"]
    messages = [{"role": "user", "content": t} for t in TEXTS]
    await tool(client, "append_messages", {"context_id": cid, "messages": messages})
    now = await tool(client, "get_context", {"context_id": cid})
    assert 0 < len(now["messages"]) < len(TEXTS)
    assert now["next_messages_from"] == len(now["messages"])
    await tool(client, "append_messages", {"context_id": cid, "messages": [
        {"role": "user", "content": "later"}]})  # fmt: skip
    # Paged at the answer's version: the later message is not in it (it was now, then).
    assert await pages(client, now, cid) == TEXTS
    # The newest version pages to its end, the later message last.
    newest = await tool(client, "get_context", {"context_id": cid})
    assert await pages(client, newest, cid) == [*TEXTS, "later"]
    # A past version (from history) keeps the same rule.
    past = await tool(client, "get_context", {"context_id": cid, "version": now["version"]})
    assert 0 < len(past["messages"]) < len(TEXTS)
    assert await pages(client, past, cid) == TEXTS
    # Past the end: no messages, nothing to continue.
    end = await tool(client, "get_context", {"context_id": cid, "messages_from": 1000})
    assert (end["messages"], end["next_messages_from"]) == ([], None)


async def test_a_context_resource_is_cut_at_the_budget(aiohttp_client: Any, tmp_path: Path) -> None:
    client = await start(aiohttp_client, tmp_path, response_budget_bytes=BUDGET)
    cid = (await tool(client, "create_context", {}))["id"]
    messages = [{"role": "user", "content": t} for t in TEXTS]
    written = await tool(client, "append_messages", {"context_id": cid, "messages": messages})
    for uri in (f"ctxlog://contexts/{cid}", f"ctxlog://contexts/{cid}@{written['version']}"):
        body, headers = modern("resources/read", {"uri": uri}, **{"Mcp-Name": uri})
        status, _, reply = await post(client, body, headers)
        assert status == 200, reply
        answer = json.loads(reply["result"]["contents"][0]["text"])
        assert [m["content"] for m in answer["messages"]] == TEXTS[: len(answer["messages"])]
        assert 0 < len(answer["messages"]) < len(TEXTS)
        assert answer["next_messages_from"] == len(answer["messages"])
