"""The provider formats in and out, judged by the SDKs' own types: what a client writes in a
format reads back in it unchanged (its provider fields included), any format reads as any
other, and every window, trimmed or not, validates against the openai and anthropic types."""

from __future__ import annotations

import copy
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from api import formats
from eventstore.events import (
    MessageAppended,
    MessageRedacted,
    Part,
    SummaryAdded,
    TextPart,
    ToolCallPart,
)
from eventstore.events import ToolResultPart as Result
from projections import ContextState, NewMessage, Window, window
from tests.support.factories import Stream, created
from tests.support.sdk import anthropic_alternates, validate

PNG = "iVBORw0KGgo="

CHAT: list[dict[str, Any]] = [
    {"role": "developer", "content": "Answer in French.", "name": "ops"},
    {"role": "system", "content": [{"type": "text", "text": "Be terse.",
                                    "prompt_cache_breakpoint": {"mode": "explicit"}}]},
    {"role": "user", "name": "ada", "content": [
        {"type": "text", "text": "What is in this picture, and the weather?"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}",
                                            "detail": "original"}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
        {"type": "file", "file": {"file_id": "file-abc", "filename": "report.pdf"}},
    ]},
    {"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_1", "type": "function",
         "function": {"name": "weather", "arguments": '{"city": "Paris"}'}},
        {"id": "call_2", "type": "function", "function": {"name": "now", "arguments": "{}"}},
    ]},
    {"role": "tool", "tool_call_id": "call_1", "content": "sunny, 21C"},
    {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "noon"}]},
    {"role": "assistant", "content": "Un chat. Il fait beau.", "refusal": None} | {},
    {"role": "user", "content": "Say something rude."},
    {"role": "assistant", "refusal": "I can't help with that."},
]  # fmt: skip
CHAT[6].pop("refusal")

RESPONSES: list[dict[str, Any]] = [
    {"role": "developer", "content": "Answer in French."},
    {"type": "message", "role": "user", "content": [
        {"type": "input_text", "text": "Weather in Paris? See the attached file."},
        {"type": "input_image", "detail": "auto", "image_url": "https://example.com/a.png"},
        {"type": "input_file", "file_id": "file-1", "filename": "notes.pdf"},
    ]},
    {"type": "reasoning", "id": "rs_1", "encrypted_content": "gAAAA-opaque",
     "summary": [{"type": "summary_text", "text": "Need weather."}]},
    {"type": "function_call", "id": "fc_1", "call_id": "call_1", "name": "weather",
     "arguments": '{"city":"Paris"}', "status": "completed"},
    {"type": "function_call_output", "call_id": "call_1", "output": "sunny"},
    {"type": "message", "role": "assistant", "id": "msg_1", "status": "completed",
     "phase": "final_answer", "content": [
         {"type": "output_text", "text": "Il fait beau.",
          "annotations": [{"type": "url_citation", "url": "https://meteo.example",
                           "title": "Météo", "start_index": 0, "end_index": 5}]}]},
    {"type": "message", "role": "user", "content": "Merci"},
    {"type": "message", "role": "assistant", "content": "De rien."},
]  # fmt: skip

ANTHROPIC_SYSTEM: list[dict[str, Any]] = [
    {"type": "text", "text": "You are terse.", "cache_control": {"type": "ephemeral"}}
]
ANTHROPIC: list[dict[str, Any]] = [
    {"role": "user", "content": [
        {"type": "text", "text": "Summarise the PDF and check the weather."},
        {"type": "document", "source": {"type": "base64", "media_type": "application/pdf",
                                        "data": "JVBERi0xLjQ="},
         "title": "report", "context": "Q3", "citations": {"enabled": True}},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG},
         "cache_control": {"type": "ephemeral"}},
    ]},
    {"role": "assistant", "content": [
        {"type": "thinking", "thinking": "The user wants two things.", "signature": "sig=="},
        {"type": "redacted_thinking", "data": "ZW5jcnlwdGVk"},
        {"type": "text", "text": "Let me check."},
        {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {"city": "Paris"}},
    ]},
    {"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": "toolu_1", "is_error": False,
         "content": [{"type": "text", "text": "sunny"}]},
        {"type": "text", "text": "And be quick."},
    ]},
    {"role": "assistant", "content": "The report is about Q3; it is sunny."},
    {"role": "user", "content": [
        {"type": "document", "source": {"type": "text", "media_type": "text/plain",
                                        "data": "plain notes"}, "title": "notes"},
        {"type": "image", "source": {"type": "file", "file_id": "file_9"}},
    ]},
]  # fmt: skip


