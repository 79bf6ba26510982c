"""OpenAI Chat Completions: ``messages`` as ``chat.completions.create(messages=...)`` takes them
(the openai SDK's ``ChatCompletionMessageParam``).

In: ``developer``/``system`` (text), ``user`` (text, ``image_url``, ``file``), ``assistant``
(text, ``refusal``, ``tool_calls`` with ``content`` null), ``tool`` (``tool_call_id``). Each
message is one stored message with its role and ``name``; a tool message is a ``tool``
message holding one tool result. ``prompt_cache_breakpoint`` on a part is kept. Refused with
a message saying why: the deprecated ``function`` role and ``function_call``, ``audio``
(ctxlog does not keep audio), custom tool calls.

Out: one message per stored message, except that a message holding several tool results
(written in another format) becomes one ``tool`` message per result, each right after the
call it answers. What Chat Completions cannot carry is left out and documented in the README:
images and files outside user messages, a tool result's images, ``is_error``, other
providers' opaque blocks.
"""

from __future__ import annotations

from typing import Any

import msgspec

from eventstore import (
    FilePart,
    ImagePart,
    Part,
    RefusalPart,
    TextPart,
    ToolCallPart,
    ToolResultPart,
)
from projections import NewMessage

from .common import (
    Obj,
    Shown,
    arguments_json,
    data_url,
    extra_of,
    fail,
    file_label,
    split_data_url,
    text_of,
    tool_call,
    with_extra,
)

NAME = "openai"
KEPT = ("prompt_cache_breakpoint",)
_DEPRECATED = "is deprecated by OpenAI and not stored: use tool_calls and role tool"


# -- in ---------------------------------------------------------------------------------------


def parse(messages: list[Any], path: str) -> tuple[list[NewMessage], list[str | None]]:
    """Stored messages for Chat Completions ``messages`` at ``path``, and for each the path of
    the call id it answers (tool messages; else None); FormatError if invalid."""
    out = [_message(Obj(m, f"{path}[{i}]", "a message object")) for i, m in enumerate(messages)]
    paths = [f"{path}[{i}].tool_call_id" if m.role == "tool" else None for i, m in enumerate(out)]
    return out, paths


def _message(o: Obj) -> NewMessage:
    role = o.one_of("role", ("developer", "system", "user", "assistant", "tool", "function"))
    name = o.text("name", required=False)
    new: NewMessage
    match role:
        case "developer" | "system":
            new = NewMessage(role=role, content=_content(o, texts_only=True), name=name)
        case "user":
            new = NewMessage(role="user", content=_content(o), name=name)
        case "assistant":
            new = NewMessage(role="assistant", content=_assistant(o), name=name)
        case "tool":
            call_id = o.req("tool_call_id")
            result = ToolResultPart(call_id=call_id, content=_content(o, texts_only=True))
            new = NewMessage(role="tool", content=[result], name=name)
        case _:
            fail(f"role function {_DEPRECATED}", o.at("role"))
    o.done()
    return new


def _content(o: Obj, *, texts_only: bool = False) -> str | list[Any]:
    value = o.get("content")
    if isinstance(value, str):
        return value
    if not isinstance(value, list):
        what = "a string or an array of content parts"
        fail(f"content must be {what}, got {'nothing' if value is None else type(value).__name__}",
             o.at("content"))  # fmt: skip
    return [_part(p, o.at(f"content[{i}]"), texts_only) for i, p in enumerate(value)]


