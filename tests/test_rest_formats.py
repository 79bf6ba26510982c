"""The REST door in the providers' formats: append in OpenAI's or Anthropic's shapes, read the
window back ready to send in any of them (checked against the SDKs' own types), bad input
refused with its path and nothing written. Every answer is also checked against the OpenAPI
document (``api.testing.ApiClient``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from api import appkeys, create_app, testing
from api.testing import ApiClient
from tests.support.clients import AppClient
from tests.support.sdk import anthropic_alternates, validate

CTX = "/api/v1/contexts"

CHAT: list[dict[str, Any]] = [
    {"role": "developer", "content": "Answer in one word."},
    {"role": "user", "content": "Weather in Paris?"},
    {"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_1", "type": "function",
         "function": {"name": "weather", "arguments": '{"city":"Paris"}'}}]},
    {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
    {"role": "assistant", "content": "Sunny."},
]  # fmt: skip


@pytest.fixture
async def api(aiohttp_client: Any, tmp_path: Path) -> ApiClient:
    app = create_app(testing.settings(str(tmp_path / "ctx.db")))
    client: AppClient = await aiohttp_client(app)
    api = ApiClient(client, app[appkeys.OPENAPI], "key-alice")
    await api.wait_ready()
    return api


async def new_context(api: ApiClient) -> str:
    return str((await api.post(CTX, {}, expect=201)).json["id"])


async def test_written_through_openai_read_as_anthropic_and_back(api: ApiClient) -> None:
    first = await new_context(api)
    await api.post(f"{CTX}/{first}/messages?format=openai", {"messages": CHAT}, expect=201)
    native = (await api.get(f"{CTX}/{first}/window")).json
    assert "messages" not in native  # the native answer is as it always was
    assert native["entries"][0]["role"] == "developer"

    w = (await api.get(f"{CTX}/{first}/window?format=anthropic")).json
    validate("anthropic", w["messages"], w["system"])
    anthropic_alternates(w["messages"])
    assert w["system"] == "Answer in one word."
    assert w["format"] == "anthropic"
    assert len(w["entries"]) == len(native["entries"])

    second = await new_context(api)
    body = {"system": w["system"], "messages": w["messages"]}
    await api.post(f"{CTX}/{second}/messages?format=anthropic", body, expect=201)
    back = (await api.get(f"{CTX}/{second}/window?format=openai")).json
    validate("openai", back["messages"])
    # Anthropic has no developer role: the instructions come back as a system message.
    assert back["messages"] == [{"role": "system", "content": "Answer in one word."}, *CHAT[1:]]

    responses = (await api.get(f"{CTX}/{second}/window?format=responses")).json
    validate("responses", responses["messages"])


async def test_each_format_counts_its_own_framing(api: ApiClient) -> None:
    cid = await new_context(api)
    await api.post(f"{CTX}/{cid}/messages?format=openai", {"messages": CHAT}, expect=201)
    openai = (await api.get(f"{CTX}/{cid}/window?format=openai&model=gpt-4o")).json
    anthropic = (await api.get(f"{CTX}/{cid}/window?format=anthropic&model=gpt-4o")).json
    assert openai["overhead_tokens"] == 3 * len(CHAT) + 3
    assert anthropic["overhead_tokens"] == 0
    assert anthropic["total_tokens"] == openai["total_tokens"] - openai["overhead_tokens"]


async def test_a_recorded_window_says_its_format(api: ApiClient) -> None:
    cid = await new_context(api)
    await api.post(f"{CTX}/{cid}/messages?format=openai", {"messages": CHAT}, expect=201)
    w = (await api.post(f"{CTX}/{cid}/window", {"format": "responses"})).json
    validate("responses", w["messages"])
    events = (await api.get(f"{CTX}/{cid}/events?direction=backward&limit=1")).json["events"]
    assert events[0]["type"] == "window.served"
    assert events[0]["data"]["format"] == "responses"


async def test_a_tool_result_may_answer_a_call_stored_before(api: ApiClient) -> None:
    cid = await new_context(api)
    call = {
        "role": "assistant",
        "content": [
            {"type": "text", "text": "Checking."},
            {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {"city": "Oslo"}},
        ],
    }
    await api.post(
        f"{CTX}/{cid}/messages?format=anthropic",
        {"messages": [{"role": "user", "content": "Oslo?"}, call]},
        expect=201,
    )
    result = {
        "role": "user",
        "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "snow"}],
    }
    await api.post(f"{CTX}/{cid}/messages?format=anthropic", {"messages": [result]}, expect=201)
    stray = {"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": "toolu_9", "content": "?"}]}  # fmt: skip
    r = await api.post(f"{CTX}/{cid}/messages?format=anthropic", {"messages": [stray]},
                       expect=400)  # fmt: skip
    assert r.json["error"]["details"]["path"] == "$.messages[0].content[0].tool_use_id"
    w = (await api.get(f"{CTX}/{cid}/window?format=openai")).json
    validate("openai", w["messages"])
    assert w["messages"][-1] == {"role": "tool", "tool_call_id": "toolu_1", "content": "snow"}


BAD = [
    ("openai", {"messages": [{"role": "user", "content": "a"},
                             {"role": "tool", "content": "x"}]}, "$.messages[1].tool_call_id"),
    ("openai", {"messages": [{"role": "user", "content": [{"type": "audio_url"}]}]},
     "$.messages[0].content[0].type"),
    ("anthropic", {"messages": [{"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": "nope", "content": "x"}]}]},
     "$.messages[0].content[0].tool_use_id"),
    ("responses", {"items": [{"type": "item_reference", "id": "x"}]}, "$.items[0].type"),
    ("responses", {"messages": []}, "$"),
    ("gemini", {"messages": []}, "$.format"),
]  # fmt: skip


@pytest.mark.parametrize(("fmt", "body", "path"), BAD)
async def test_bad_input_is_a_400_naming_the_path_and_writes_nothing(
    api: ApiClient, fmt: str, body: dict[str, Any], path: str
) -> None:
    cid = await new_context(api)
    r = await api.post(f"{CTX}/{cid}/messages?format={fmt}", body, expect=400)
    assert r.json["error"]["details"]["path"] == path
    after = (await api.get(f"{CTX}/{cid}")).json
    assert after["version"] == 1
    assert after["messages"] == []


async def test_an_unknown_window_format_is_a_400(api: ApiClient) -> None:
    cid = await new_context(api)
    r = await api.get(f"{CTX}/{cid}/window?format=gemini", expect=400)
    assert r.json["error"]["details"]["path"] == "$.format"