def store(messages: list[NewMessage]) -> ContextState:
    events = [
        MessageAppended(message_id=f"m{i}", role=m.role, content=m.content, name=m.name)
        for i, m in enumerate(messages)
    ]
    return Stream().add(created(), *events).state()


def written(fmt: str) -> ContextState:
    if fmt == "anthropic":
        messages, pending = formats.parse(fmt, ANTHROPIC, system=ANTHROPIC_SYSTEM)
    else:
        messages, pending = formats.parse(fmt, RESPONSES if fmt == "responses" else CHAT)
    assert pending == {}
    # Through the codec, as the log keeps them.
    return store(msgspec.json.decode(msgspec.json.encode(messages), type=list[NewMessage]))


def rendered(fmt: str, w: Window) -> formats.Rendered:
    out = formats.render(fmt, w)
    validate(fmt, out.messages, out.system)
    if fmt == "anthropic":
        anthropic_alternates(out.messages)
    return out


def test_openai_reads_back_exactly_as_written() -> None:
    assert rendered("openai", window(written("openai"))).messages == CHAT


def test_responses_reads_back_exactly_as_written() -> None:
    expected = copy.deepcopy(RESPONSES)
    expected[0]["type"] = "message"  # an easy message's optional type, written out
    got = rendered("responses", window(written("responses"))).messages
    assert [msgspec.json.encode(i, order="sorted") for i in got] == [
        msgspec.json.encode(i, order="sorted") for i in expected
    ]


def test_anthropic_reads_back_exactly_as_written() -> None:
    out = rendered("anthropic", window(written("anthropic")))
    assert out.system == ANTHROPIC_SYSTEM
    assert out.messages == ANTHROPIC


@pytest.mark.parametrize("source", formats.NAMES)
@pytest.mark.parametrize("target", formats.NAMES)
def test_any_format_reads_as_any_other_and_back(source: str, target: str) -> None:
    first = rendered(target, window(written(source)))
    # Written again through the target format, it reads back in the target format the same.
    again, pending = formats.parse(target, first.messages, system=first.system)
    assert pending == {}
    assert rendered(target, window(store(again))) == first
    # And it still reads as the source format.
    rendered(source, window(store(again)))


def test_a_summary_renders_as_a_system_message_and_redactions_as_placeholders() -> None:
    state = written("openai")
    s = Stream().add(created())
    for m in state.messages:
        s.add(MessageAppended(message_id=m.message_id, role=m.role, content=m.content,
                              name=m.name))  # fmt: skip
    s.add(MessageRedacted(message_id="m3"))  # the assistant's tool calls
    s.add(SummaryAdded(summary_id="s", text="Earlier: a picture.", through_message_id="m2"))
    w = window(s.state())
    chat = rendered("openai", w).messages
    assert {"role": "system", "content": "Earlier: a picture."} in chat
    redacted = next(m for m in chat if m.get("tool_calls"))
    assert redacted["content"] == formats.REDACTED
    assert [c["id"] for c in redacted["tool_calls"]] == ["call_1", "call_2"]
    out = rendered("anthropic", w)
    assert out.system is not None
    assert "Earlier: a picture." in msgspec.json.encode(out.system).decode()


def test_opaque_blocks_stay_in_their_own_format() -> None:
    w = window(written("anthropic"))
    chat = msgspec.json.encode(rendered("openai", w).messages)
    assert b"sig==" not in chat
    assert b"The user wants" not in chat
    assert b"ZW5jcnlwdGVk" not in msgspec.json.encode(rendered("responses", w).messages)
    w = window(written("responses"))
    assert b"gAAAA" not in msgspec.json.encode(rendered("anthropic", w).messages)


# -- property: random conversations with tool calls ---------------------------------------------

words = st.text(st.characters(codec="utf-8", categories=("L", "N", "P", "Zs")), min_size=1,
                max_size=12)  # fmt: skip
arguments = st.dictionaries(
    st.text("abcxyz", min_size=1, max_size=4),
    st.integers(-5, 5) | st.text("abc ", max_size=4) | st.booleans(),
    max_size=3,
)


