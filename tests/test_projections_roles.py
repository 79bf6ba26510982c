"""What the provider formats ask of the domain: ``developer`` is pinned like ``system`` (in
the fold and in the read model), a redacted tool call or result keeps the ids that pair them,
and the new parts are counted."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from eventstore.events import (
    FilePart,
    MessageRedacted,
    OpaquePart,
    Part,
    RefusalPart,
    TextPart,
    ToolCallPart,
    ToolResultPart,
)
from projections import Caller, Contexts, NewMessage, TokenCounter, window
from tests.support.factories import Stream, created, msg
from tests.support.services import running_contexts

ACME = Caller(tenant="acme", actor="ada")
COUNTER = TokenCounter()


@pytest.fixture
async def svc(readmodel: str) -> AsyncIterator[Contexts]:
    async with running_contexts(":memory:", readmodel) as service:
        yield service


def conversation() -> list[NewMessage]:
    return [
        NewMessage(role="developer", content="Answer in French.", message_id="dev"),
        *(NewMessage(role="user", content=f"question {i} " * 20) for i in range(10)),
        NewMessage(role="user", content="last", message_id="last"),
    ]


async def test_developer_messages_are_pinned_like_system_ones(svc: Contexts) -> None:
    cid = (await svc.create(ACME)).context_id
    await svc.append(ACME, cid, conversation())
    w = await svc.window(ACME, cid, max_tokens=60)
    assert w.entries[0].id == "dev"
    assert w.entries[0].kind == "system"
    assert w.entries[-1].id == "last"
    # The same from the in-memory fold.
    state = await svc.get(ACME, cid)
    assert window(state, 60).entries == w.entries
    assert all(o.count < 11 for o in w.left_out)  # the developer message is never left out


def test_a_redacted_tool_call_and_its_result_stay_one_pair() -> None:
    call: list[Part] = [
        TextPart(text="paying"),
        ToolCallPart(id="c1", name="pay", arguments={"n": 4111}),
    ]
    result: list[Part] = [ToolResultPart(call_id="c1", content="paid with 4111")]
    s = Stream().add(
        created(),
        msg("u", "pay my bill"),
        msg("a", call, role="assistant"),
        msg("t", result, role="tool"),
        MessageRedacted(message_id="a"),
        MessageRedacted(message_id="t"),
    )
    state = s.state()
    assert state.messages[1].content == [ToolCallPart(id="c1", name="pay")]
    assert state.messages[2].content == [ToolResultPart(call_id="c1")]
    # The pair is one unit: a budget that fits the result alone takes neither.
    only_result = state.messages[2].tokens + 3
    w = window(state, only_result)
    assert [e.id for e in w.entries] == []


def test_new_parts_are_counted() -> None:
    thinking = OpaquePart(
        format="anthropic",
        data={"type": "thinking", "thinking": "let me think", "signature": "x" * 400},
    )
    assert COUNTER.count_part(thinking) == COUNTER.count_text("let me think")
    reasoning = OpaquePart(
        format="responses",
        data={"type": "reasoning", "id": "rs_1", "encrypted_content": "y" * 400,
              "summary": [{"type": "summary_text", "text": "short"}]},
    )  # fmt: skip
    assert COUNTER.count_part(reasoning) == COUNTER.count_text("short")
    assert COUNTER.count_part(RefusalPart(text="no way")) == COUNTER.count_text("no way")
    doc = FilePart(name="n.txt", text="the whole document text")
    assert COUNTER.count_part(doc) == COUNTER.count_part(FilePart(name="n.txt")) + (
        COUNTER.count_text("the whole document text")
    )
    raw = ToolCallPart(id="c", name="f", arguments={"a": 1}, arguments_json='{"a":   1}')
    assert COUNTER.count_part(raw) > COUNTER.count_part(
        ToolCallPart(id="c", name="f", arguments={"a": 1})
    )
