"""The request formats of the model providers' SDKs, in and out: what the REST and MCP doors
share to take OpenAI's and Anthropic's message shapes and to hand a window back in them.

One module per format (``openai``: Chat Completions, ``responses``: OpenAI Responses,
``anthropic``: Anthropic Messages) parses the provider's messages into the stored (native)
ones and renders a window's turns (``common.turns``) back. Any format reads what any other
wrote. The names are ``projections.overhead.FORMATS``: the window counts each format's own
framing.

Why here and not in ``projections``: these are other services' wire shapes, like the REST
and MCP ones, shared by two doors; the domain stays provider-neutral (its content parts can
hold what the providers send, and it knows each format's token framing, nothing more). This
package depends only on ``eventstore``, ``projections`` and msgspec.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from eventstore import PINNED_ROLES, ToolCallPart, ToolResultPart
from projections import NewMessage, Window
from projections.overhead import FORMATS
from projections.service import Caller, Contexts

from . import anthropic, openai, responses
from .common import REDACTED, FormatError, fail, turns

Format = Literal["openai", "responses", "anthropic"]
"""A provider's request format (``projections.overhead.FORMATS``)."""

NAMES: tuple[str, ...] = tuple(FORMATS)

__all__ = ["NAMES", "REDACTED", "Format", "FormatError", "Rendered", "parse", "render"]


@dataclass(frozen=True)
class Rendered:
    """A window in a provider's format: ``messages`` to send, and Anthropic's top-level
    ``system`` (None for the other formats, whose system messages are in ``messages``)."""

    messages: list[dict[str, Any]]
    system: str | list[dict[str, Any]] | None = None


def render(fmt: str, window: Window) -> Rendered:
    """``window``'s entries as format ``fmt`` sends them."""
    shown = turns(window.entries)
    if fmt == "anthropic":
        system, messages = anthropic.render(shown)
        return Rendered(messages, system)
    if fmt == "responses":
        return Rendered(responses.render(shown))
    return Rendered(openai.render(shown))


def parse(
    fmt: str, messages: list[Any], *, system: Any = None, path: str = "$.messages"
) -> tuple[list[NewMessage], dict[str, str]]:
    """The stored messages of a provider's ``messages`` (or Responses items) at ``path``, and
    the tool results that answer a call not in them: call id -> path of the field (the
    context must hold that call: ``check_answers``). FormatError for anything invalid,
    including a tool result whose call is not the one the latest assistant turn before it
    made."""
    if fmt == "anthropic":
        parsed, paths = anthropic.parse(system, messages, path)
    elif fmt == "responses":
        parsed, paths = responses.parse(messages, path)
    else:
        parsed, paths = openai.parse(messages, path)
    return parsed, _answers(parsed, paths)


def _answers(messages: list[NewMessage], paths: list[str | None]) -> dict[str, str]:
    """Check that each tool result answers a call of the latest assistant message before it;
    those before any assistant message are returned, for the context to answer."""
    calls: set[str] | None = None
    pending: dict[str, str] = {}
    for message, path in zip(messages, paths, strict=True):
        if message.role == "assistant":
            calls = _calls(message.content)
            continue
        if isinstance(message.content, str) or message.role in PINNED_ROLES:
            continue
        for part in message.content:
            if not isinstance(part, ToolResultPart):
                continue
            where = path or "$"
            if calls is None:
                pending[part.call_id] = where
            elif part.call_id not in calls:
                fail(f"tool result {part.call_id!r} answers no tool call of the assistant "
                     "message before it", where)  # fmt: skip
    return pending


def _calls(content: object) -> set[str]:
    if isinstance(content, str) or not isinstance(content, list):
        return set()
    return {p.id for p in content if isinstance(p, ToolCallPart)}


PAGE = 100
"""How far back ``check_answers`` looks for the latest assistant message."""


async def check_answers(
    contexts: Contexts, caller: Caller, context_id: str, pending: dict[str, str]
) -> None:
    """FormatError unless the context's latest assistant message (within its last ``PAGE``
    messages) made every call in ``pending`` (call id -> path)."""
    if not pending:
        return
    page = await contexts.messages(caller, context_id, limit=PAGE, backward=True)
    calls = next((_calls(m.content) for m in page.messages if m.role == "assistant"), set())
    for call_id, path in pending.items():
        if call_id not in calls:
            fail(f"tool result {call_id!r} answers no tool call of the latest assistant "
                 "message", path)  # fmt: skip