@st.composite
def conversations(draw: st.DrawFn) -> list[NewMessage]:
    """A conversation every format can hold: an optional system prompt, user turns, and
    assistant turns that answer in text or call tools whose results follow."""
    out: list[NewMessage] = []
    if draw(st.booleans()):
        out.append(NewMessage(role="system", content=draw(words)))
    calls = 0
    rounds = draw(st.integers(1, 6))
    for round_ in range(rounds):
        out.append(NewMessage(role="user", content=draw(words)))
        while draw(st.booleans()):
            n = draw(st.integers(1, 3))
            ids = [f"call_{calls + i}" for i in range(n)]
            calls += n
            parts: list[Part] = [TextPart(text=draw(words))] if draw(st.booleans()) else []
            parts += [ToolCallPart(id=i, name=draw(st.sampled_from(["f", "g"])),
                                   arguments=draw(arguments)) for i in ids]  # fmt: skip
            out.append(NewMessage(role="assistant", content=parts))
            out += [NewMessage(role="tool", content=[Result(call_id=i, content=draw(words))])
                    for i in ids]  # fmt: skip
        # Two user turns in a row are one to Anthropic: the model answers before the next.
        if round_ < rounds - 1 or draw(st.booleans()):
            out.append(NewMessage(role="assistant", content=draw(words)))
    return out


def canonical(messages: list[NewMessage]) -> list[tuple[str, list[Part]]]:
    """(role, parts) of each message; a string is one text part."""
    return [
        (m.role, [TextPart(text=m.content)] if isinstance(m.content, str) else list(m.content))
        for m in messages
    ]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(conversation=conversations(), fmt=st.sampled_from(formats.NAMES))
def test_native_to_any_format_and_back_loses_nothing(
    conversation: list[NewMessage], fmt: str
) -> None:
    out = rendered(fmt, window(store(conversation)))
    back, pending = formats.parse(fmt, out.messages, system=out.system)
    assert pending == {}
    assert canonical(back) == canonical(conversation)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    conversation=conversations(),
    fmt=st.sampled_from(formats.NAMES),
    budget=st.integers(1, 400),
)
def test_trimmed_windows_are_valid_and_never_start_with_an_orphan_result(
    conversation: list[NewMessage], fmt: str, budget: int
) -> None:
    out = rendered(fmt, window(store(conversation), budget))
    first = next((m for m in out.messages if m.get("role") not in ("system", "developer")), None)
    if first is None:
        return
    assert first.get("role") != "tool"
    assert first.get("type") != "function_call_output"
    if fmt == "anthropic":
        content = first["content"]
        assert isinstance(content, str) or content[0]["type"] != "tool_result"


def test_what_the_sdks_hand_back_can_be_appended_as_it_is() -> None:
    from anthropic.types import Message
    from openai.types.chat import ChatCompletionMessage
    from openai.types.responses import Response

    chat = ChatCompletionMessage.model_validate({
        "role": "assistant", "content": None, "annotations": [],
        "tool_calls": [{"id": "call_1", "type": "function",
                        "function": {"name": "f", "arguments": '{"a": 1}'}}]})  # fmt: skip
    turn = chat.model_dump(exclude_none=True)
    result = {"role": "tool", "tool_call_id": "call_1", "content": "2"}
    messages, _ = formats.parse("openai", [turn, result])
    back = rendered("openai", window(store(messages))).messages
    # An empty annotations list says nothing; the message param has no such field.
    kept = {k: v for k, v in turn.items() if k != "annotations"}
    assert back == [{**kept, "content": None}, result]

    claude = Message.model_validate({
        "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
        "stop_reason": "tool_use", "stop_sequence": None,
        "usage": {"input_tokens": 1, "output_tokens": 1},
        "content": [
            {"type": "thinking", "thinking": "hm", "signature": "sig"},
            {"type": "text", "text": "Checking.", "citations": None},
            {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {"a": 1}},
        ]})  # fmt: skip
    blocks = [b.model_dump(exclude_none=True) for b in claude.content]
    results = {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1"}]}
    sent = [{"role": "assistant", "content": blocks}, results]
    messages, _ = formats.parse("anthropic", sent)
    assert rendered("anthropic", window(store(messages))).messages == sent

    response = Response.model_validate({
        "id": "resp_1", "object": "response", "created_at": 0, "model": "gpt-5",
        "parallel_tool_calls": True, "tool_choice": "auto", "tools": [],
        "output": [
            {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "x"},
            {"type": "message", "id": "msg_1", "role": "assistant", "status": "completed",
             "content": [{"type": "output_text", "text": "Hi.", "annotations": []}]},
            {"type": "function_call", "id": "fc_1", "call_id": "call_1", "name": "f",
             "arguments": "{}", "status": "completed"},
        ]})  # fmt: skip
    items = [i.model_dump(exclude_none=True) for i in response.output]
    items.append({"type": "function_call_output", "call_id": "call_1", "output": "ok"})
    messages, _ = formats.parse("responses", items)
    assert rendered("responses", window(store(messages))).messages == items
