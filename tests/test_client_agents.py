"""``CtxlogSession`` against the OpenAI Agents SDK and a real ``ctxlog serve``: the SDK's own
``Runner`` runs a turn with a tool call through a scripted model (no network) and the session
holds the turn; items round-trip; ``pop_item`` removes exactly the newest item, atomically;
concurrent ``add_items`` from two workers lose nothing, the first writes included;
``clear_session`` empties the session and keeps the history; tenants never share a session."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from agents import Agent, Runner, function_tool, set_tracing_disabled
from agents.items import ModelResponse
from agents.memory import Session
from agents.models.interface import Model
from agents.usage import Usage
from openai.types.responses import (
    ResponseFunctionToolCall,
    ResponseOutputMessage,
    ResponseOutputText,
)

from api.client import AsyncClient, CtxlogError
from api.client.agents import CtxlogSession
from tests.support.server_process import ServerProcess, key_secrets, serving


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    db = tmp_path_factory.mktemp("agents") / "agents.db"
    with serving(db, secrets=key_secrets()) as proc:
        yield proc


@pytest.fixture
async def alice(server: ServerProcess) -> AsyncIterator[AsyncClient]:
    client = AsyncClient(server.url, api_key="key-alice")
    yield client
    await client.aclose()


def message(text: str, n: int) -> ResponseOutputMessage:
    return ResponseOutputMessage(
        id=f"msg_{n}", type="message", role="assistant", status="completed",
        content=[ResponseOutputText(type="output_text", text=text, annotations=[])],
    )  # fmt: skip


class Scripted(Model):
    """A model that answers from a script and remembers what it was given."""

    def __init__(self, script: list[list[Any]]) -> None:
        self.script = script
        self.inputs: list[Any] = []

    async def get_response(
        self, system_instructions: Any, input: Any, *args: Any, **kw: Any
    ) -> ModelResponse:
        self.inputs.append(input)
        return ModelResponse(output=self.script.pop(0), usage=Usage(), response_id=None)

    def stream_response(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError


@function_tool
def weather(city: str) -> str:
    """The weather in a city."""
    return f"sunny in {city}"


async def test_the_sdks_runner_keeps_its_turns_in_the_session(alice: AsyncClient) -> None:
    set_tracing_disabled(True)  # the SDK would export traces to OpenAI: no network here
    call = ResponseFunctionToolCall(
        type="function_call", call_id="call_1", name="weather", arguments='{"city":"Paris"}',
        id="fc_1", status="completed",
    )  # fmt: skip
    model = Scripted(
        [[call], [message("It is sunny in Paris.", 1)], [message("You asked about Paris.", 2)]]
    )
    agent = Agent(name="assistant", instructions="Be brief.", model=model, tools=[weather])
    session = CtxlogSession("runner-1", client=alice)
    assert isinstance(session, Session)
    first = await Runner.run(agent, "Weather in Paris?", session=session)
    assert first.final_output == "It is sunny in Paris."
    items = await session.get_items()
    assert [i.get("type", "message") for i in items] == [
        "message", "function_call", "function_call_output", "message",
    ]  # fmt: skip
    assert items[0]["content"] == "Weather in Paris?"
    assert items[1]["call_id"] == "call_1"
    assert items[1]["arguments"] == '{"city":"Paris"}'
    assert items[2]["output"] == "sunny in Paris"
    assert items[3]["content"][0]["text"] == "It is sunny in Paris."
    # The next turn: the model is handed the stored history, and the session grows.
    again = await Runner.run(
        agent, "What did I ask?", session=CtxlogSession("runner-1", client=alice)
    )
    assert again.final_output == "You asked about Paris."
    seen = model.inputs[-1]
    assert [i.get("content") for i in seen if i.get("role") == "user"] == [
        "Weather in Paris?", "What did I ask?",
    ]  # fmt: skip
    assert len(await session.get_items()) == 6
    assert len(await session.get_items(limit=2)) == 2


ITEMS: list[dict[str, Any]] = [
    {"role": "user", "content": "hello"},
    {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "opaque"},
    {
        "type": "message", "id": "msg_1", "role": "assistant", "status": "completed",
        "content": [{"type": "output_text", "text": "Let me look.", "annotations": []}],
    },
    {
        "type": "function_call", "call_id": "c1", "name": "lookup", "arguments": "{}",
        "id": "fc_1", "status": "completed",
    },
    {"type": "function_call_output", "call_id": "c1", "output": "found"},
    {"role": "assistant", "content": "Done."},
]  # fmt: skip


async def test_pop_item_removes_exactly_the_newest_item(alice: AsyncClient) -> None:
    session = CtxlogSession("pop-1", client=alice)
    await session.add_items(ITEMS[:1])
    await session.add_items(ITEMS[1:])
    before = await session.get_items()
    assert len(before) == len(ITEMS)
    while before:
        popped = await session.pop_item()
        assert popped == before[-1]
        after = await session.get_items()
        assert after[:-1] == before[:-2]
        if after:
            # A function call whose output was popped reads back as text: a window never
            # hands a provider a call without its result (api.formats).
            orphan = before[-2].get("type") == "function_call" and after[-1] == {
                "type": "message", "role": "assistant", "content": "[tool call lookup: {}]",
            }  # fmt: skip
            assert after[-1] == before[-2] or orphan
        before = after
    assert await session.pop_item() is None
    # Every item is still in the context's history.
    assert session.context_id is not None
    history = [e.type async for e in alice.iter_history(session.context_id)]
    assert history.count("message.appended") == 4
    assert "context.rolled_back" in history


async def test_pop_item_is_atomic_under_concurrent_pops(
    alice: AsyncClient, server: ServerProcess
) -> None:
    session = CtxlogSession("pop-race", client=alice)
    await session.add_items([{"role": "user", "content": f"m{i}"} for i in range(6)])
    other = AsyncClient(server.url, api_key="key-ann")
    try:
        theirs = CtxlogSession("pop-race", client=other)
        popped = await asyncio.gather(*(s.pop_item() for s in (session, theirs, session, theirs)))
    finally:
        await other.aclose()
    assert sorted(p["content"] for p in popped if p is not None) == ["m2", "m3", "m4", "m5"]
    assert [i["content"] for i in await session.get_items()] == ["m0", "m1"]


async def test_pop_item_will_not_undo_a_later_change(alice: AsyncClient) -> None:
    session = CtxlogSession("pop-redacted", client=alice)
    await session.add_items([{"role": "user", "content": "a"}, {"role": "user", "content": "b"}])
    assert session.context_id is not None
    ctx = await alice.get_context(session.context_id)
    await alice.redact_message(session.context_id, ctx.messages[0].id)
    with pytest.raises(CtxlogError, match="would undo it"):
        await session.pop_item()
    assert len(await session.get_items()) == 2


async def test_concurrent_first_writes_from_two_workers_lose_nothing(server: ServerProcess) -> None:
    workers = [AsyncClient(server.url, api_key="key-alice") for _ in range(2)]
    try:
        sessions = [CtxlogSession("race-1", client=w) for w in workers]
        await asyncio.gather(*(
            s.add_items([{"role": "user", "content": f"w{n}-{i}"}])
            for i in range(10) for n, s in enumerate(sessions)
        ))  # fmt: skip
        got = {i["content"] for i in await sessions[0].get_items()}
    finally:
        for w in workers:
            await w.aclose()
    assert got == {f"w{n}-{i}" for n in range(2) for i in range(10)}
    assert sessions[0].context_id == sessions[1].context_id


async def test_clear_session_empties_it_and_keeps_history(alice: AsyncClient) -> None:
    session = CtxlogSession("clear-1", client=alice)
    await session.add_items(ITEMS[:1])
    await session.clear_session()
    assert await session.get_items() == []
    await session.add_items([{"role": "user", "content": "again"}])
    assert [i["content"] for i in await session.get_items()] == ["again"]
    assert session.context_id is not None
    old = await alice.get_context(session.context_id, version=2)
    assert [m.content for m in old.messages] == ["hello"]


async def test_a_session_id_is_per_tenant(alice: AsyncClient, server: ServerProcess) -> None:
    await CtxlogSession("shared-session", client=alice).add_items(ITEMS[:1])
    bob = AsyncClient(server.url, api_key="key-bob")
    try:
        theirs = CtxlogSession("shared-session", client=bob)
        assert await theirs.get_items() == []
        await theirs.add_items([{"role": "user", "content": "bob's"}])
    finally:
        await bob.aclose()
    assert [
        i["content"] for i in await CtxlogSession("shared-session", client=alice).get_items()
    ] == ["hello"]