def _part(value: Any, path: str, texts_only: bool) -> TextPart | ImagePart | FilePart:
    p = Obj(value, path, "a content part")
    kind = p.req("type")
    part: TextPart | ImagePart | FilePart
    if kind == "text":
        part = TextPart(text=p.req("text"), extra=p.kept(NAME, KEPT))
    elif kind == "image_url" and not texts_only:
        url = Obj(p.get("image_url"), p.at("image_url"))
        href = url.req("url")
        detail = url.one_of("detail", ("auto", "low", "high", "original"), required=False)
        url.done()
        inline = split_data_url(href)
        if inline is None:
            part = ImagePart(url=href, detail=detail, extra=p.kept(NAME, KEPT))  # type: ignore[arg-type]
        else:
            part = ImagePart(data=inline[1], media_type=inline[0], detail=detail,  # type: ignore[arg-type]
                             extra=p.kept(NAME, KEPT))  # fmt: skip
    elif kind == "file" and not texts_only:
        f = Obj(p.get("file"), p.at("file"))
        raw, file_id, filename = (
            f.text("file_data", required=False),
            f.text("file_id", required=False),
            f.text("filename", required=False),
        )
        f.done()
        if raw is None and file_id is None:
            fail("a file needs file_data or file_id", p.at("file"))
        part = _file(raw, file_id, filename, p.kept(NAME, KEPT))
    elif kind == "input_audio" and not texts_only:
        fail("input_audio is not stored by ctxlog (its tokens cannot be counted); send a "
             "transcript as text", p.at("type"))  # fmt: skip
    else:
        allowed = "text" if texts_only else "text, image_url, file"
        fail(f"unknown content part type {kind!r} here (allowed: {allowed})", p.at("type"))
    p.done()
    return part


def _file(raw: str | None, file_id: str | None, filename: str | None, extra: Any) -> FilePart:
    inline = None if raw is None else split_data_url(raw)
    if inline is not None:
        return FilePart(file_id=file_id, name=filename, media_type=inline[0], data=inline[1],
                        extra=extra)  # fmt: skip
    return FilePart(
        file_id=file_id, name=filename, data=msgspec.UNSET if raw is None else raw, extra=extra
    )


def _assistant(o: Obj) -> str | list[Part]:
    if o.get("annotations"):
        fail("annotations belong to a completion, not to a message sent back (Chat "
             "Completions takes none): leave them out", o.at("annotations"))  # fmt: skip
    for field in ("function_call", "audio"):
        if o.get(field) is not None:
            why = _DEPRECATED if field == "function_call" else "is not stored by ctxlog"
            fail(f"{field} {why}", o.at(field))
    value = o.get("content")
    refusal = o.text("refusal", required=False, null=True)
    calls = o.array("tool_calls", required=False)
    if value is None and refusal is None and not calls:
        fail("an assistant message needs content, refusal or tool_calls", o.at("content"))
    parts: list[Part] = []
    if isinstance(value, str):
        if refusal is None and not calls:
            return value
        parts.append(TextPart(text=value))
    elif isinstance(value, list):
        for i, raw in enumerate(value):
            p = Obj(raw, o.at(f"content[{i}]"), "a content part")
            kind = p.req("type")
            if kind == "text":
                parts.append(TextPart(text=p.req("text"), extra=p.kept(NAME, KEPT)))
            elif kind == "refusal":
                parts.append(RefusalPart(text=p.req("refusal"), extra=p.kept(NAME, KEPT)))
            else:
                fail(f"unknown content part type {kind!r} here (allowed: text, refusal)",
                     p.at("type"))  # fmt: skip
            p.done()
    elif value is not None:
        fail("content must be a string, an array of content parts or null", o.at("content"))
    if refusal is not None:
        parts.append(RefusalPart(text=refusal))
    for i, raw in enumerate(calls or ()):
        c = Obj(raw, o.at(f"tool_calls[{i}]"), "a tool call")
        kind = c.req("type")
        if kind != "function":
            fail(f"tool call type {kind!r} is not stored by ctxlog (only function)", c.at("type"))
        fn = Obj(c.get("function"), c.at("function"))
        parts.append(tool_call(c.req("id"), fn.req("name"), fn.req("arguments")))
        fn.done()
        c.done()
    return parts


# -- out --------------------------------------------------------------------------------------


def render(turns: list[Shown]) -> list[dict[str, Any]]:
    """The turns as Chat Completions messages."""
    out: list[dict[str, Any]] = []
    for t in turns:
        role, content, name = t.role, t.content, t.name
        if type(content) is str:  # most messages: the fast path
            message = {"role": "user" if role == "tool" else role, "content": content}
            if name:
                message["name"] = name
            out.append(message)
        elif role in ("system", "developer"):
            out.append(_named({"role": role, "content": _texts(content)}, name))
        elif role == "assistant":
            out.append(_assistant_out(t))
        else:
            out += _user_or_tool(t)
    return out


