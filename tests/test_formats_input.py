"""A message that is invalid in its declared format is refused with the path of the field at
fault; provider fields ctxlog does not model are either kept or refused by name, never
dropped."""

from __future__ import annotations

from typing import Any

import pytest

from api import formats
from api.formats import FormatError

USER = {"role": "user", "content": "hi"}
CALL = {"role": "assistant", "content": None, "tool_calls": [
    {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]}  # fmt: skip
TOOL_USE = {"role": "assistant", "content": [
    {"type": "tool_use", "id": "t1", "name": "f", "input": {}}]}  # fmt: skip

BAD: list[tuple[str, list[Any], str, str]] = [
    # (format, messages, path, words of the message)
    ("openai", [USER, CALL, USER, {"role": "tool", "content": "x"}],
     "$.messages[3].tool_call_id", "required"),
    ("openai", [{"role": "user", "content": [{"type": "video", "url": "x"}]}],
     "$.messages[0].content[0].type", "unknown content part type 'video'"),
    ("openai", [{"role": "wizard", "content": "x"}], "$.messages[0].role", "one of"),
    ("openai", [{"role": "user", "content": "x", "colour": "red"}],
     "$.messages[0].colour", "unknown field 'colour'"),
    ("openai", [{"role": "function", "name": "f", "content": "x"}],
     "$.messages[0].role", "deprecated"),
    ("openai", [{"role": "assistant", "audio": {"id": "a"}}], "$.messages[0].audio",
     "not stored"),
    ("openai", [{"role": "user", "content": [{"type": "input_audio",
                 "input_audio": {"data": "AA==", "format": "wav"}}]}],
     "$.messages[0].content[0].type", "transcript"),
    ("openai", [CALL, {"role": "tool", "tool_call_id": "c9", "content": "x"}],
     "$.messages[1].tool_call_id", "answers no tool call"),
    ("openai", ["hello"], "$.messages[0]", "expected a message object"),
    ("anthropic", [USER, {"role": "assistant", "content": "ok"}, {"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": "t1", "content": "x"}]}],
     "$.messages[2].content[0].tool_use_id", "answers no tool call"),
    ("anthropic", [TOOL_USE, {"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": "t2", "content": "x"}]}],
     "$.messages[1].content[0].tool_use_id", "answers no tool call"),
    ("anthropic", [{"role": "user", "content": [{"type": "tool_use", "id": "t", "name": "f",
                                                   "input": {}}]}],
     "$.messages[0].content[0].type", "user turn"),
    ("anthropic", [{"role": "user", "content": [{"type": "image", "source": {
        "type": "base64", "media_type": "image/png", "data": "not base64!"}}]}],
     "$.messages[0].content[0].source.data", "base64"),
    ("anthropic", [{"role": "assistant", "content": [{"type": "server_tool_use", "id": "s",
                                                        "name": "web_search", "input": {}}]}],
     "$.messages[0].content[0].type", "unknown content block type"),
    ("anthropic", [{"role": "system", "content": "x"}], "$.messages[0].role", "one of"),
    ("responses", [{"type": "web_search_call", "id": "ws", "status": "completed"}],
     "$.messages[0].type", "not stored by ctxlog"),
    ("responses", [{"type": "function_call_output", "output": "x"}],
     "$.messages[0].call_id", "required"),
    ("responses", [{"role": "user", "content": [{"type": "input_text", "text": "x",
                                                  "bold": True}]}],
     "$.messages[0].content[0].bold", "unknown field"),
]  # fmt: skip


@pytest.mark.parametrize(("fmt", "messages", "path", "words"), BAD)
def test_invalid_messages_name_the_field(
    fmt: str, messages: list[Any], path: str, words: str
) -> None:
    with pytest.raises(FormatError) as caught:
        formats.parse(fmt, messages)
    assert caught.value.path == path
    assert words in caught.value.message


def test_a_result_before_any_call_is_left_for_the_context_to_answer() -> None:
    _, pending = formats.parse(
        "anthropic",
        [{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1"}]}],
    )
    assert pending == {"t1": "$.messages[0].content[0].tool_use_id"}


def test_provider_fields_are_kept_for_their_format_only() -> None:
    messages, _ = formats.parse("anthropic", [{"role": "user", "content": [
        {"type": "text", "text": "hi", "cache_control": {"type": "ephemeral", "ttl": "1h"}}]}],
    )  # fmt: skip
    content = messages[0].content
    assert isinstance(content, list)
    assert content[0].extra == {"anthropic": {"cache_control": {"type": "ephemeral", "ttl": "1h"}}}  # type: ignore[union-attr]
