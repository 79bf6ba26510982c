"""Anthropic Messages: ``system`` and ``messages`` as ``messages.create(system=..., messages=...)``
takes them (the anthropic SDK's ``MessageParam`` and ``TextBlockParam``).

In: a top-level ``system`` (a string or text blocks) is one stored ``system`` message. A
``user`` turn is a ``user`` message, except that its ``tool_result`` blocks are each stored
as a ``tool`` message (in turn order, before the rest of the turn), the shape OpenAI gives
them, so that a conversation converts both ways. An ``assistant`` turn is one message: text,
``tool_use`` (its ``input`` as the arguments), and ``thinking``/``redacted_thinking`` kept
opaque (verbatim, signature included). Blocks: text (``cache_control`` and ``citations``
kept), image (base64, url, file), document (base64 PDF, plain text, url, file; ``title``,
``context``, ``citations``, ``cache_control`` kept). Every ``tool_result`` must answer a
``tool_use`` of the turn before it.

Out: pinned messages and the summary become ``system`` (a string when that is all it was,
else text blocks); the rest strictly alternating ``user``/``assistant`` turns, tool results
as ``user`` ``tool_result`` blocks (first in their turn), consecutive same-role turns merged.
"""

from __future__ import annotations

from typing import Any

import msgspec

from eventstore import (
    PINNED_ROLES,
    Extra,
    FilePart,
    ImagePart,
    OpaquePart,
    Part,
    RefusalPart,
    TextPart,
    ToolCallPart,
    ToolResultPart,
)
from projections import NewMessage

from .common import Obj, Shown, check_base64, fail, file_label, opaque, with_extra

NAME = "anthropic"
KEPT = ("cache_control",)
IMAGE_TYPES = ("image/jpeg", "image/png", "image/gif", "image/webp")
OPAQUE = ("thinking", "redacted_thinking")
_json = msgspec.json.Encoder()


# -- in ---------------------------------------------------------------------------------------


def parse(system: Any, messages: list[Any], path: str) -> tuple[list[NewMessage], list[str | None]]:
    """Stored messages for a Messages request's ``system`` (at ``$.system``) and ``messages``
    (at ``path``), and for each the path of the call id it answers (tool results; else None);
    FormatError if invalid."""
    out: list[NewMessage] = []
    paths: list[str | None] = []
    if system is not None:
        out.append(NewMessage(role="system", content=_system(system, "$.system")))
        paths.append(None)
    for i, raw in enumerate(messages):
        o = Obj(raw, f"{path}[{i}]", "a message object")
        role = o.one_of("role", ("user", "assistant"))
        value = o.get("content")
        where = o.at("content")
        if role == "assistant":
            content = value if isinstance(value, str) else _blocks(value, where, assistant=True)
            out.append(NewMessage(role="assistant", content=content))
            paths.append(None)
        else:
            for message, answers in _user(value, where):
                out.append(message)
                paths.append(answers)
        o.done()
    return out, paths


def _system(value: Any, path: str) -> str | list[Part]:
    if isinstance(value, str):
        return value
    if not isinstance(value, list):
        fail("system must be a string or an array of text blocks", path)
    parts: list[Part] = []
    for i, raw in enumerate(value):
        b = Obj(raw, f"{path}[{i}]", "a text block")
        if b.req("type") != "text":
            fail("system blocks must be text", b.at("type"))
        parts.append(_text(b))
        b.done()
    return parts


def _text(b: Obj) -> TextPart:
    return TextPart(text=b.req("text"), extra=b.kept(NAME, (*KEPT, "citations")))


def _user(value: Any, path: str) -> list[tuple[NewMessage, str | None]]:
    if isinstance(value, str):
        return [(NewMessage(role="user", content=value), None)]
    blocks = _blocks(value, path, assistant=False)
    out: list[tuple[NewMessage, str | None]] = [
        (NewMessage(role="tool", content=[p]), f"{path}[{i}].tool_use_id")
        for i, p in enumerate(blocks)
        if isinstance(p, ToolResultPart)
    ]
    rest: list[Part] = [p for p in blocks if not isinstance(p, ToolResultPart)]
    if rest or not out:
        out.append((NewMessage(role="user", content=rest), None))
    return out


