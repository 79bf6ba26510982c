"""The official SDKs' own types as the judge of what ctxlog renders: each format's messages
are validated with pydantic's TypeAdapter over the openai and anthropic TypedDicts (test
dependencies only; ctxlog never imports them).

pydantic ignores keys a TypedDict does not declare and checks ``Iterable`` fields lazily, so
``validate`` materialises every iterator (which runs the deferred checks) and then requires
the validated value to equal the input: a key the SDK does not know, or a value it would
coerce, fails too.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from typing import Any

from anthropic.types import MessageParam, TextBlockParam
from openai.types.chat import ChatCompletionMessageParam
from openai.types.responses import ResponseInputItemParam
from pydantic import TypeAdapter

ADAPTERS: dict[str, TypeAdapter[Any]] = {
    "openai": TypeAdapter(list[ChatCompletionMessageParam]),
    "responses": TypeAdapter(list[ResponseInputItemParam]),
    "anthropic": TypeAdapter(list[MessageParam]),
}
SYSTEM: TypeAdapter[Any] = TypeAdapter(str | list[TextBlockParam])


def _materialise(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _materialise(v) for k, v in value.items()}
    if isinstance(value, str | bytes | int | float | bool) or value is None:
        return value
    if isinstance(value, Iterable):
        return [_materialise(v) for v in value]
    return value


def validate(fmt: str, messages: list[dict[str, Any]], system: Any = None) -> None:
    """AssertionError (or pydantic's ValidationError) unless ``messages`` (and Anthropic's
    ``system``) are exactly what the SDK's types accept."""
    validated = _materialise(ADAPTERS[fmt].validate_python(messages))
    assert validated == messages, (validated, messages)
    if system is not None:
        assert fmt == "anthropic"
        assert _materialise(SYSTEM.validate_python(system)) == system


def anthropic_alternates(messages: list[dict[str, Any]]) -> None:
    """AssertionError unless the turns strictly alternate user/assistant, tool results are
    user blocks that come first in their turn and answer the assistant turn just before."""
    roles = [m["role"] for m in messages]
    assert all(a != b for a, b in itertools.pairwise(roles)), roles
    calls: set[str] = set()
    for m in messages:
        blocks = m["content"] if isinstance(m["content"], list) else []
        kinds = [b["type"] for b in blocks]
        if m["role"] == "user":
            results = [b["tool_use_id"] for b in blocks if b["type"] == "tool_result"]
            assert kinds[: len(results)] == ["tool_result"] * len(results), kinds
            assert set(results) <= calls, (results, calls)
            calls = set()
        else:
            assert "tool_result" not in kinds
            calls = {b["id"] for b in blocks if b["type"] == "tool_use"}