def _named(message: dict[str, Any], name: str | None) -> dict[str, Any]:
    if name:
        message["name"] = name
    return message


def _texts(content: str | list[Any]) -> str | list[dict[str, Any]]:
    """Text-only content (system, developer, tool): its text parts; other parts as labels."""
    if isinstance(content, str):
        return content
    parts: list[dict[str, Any]] = []
    for p in content:
        if isinstance(p, TextPart | RefusalPart):
            parts.append(with_extra({"type": "text", "text": p.text}, p, NAME))
        elif isinstance(p, FilePart) and isinstance(p.text, str):
            parts.append({"type": "text", "text": p.text})
        elif isinstance(p, FilePart | ImagePart):
            label = file_label(p) if isinstance(p, FilePart) else "image"
            parts.append({"type": "text", "text": f"[{label}]"})
    return parts


def _user_part(p: Part) -> dict[str, Any] | None:
    match p:
        case TextPart(text=text) | RefusalPart(text=text):
            return with_extra({"type": "text", "text": text}, p, NAME)
        case ImagePart():
            href = p.url or (data_url(p.media_type or "image/png", p.data) if p.data else None)
            if href is None:
                return {"type": "text", "text": "[image]"}  # an uploaded image: no URL here
            image: dict[str, Any] = {"url": href}
            if p.detail:
                image["detail"] = p.detail
            return with_extra({"type": "image_url", "image_url": image}, p, NAME)
        case FilePart():
            if isinstance(p.text, str):
                return {"type": "text", "text": p.text}
            file: dict[str, Any] = {}
            if isinstance(p.data, str):
                file["file_data"] = data_url(p.media_type, p.data) if p.media_type else p.data
            if p.file_id:
                file["file_id"] = p.file_id
            if p.name:
                file["filename"] = p.name
            if not file.keys() & {"file_data", "file_id"}:
                return {"type": "text", "text": f"[file {file_label(p)}]"}
            return with_extra({"type": "file", "file": file}, p, NAME)
    return None


def _user_or_tool(t: Shown) -> list[dict[str, Any]]:
    if isinstance(t.content, str):
        return [_named({"role": "user", "content": t.content}, t.name)]
    out: list[dict[str, Any]] = []
    rest: list[dict[str, Any]] = []
    for p in t.content:
        if isinstance(p, ToolResultPart):
            content = p.content if isinstance(p.content, str) else _texts(list(p.content))
            out.append({"role": "tool", "tool_call_id": p.call_id, "content": content})
        elif (rendered := _user_part(p)) is not None:
            rest.append(rendered)
    if rest or not out:
        out.append(_named({"role": "user", "content": rest}, t.name))
    return out


def _assistant_out(t: Shown) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant"}
    assert not isinstance(t.content, str)
    texts: list[TextPart | RefusalPart] = []
    calls: list[dict[str, Any]] = []
    refusals = 0
    for p in t.content:
        if isinstance(p, ToolCallPart):
            function = {"name": p.name, "arguments": arguments_json(p)}
            calls.append({"id": p.id, "type": "function", "function": function})
        elif isinstance(p, TextPart | RefusalPart):
            texts.append(p)
            refusals += isinstance(p, RefusalPart)
    plain = not any(extra_of(p, NAME) for p in texts)
    if plain and refusals <= 1 and len(texts) - refusals <= 1:
        # The common shape: content as a string, a refusal in its own field.
        for p in texts:
            message["refusal" if isinstance(p, RefusalPart) else "content"] = p.text
    else:
        message["content"] = [
            with_extra({"type": "text", "text": p.text}, p, NAME)
            if isinstance(p, TextPart)
            else with_extra({"type": "refusal", "refusal": p.text}, p, NAME)
            for p in texts
        ]
    if calls:
        message.setdefault("content", None)  # as the SDK writes a call without text
        message["tool_calls"] = calls
    elif "content" not in message and "refusal" not in message:
        message["content"] = text_of(t.content)  # only parts Chat cannot carry: say so empty
    return _named(message, t.name)