def _blocks(value: Any, path: str, *, assistant: bool) -> list[Part]:
    if not isinstance(value, list):
        fail("content must be a string or an array of content blocks", path)
    parts: list[Part] = []
    for i, raw in enumerate(value):
        b = Obj(raw, f"{path}[{i}]", "a content block")
        kind = b.req("type")
        allowed = ("text", "tool_use", *OPAQUE) if assistant else (
            "text", "image", "document", "tool_result")  # fmt: skip
        if kind not in allowed:
            turn = "an assistant" if assistant else "a user"
            fail(f"unknown content block type {kind!r} in {turn} turn (allowed: "
                 f"{', '.join(allowed)})", b.at("type"))  # fmt: skip
        parts.append(_block(b, kind))
        b.done()
    return parts


def _block(b: Obj, kind: str) -> Part:
    match kind:
        case "text":
            return _text(b)
        case "image":
            return _image(b)
        case "document":
            return _document(b)
        case "tool_use":
            call_id, name = b.req("id"), b.req("name")
            arguments = b.get("input")
            if not isinstance(arguments, dict):
                fail("input must be an object", b.at("input"))
            return ToolCallPart(id=call_id, name=name, arguments=arguments,
                                extra=b.kept(NAME, (*KEPT, "caller", "toolset_name")))  # fmt: skip
        case "tool_result":
            call_id = b.req("tool_use_id")
            content: str | list[TextPart | ImagePart | FilePart] = ""
            value = b.get("content")
            if isinstance(value, str):
                content = value
            elif value is not None:
                content = _result_blocks(value, b.at("content"))
            is_error = b.get("is_error")
            if is_error is not None and not isinstance(is_error, bool):
                fail("is_error must be a boolean", b.at("is_error"))
            extra = b.kept(NAME, (*KEPT, "toolset_name"))
            if "is_error" in b.value:  # kept as sent: given false is not the same as not given
                extra = {NAME: {**(extra or {}).get(NAME, {}), "is_error": is_error}}
            return ToolResultPart(call_id=call_id, content=content, is_error=bool(is_error),
                                  extra=extra)  # fmt: skip
    # thinking, redacted_thinking: the provider's signed state, verbatim.
    data = dict(b.value)
    for key in ("thinking", "signature") if kind == "thinking" else ("data",):
        b.req(key)
    for key in data:
        b.get(key)
    return OpaquePart(format=NAME, data=data)


def _result_blocks(value: Any, path: str) -> list[TextPart | ImagePart | FilePart]:
    if not isinstance(value, list):
        fail("content must be a string or an array of blocks", path)
    out: list[TextPart | ImagePart | FilePart] = []
    for i, raw in enumerate(value):
        b = Obj(raw, f"{path}[{i}]", "a content block")
        kind = b.req("type")
        if kind == "text":
            out.append(_text(b))
        elif kind == "image":
            out.append(_image(b))
        elif kind == "document":
            out.append(_document(b))
        else:
            fail(f"unknown block type {kind!r} in a tool_result (allowed: text, image, "
                 "document)", b.at("type"))  # fmt: skip
        b.done()
    return out


def _image(b: Obj) -> ImagePart:
    s = Obj(b.get("source"), b.at("source"))
    kind = s.one_of("type", ("base64", "url", "file"))
    extra = b.kept(NAME, (*KEPT, "transformations"))
    part: ImagePart
    if kind == "base64":
        media_type, data = s.one_of("media_type", IMAGE_TYPES), s.req("data")
        check_base64(data, s.at("data"))
        part = ImagePart(data=data, media_type=media_type, extra=extra)
    elif kind == "url":
        part = ImagePart(url=s.req("url"), extra=extra)
    else:
        part = ImagePart(file_id=s.req("file_id"), extra=extra)
    s.done()
    return part


def _document(b: Obj) -> FilePart:
    s = Obj(b.get("source"), b.at("source"))
    kind = s.one_of("type", ("base64", "text", "url", "file", "content"))
    extra: Extra = b.kept(NAME, (*KEPT, "citations", "context"))
    title = b.text("title", required=False, null=True)
    part: FilePart
    if kind == "base64":
        data = s.req("data")
        s.one_of("media_type", ("application/pdf",))
        check_base64(data, s.at("data"))
        part = FilePart(name=title, media_type="application/pdf", data=data, extra=extra)
    elif kind == "text":
        s.one_of("media_type", ("text/plain",))
        part = FilePart(name=title, media_type="text/plain", text=s.req("data"), extra=extra)
    elif kind == "url":
        part = FilePart(name=title, uri=s.req("url"), media_type="application/pdf", extra=extra)
    elif kind == "file":
        part = FilePart(name=title, file_id=s.req("file_id"), extra=extra)
    else:
        fail("documents with a content source are not stored by ctxlog; send their blocks "
             "in the turn", s.at("type"))  # fmt: skip
    s.done()
    return part


# -- out --------------------------------------------------------------------------------------


