"""Events and states as the ``ctxlog`` command shows them: one-line summaries for tables,
and JSON records in the API's shapes (plus what an operator also needs, such as the tenant)."""

from __future__ import annotations

import bisect
import json
from collections.abc import Callable, Iterable
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


class ShortIds:
    """Ids as shown in tables: their last 8 characters, or as many more as it takes to tell
    apart the ids shown together. Ids are UUIDv7s, whose first 12 hex digits are the
    millisecond they were made: every id of one minute starts alike, while the tail is
    random. Register the ids of a table first (``add``) so that each shows its own."""

    WIDTH = 8

    def __init__(self, ids: Iterable[str | None] = ()) -> None:
        self._tails: list[str] = []
        """Every id registered, reversed, sorted: ids sharing a tail are neighbours."""
        self._widths: dict[str, int] = {}
        self.add(ids)

    def add(self, ids: Iterable[str | None]) -> None:
        """Register ``ids``; those that share a tail with another get a longer one."""
        for identifier in ids:
            if identifier is None or identifier in self._widths:
                continue
            tail = identifier[::-1]
            at = bisect.bisect_left(self._tails, tail)
            width = self.WIDTH
            for other in self._tails[max(at - 1, 0) : at + 1]:
                shared = _common_prefix(tail, other)
                width = max(width, shared + 1)
                key = other[::-1]
                self._widths[key] = max(self._widths[key], shared + 1)
            self._tails.insert(at, tail)
            self._widths[identifier] = width

    def __call__(self, identifier: str | None) -> str:
        """How ``identifier`` is shown ("-" for none)."""
        if identifier is None:
            return "-"
        self.add([identifier])
        return identifier[-self._widths[identifier] :]


def _common_prefix(a: str, b: str) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def short(identifier: str | None) -> str:
    """One id as shown alone: its last 8 characters (see ShortIds)."""
    return ShortIds()(identifier)


def mentioned(event: Any) -> list[str]:
    """The message ids ``describe`` shows for ``event`` (to register with ShortIds first)."""
    match event:
        case MessageAppended(message_id=mid) | MessageEdited(message_id=mid):
            return [mid]
        case MessageRedacted(message_id=mid):
            return [mid]
        case SummaryAdded(through_message_id=through):
            return [through]
    return []


def window_text(window: WindowSettings | None) -> str:
    """Window settings as ``key=value`` pairs (only those set)."""
    if window is None:
        return "default"
    fields = msgspec.structs.asdict(window)
    return " ".join(f"{k}={v}" for k, v in fields.items() if v is not None) or "default"


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(", ", ": "))


def describe(event: Any, short: Callable[[str | None], str] = short) -> str:
    """What one event did, in one line; ids shown by ``short`` (a ShortIds of the listing)."""
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
