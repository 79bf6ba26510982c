"""Events and states as the ``ctxlog`` command shows them: one-line summaries for tables,
and JSON records in the API's shapes (plus what an operator also needs, such as the tenant)."""

from __future__ import annotations

import json
from typing import Any

import msgspec
from rich.text import Text

from eventstore import (
    Content,
    ContextCreated,
    ContextDeleted,
    ContextForked,
    ContextRolledBack,
    FilePart,
    ImagePart,
    MessageAppended,
    MessageEdited,
    MessageRedacted,
    MetadataUpdated,
    OpaquePart,
    RecordedEvent,
    RefusalPart,
    SubjectErased,
    SummaryAdded,
    TextPart,
    ToolCallPart,
    ToolResultPart,
    WindowConfigured,
    WindowServed,
    WindowSettings,
)
from projections import ContextState

from ..rest.render import render_context, render_event


def excerpt(content: Content, width: int = 72) -> str:
    """Content as one line of text, cut to ``width`` characters."""
    text = " ".join(_texts(content)).replace("\n", " ⏎ ")
    return text if len(text) <= width else text[: width - 1] + "…"


def _texts(content: Content | list[Any]) -> list[str]:
    if isinstance(content, str):
        return [content]
    out: list[str] = []
    for part in content:
        match part:
            case TextPart(text=text):
                out.append(text)
            case ImagePart(url=url):
                out.append(f"[image {url}]" if url else "[image]")
            case FilePart(name=name, uri=uri, file_id=file_id):
                out.append(f"[file {name or uri or file_id or ''}]".replace(" ]", "]"))
            case ToolCallPart(name=name, arguments=arguments):
                out.append(f"[call {name}({json.dumps(arguments, ensure_ascii=False)})]")
            case ToolResultPart(content=inner, is_error=is_error):
                label = "tool error" if is_error else "tool result"
                out.append(f"[{label}: {' '.join(_texts(inner))}]")
            case RefusalPart(text=text):
                out.append(f"[refusal: {text}]")
            case OpaquePart(format=fmt, data=data):
                out.append(f"[{fmt} {data.get('type', 'block')}]")
    return out


_STYLES = {
    "message.appended": "green",
    "message.edited": "yellow",
    "message.redacted": "red",
    "context.deleted": "red",
    "context.rolled_back": "magenta",
    "context.forked": "magenta",
    "summary.added": "blue",
    "window.served": "cyan",
}


def event_type_text(type_: str) -> Text:
    """An event's type, coloured by kind (colours show on a terminal only)."""
    return Text(type_, _STYLES.get(type_, ""))


def short(identifier: str | None) -> str:
    """A UUID's first 8 characters (enough to tell ids apart on screen)."""
    return "-" if identifier is None else identifier[:8]


def window_text(window: WindowSettings | None) -> str:
    """Window settings as ``key=value`` pairs (only those set)."""
    if window is None:
        return "default"
    fields = msgspec.structs.asdict(window)
    return " ".join(f"{k}={v}" for k, v in fields.items() if v is not None) or "default"


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(", ", ": "))


def describe(event: Any) -> str:
    """What one event did, in one line."""
    match event:
        case ContextCreated(metadata=metadata, window=window):
            return f"created; metadata {_json(metadata)}; window {window_text(window)}"
        case MessageAppended(message_id=mid, role=role, content=content, name=name):
            who = role if name is None else f"{role} {name}"
            return f"+ [{who}] {excerpt(content)}  ({short(mid)})"
        case MessageEdited(message_id=mid, content=content):
            return f"~ edited {short(mid)}: {excerpt(content)}"
        case MessageRedacted(message_id=mid, reason=reason):
            return f"✗ redacted {short(mid)}" + (f": {reason}" if reason else "")
        case MetadataUpdated(patch=patch):
            return f"metadata patch {_json(patch)}"
        case WindowConfigured(window=window):
            return f"window {window_text(window)}"
        case SummaryAdded(through_message_id=through, text=text):
            return f"Σ summary through {short(through)}: {excerpt(text)}"
        case ContextRolledBack(to_version=target, reason=reason):
            return f"↺ rolled back to v{target}" + (f": {reason}" if reason else "")
        case ContextForked(parent_id=parent, parent_version=at):
            return f"⑂ forked from {parent} v{at}"
        case ContextDeleted(reason=reason):
            return "deleted" + (f": {reason}" if reason else "")
        case WindowServed(message_ids=ids, total_tokens=tokens, model=model, max_tokens=budget):
            budget_text = "" if budget is None else f" of {budget}"
            model_text = "" if model is None else f" to {model}"
            return f"served {len(ids)} messages, {tokens}{budget_text} tokens{model_text}"
        case SubjectErased(subject=subject):
            return f"erased subject {subject}: its content reads as [erased]"
    return type(event).__name__


def event_record(rec: RecordedEvent, **extra: Any) -> dict[str, Any]:
    """An event as ``GET /api/v1/events`` renders it for an open server (the log's position
    and chain hash: an operator sees every tenant), plus its tenant and ``extra``."""
    record: dict[str, Any] = msgspec.to_builtins(render_event(rec, rec.position))
    record["tenant"] = rec.metadata.tenant
    record.update(extra)
    return record


def state_record(state: ContextState) -> dict[str, Any]:
    """A state as ``GET /api/v1/contexts/{id}`` renders it, plus tenant and deleted."""
    record: dict[str, Any] = msgspec.to_builtins(render_context(state))
    record["tenant"] = state.tenant
    record["deleted"] = state.deleted
    return record