def render(turns: list[Shown]) -> tuple[str | list[dict[str, Any]] | None, list[dict[str, Any]]]:
    """(system, messages) of the turns: ``system`` None when there is none."""
    pinned = [t for t in turns if t.role in PINNED_ROLES]
    system: str | list[dict[str, Any]] | None = None
    if len(pinned) == 1 and isinstance(pinned[0].content, str):
        system = pinned[0].content
    elif pinned:
        system = [b for t in pinned for b in _blocks_out(t.content) if b["type"] == "text"]
    messages: list[dict[str, Any]] = []
    last = ""
    for t in turns:
        role, content = t.role, t.content
        if role in PINNED_ROLES:
            continue
        side = "assistant" if role == "assistant" else "user"
        body = content if type(content) is str else _blocks_out(content)
        if side == last:
            _merge(messages[-1], body)
        else:
            messages.append({"role": side, "content": body})
            last = side
    return system, messages


def _merge(turn: dict[str, Any], content: str | list[dict[str, Any]]) -> None:
    before = turn["content"]
    blocks = [{"type": "text", "text": before}] if isinstance(before, str) else before
    blocks = blocks + ([{"type": "text", "text": content}] if isinstance(content, str) else content)
    # Anthropic wants a turn's tool results before anything else in it.
    turn["content"] = sorted(blocks, key=lambda b: b["type"] != "tool_result")


def _blocks_out(content: str | list[Any]) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    return [b for b in map(_block_out, content) if b is not None]


def _block_out(p: Part) -> dict[str, Any] | None:
    kind = type(p)  # the common blocks first, without pattern matching: a hot path
    if kind is TextPart:
        assert isinstance(p, TextPart)
        return with_extra({"type": "text", "text": p.text}, p, NAME)
    if kind is ToolCallPart and type(p.extra) is not dict:  # type: ignore[union-attr]
        assert isinstance(p, ToolCallPart)
        if not isinstance(p.arguments_json, str):
            return {"type": "tool_use", "id": p.id, "name": p.name, "input": p.arguments}
    if kind is ToolResultPart and type(p.extra) is not dict:  # type: ignore[union-attr]
        assert isinstance(p, ToolResultPart)
        if isinstance(p.content, str) and p.content and not p.is_error:
            return {"type": "tool_result", "tool_use_id": p.call_id, "content": p.content}
    match p:
        case TextPart(text=text) | RefusalPart(text=text):
            return with_extra({"type": "text", "text": text}, p, NAME)
        case ImagePart():
            if p.data:
                source: dict[str, Any] = {"type": "base64", "data": p.data,
                                          "media_type": p.media_type or "image/png"}  # fmt: skip
            elif p.url:
                source = {"type": "url", "url": p.url}
            elif isinstance(p.file_id, str):
                source = {"type": "file", "file_id": p.file_id}
            else:
                return {"type": "text", "text": "[image]"}
            return with_extra({"type": "image", "source": source}, p, NAME)
        case FilePart():
            return _document_out(p)
        case ToolCallPart():
            arguments = p.arguments
            if isinstance(p.arguments_json, str) and not arguments:
                raw = p.arguments_json.strip()
                arguments = {} if raw in ("", "{}") else {"arguments": p.arguments_json}
            block = {"type": "tool_use", "id": p.id, "name": p.name, "input": arguments}
            return with_extra(block, p, NAME)
        case ToolResultPart():
            result: dict[str, Any] = {"type": "tool_result", "tool_use_id": p.call_id}
            if isinstance(p.content, str):
                if p.content:
                    result["content"] = p.content
            else:
                result["content"] = [b for b in map(_block_out, p.content) if b is not None]
            if p.is_error:
                result["is_error"] = True
            return with_extra(result, p, NAME)
        case OpaquePart():
            return None if opaque(p, NAME) else dict(p.data)


def _document_out(p: FilePart) -> dict[str, Any]:
    if isinstance(p.text, str):
        source: dict[str, Any] = {"type": "text", "media_type": "text/plain", "data": p.text}
    elif isinstance(p.data, str) and p.media_type in (None, "application/pdf"):
        source = {"type": "base64", "media_type": "application/pdf", "data": p.data}
    elif p.file_id:
        source = {"type": "file", "file_id": p.file_id}
    elif p.uri:
        source = {"type": "url", "url": p.uri}
    else:
        return {"type": "text", "text": f"[file {file_label(p)}]"}
    block: dict[str, Any] = {"type": "document", "source": source}
    if p.name:
        block["title"] = p.name
    return with_extra(block, p, NAME)
