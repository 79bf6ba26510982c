"""The prompts: ``continue_conversation`` turns a context's window into prompt messages.

MCP prompt messages are ``user`` or ``assistant``; system messages, tool results and the
summary become ``user`` messages that say what they are, so nothing of the window is lost.
"""

from __future__ import annotations

from typing import Any

import msgspec

import eventstore as es
import projections as pj
from eventstore import (
    Content,
    FilePart,
    ImagePart,
    OpaquePart,
    RefusalPart,
    TextPart,
    ToolCallPart,
    ToolResultPart,
)
from projections.service import Caller, Contexts

from .protocol import invalid_params

PROMPTS: list[dict[str, Any]] = [
    {
        "name": "continue_conversation",
        "title": "Continue a conversation",
        "description": "The context's window (what fits its token budget) as prompt messages, "
        "ready for the model to continue the conversation.",
        "arguments": [
            {"name": "context_id", "description": "The context's id (a UUID)", "required": True},
            {
                "name": "max_tokens",
                "description": "The token budget (default: the context's window settings)",
                "required": False,
            },
        ],
    }
]


def _arguments(params: dict[str, Any]) -> tuple[str, int | None]:
    name = params.get("name")
    if name != "continue_conversation":
        raise invalid_params(f"Unknown prompt: {name!r}" if isinstance(name, str) else "no name")
    arguments = params.get("arguments") or {}
    if not isinstance(arguments, dict) or not all(isinstance(v, str) for v in arguments.values()):
        raise invalid_params("prompt arguments are an object of strings")
    unknown = set(arguments) - {"context_id", "max_tokens"}
    if unknown:
        raise invalid_params(f"unknown prompt arguments: {', '.join(sorted(unknown))}")
    context_id = arguments.get("context_id")
    if not context_id:
        raise invalid_params("continue_conversation needs context_id")
    raw = arguments.get("max_tokens")
    if raw is None or raw == "":
        return context_id, None
    if not raw.isdigit() or not 1 <= int(raw) <= 10_000_000:
        raise invalid_params("max_tokens must be a positive integer")
    return context_id, int(raw)


async def get_prompt(contexts: Contexts, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
    """``prompts/get``; RpcError -32602 for an unknown prompt, bad arguments or a context the
    caller cannot read."""
    context_id, max_tokens = _arguments(params)
    try:
        window = await contexts.window(caller, context_id.lower(), max_tokens=max_tokens)
    except (pj.ContextNotFound, pj.ContextIsDeleted, es.InvalidStreamId):
        raise invalid_params(f"context not found: {context_id[:64]!r}") from None
    except (pj.InvalidCommand, pj.UnknownModel, pj.EncodingUnavailable) as e:
        raise invalid_params(str(e)) from None
    messages = [_message(entry) for entry in window.entries]
    left = sum(o.count for o in window.left_out)
    description = (
        f"Context {window.context_id} at version {window.version}: {len(messages)} messages, "
        f"{window.total_tokens} tokens" + (f"; {left} older messages left out" if left else "")
    )
    return {"description": description, "messages": messages}


def _message(entry: pj.WindowEntry) -> dict[str, Any]:
    text = _text(entry.content)
    if entry.kind == "summary":
        role, text = "user", f"[Summary of the earlier conversation]\n{text}"
    elif entry.role in es.PINNED_ROLES:  # MCP prompts have no system role
        role, text = "user", f"[{entry.role.capitalize()}]\n{text}"
    elif entry.role == "tool":
        label = f"[Tool result: {entry.name}]" if entry.name else "[Tool result]"
        role, text = "user", f"{label}\n{text}"
    else:
        role = entry.role
    if entry.redacted:
        text = text or "[redacted]"
    return {"role": role, "content": {"type": "text", "text": text}}


def _text(content: Content) -> str:
    if isinstance(content, str):
        return content
    pieces: list[str] = []
    for part in content:
        match part:
            case TextPart(text=text):
                pieces.append(text)
            case ToolCallPart(name=name, arguments=arguments):
                args = msgspec.json.encode(arguments).decode()
                pieces.append(f"[Tool call: {name}({args})]")
            case ToolResultPart(content=inner, is_error=failed):
                body = inner if isinstance(inner, str) else _text(list(inner))
                pieces.append(("[Tool error] " if failed else "[Tool result] ") + body)
            case ImagePart(url=url):
                pieces.append(f"[Image: {url}]" if url else "[Image]")
            case RefusalPart(text=text):
                pieces.append(f"[Refusal] {text}")
            case FilePart():
                pieces.append(f"[File: {part.name or part.uri or part.file_id or '?'}]")
            case OpaquePart():
                pass  # a provider's own reasoning state: nothing a prompt can show
    return "\n".join(pieces)
