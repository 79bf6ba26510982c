"""OpenAI Responses: ``input`` items as ``responses.create(input=...)`` takes them (the openai
SDK's ``ResponseInputItemParam``), including what ``response.output`` hands back.

In: messages (``user``, ``system``, ``developer`` with ``input_text``/``input_image``/
``input_file``; ``assistant`` with ``output_text``/``refusal``, or text), ``function_call``,
``function_call_output`` and ``reasoning`` (kept opaque). A run of assistant-side items (an
assistant message, its reasoning, its function calls) is one stored ``assistant`` message,
so a window never splits a call from the reasoning that produced it; each
``function_call_output`` is one ``tool`` message. Item fields ctxlog does not model are kept
on the parts they came with (``id``, ``status``, ``phase`` of a message; ``id``, ``status``,
``namespace``, ``caller`` of a call or output; ``annotations``, ``logprobs`` of output text;
``prompt_cache_breakpoint``, ``detail``) and rendered back. Other item types (hosted tools,
``item_reference``, …) are refused with a message naming them.

Out: the same items. An assistant message kept with its ``id`` and ``status`` is rendered as
an output message; any other assistant text as an easy message with string content (the API
reads assistant content as ``output_text``, which an easy message cannot type).
"""

from __future__ import annotations

from typing import Any

import msgspec

from eventstore import (
    FilePart,
    ImagePart,
    OpaquePart,
    Part,
    RefusalPart,
    Role,
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
    opaque,
    split_data_url,
    tool_call,
    with_extra,
)

NAME = "responses"
KEPT = ("prompt_cache_breakpoint",)
ITEM = ("id", "status", "phase")
CALL = ("id", "status", "namespace", "caller")
OUTPUT = ("id", "status", "name", "namespace", "caller")


# -- in ---------------------------------------------------------------------------------------


def parse(items: list[Any], path: str) -> tuple[list[NewMessage], list[str | None]]:
    """Stored messages for Responses input ``items`` at ``path``, and for each the path of
    the call id it answers (tool results; else None); FormatError if invalid."""
    out: list[NewMessage] = []
    paths: list[str | None] = []
    turn: list[Part] | None = None  # the assistant message being gathered
    for i, raw in enumerate(items):
        o = Obj(raw, f"{path}[{i}]", "an input item")
        kind = o.text("type", required=False) or "message"
        role = o.one_of("role", ("user", "assistant", "system", "developer")) if (
            kind == "message") else None  # fmt: skip
        if kind in ("function_call", "reasoning") or role == "assistant":
            if turn is None:
                turn = []
                out.append(NewMessage(role="assistant", content=turn))
                paths.append(None)
            turn += _assistant_item(o, kind)
        else:
            turn = None
            if kind == "function_call_output":
                result = ToolResultPart(
                    call_id=o.req("call_id"),
                    content=_output(o.get("output"), o.at("output")),
                    extra=o.kept(NAME, OUTPUT),
                )
                out.append(NewMessage(role="tool", content=[result]))
                paths.append(o.at("call_id"))
            elif kind == "message":
                speaker: Role = "developer" if role == "developer" else (
                    "system" if role == "system" else "user")  # fmt: skip
                out.append(NewMessage(role=speaker, content=_message_content(o)))
                paths.append(None)
            else:
                fail(f"item type {kind!r} is not stored by ctxlog (stored: message, "
                     "function_call, function_call_output, reasoning)", o.at("type"))  # fmt: skip
        o.done()
    return out, paths


def _message_content(o: Obj) -> str | list[Part]:
    value = o.get("content")
    item = o.kept(NAME, ITEM)
    if isinstance(value, str):
        if not item:
            return value
        value = [{"type": "input_text", "text": value}]
    if not isinstance(value, list):
        fail("content must be a string or an array of content parts", o.at("content"))
    return [_part(p, o.at(f"content[{i}]"), item) for i, p in enumerate(value)]


def _part(raw: Any, path: str, item: Any) -> Part:
    p = Obj(raw, path, "a content part")
    kind = p.req("type")
    kept = p.kept(NAME, (*KEPT, "annotations", "logprobs", "detail"))
    fields = {**(kept or {}).get(NAME, {}), **({"item": item[NAME]} if item else {})}
    extra = {NAME: fields} if fields else None
    part: Part
    match kind:
        case "input_text" | "output_text":
            part = TextPart(text=p.req("text"), extra=extra or msgspec.UNSET)
        case "refusal":
            part = RefusalPart(text=p.req("refusal"), extra=extra or msgspec.UNSET)
        case "input_image":
            href, file_id = p.text("image_url", required=False, null=True), p.text(
                "file_id", required=False, null=True)  # fmt: skip
            if href is None and file_id is None:
                fail("an input_image needs image_url or file_id", p.at("image_url"))
            inline = None if href is None else split_data_url(href)
            detail = p.value.get("detail")  # also kept as sent: it may be null
            part = ImagePart(
                detail=detail if detail in ("auto", "low", "high", "original") else None,
                url=href if inline is None else None,
                data=None if inline is None else inline[1],
                media_type=None if inline is None else inline[0],
                file_id=file_id if file_id is not None else msgspec.UNSET,
                extra=extra or msgspec.UNSET,
            )
        case "input_file":
            part = _file(p, extra)
        case _:
            fail(f"unknown content part type {kind!r} (allowed: input_text, input_image, "
                 "input_file, output_text, refusal)", p.at("type"))  # fmt: skip
    p.done()
    return part


def _file(p: Obj, extra: Any) -> FilePart:
    raw = p.text("file_data", required=False, null=True)
    file_id = p.text("file_id", required=False, null=True)
    url = p.text("file_url", required=False, null=True)
    name = p.text("filename", required=False, null=True)
    if raw is None and file_id is None and url is None:
        fail("an input_file needs file_data, file_id or file_url", p.at("file_data"))
    inline = None if raw is None else split_data_url(raw)
    return FilePart(
        file_id=file_id, uri=url, name=name,
        media_type=None if inline is None else inline[0],
        data=msgspec.UNSET if raw is None else raw if inline is None else inline[1],
        extra=extra or msgspec.UNSET,
    )  # fmt: skip


def _output(value: Any, path: str) -> str | list[TextPart | ImagePart | FilePart]:
    if isinstance(value, str):
        return value
    if not isinstance(value, list):
        fail("output must be a string or an array of content parts", path)
    parts: list[TextPart | ImagePart | FilePart] = []
    for i, raw in enumerate(value):
        part = _part(raw, f"{path}[{i}]", None)
        if not isinstance(part, TextPart | ImagePart | FilePart):
            fail("output parts are input_text, input_image or input_file", f"{path}[{i}].type")
        parts.append(part)
    return parts


def _assistant_item(o: Obj, kind: str) -> list[Part]:
    if kind == "function_call":
        return [tool_call(o.req("call_id"), o.req("name"), o.req("arguments"),
                          o.kept(NAME, CALL))]  # fmt: skip
    if kind == "reasoning":
        o.req("id")
        o.array("summary")
        for key in o.value:
            o.get(key)
        return [OpaquePart(format=NAME, data=dict(o.value))]
    if isinstance(o.value.get("content"), str) and not any(k in o.value for k in ITEM):
        return [TextPart(text=o.req("content"))]  # an easy message: rendered back as one
    content = _message_content(o)
    return [TextPart(text=content)] if isinstance(content, str) else content


# -- out --------------------------------------------------------------------------------------


def render(turns: list[Shown]) -> list[dict[str, Any]]:
    """The turns as Responses input items."""
    out: list[dict[str, Any]] = []
    for t in turns:
        if type(t.content) is str:  # most messages: the fast path
            role = "user" if t.role == "tool" else t.role
            out.append({"type": "message", "role": role, "content": t.content})
        elif t.role == "assistant":
            out += _assistant_out(t)
        elif t.role == "tool" or any(isinstance(p, ToolResultPart) for p in t.content):
            out += _results_out(t)
        else:
            out.append(_message_out(t.role, t.content))
    return out


def _message_out(role: str, content: str | list[Any]) -> dict[str, Any]:
    if isinstance(content, str):
        return {"type": "message", "role": role, "content": content}
    parts = [p for p in content if not isinstance(p, ToolCallPart | ToolResultPart | OpaquePart)]
    item = next((extra_of(p, NAME).get("item") for p in parts if extra_of(p, NAME).get("item")),
                None)  # fmt: skip
    message: dict[str, Any] = {"type": "message", "role": role,
                               "content": [_part_out(p) for p in parts]}  # fmt: skip
    if isinstance(item, dict):
        message.update(item)
    return message


def _part_out(p: Part) -> dict[str, Any]:
    kept = {k: v for k, v in extra_of(p, NAME).items() if k != "item"}
    match p:
        case TextPart(text=text):
            return {"type": "input_text", "text": text, **kept}
        case RefusalPart(text=text):
            return {"type": "input_text", "text": text, **kept}
        case ImagePart():
            image: dict[str, Any] = {"type": "input_image", "detail": p.detail or "auto"}
            if p.url or p.data:
                image["image_url"] = p.url or data_url(p.media_type or "image/png", p.data or "")
            if isinstance(p.file_id, str):
                image["file_id"] = p.file_id
            if "image_url" not in image and "file_id" not in image:
                return {"type": "input_text", "text": "[image]"}
            return {**image, **kept}
        case FilePart():
            if isinstance(p.text, str):
                return {"type": "input_text", "text": p.text}
            file: dict[str, Any] = {"type": "input_file"}
            if isinstance(p.data, str):
                file["file_data"] = data_url(p.media_type, p.data) if p.media_type else p.data
            if p.file_id:
                file["file_id"] = p.file_id
            if p.uri:
                file["file_url"] = p.uri
            if p.name:
                file["filename"] = p.name
            if len(file) == 1 or file.keys() == {"type", "filename"}:
                return {"type": "input_text", "text": f"[file {file_label(p)}]"}
            return {**file, **kept}
    return {"type": "input_text", "text": ""}  # pragma: no cover


def _results_out(t: Shown) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    rest: list[Part] = []
    for p in t.content if not isinstance(t.content, str) else ():
        if isinstance(p, ToolResultPart):
            output = p.content if isinstance(p.content, str) else [
                _part_out(c) for c in p.content]  # fmt: skip
            item = {"type": "function_call_output", "call_id": p.call_id, "output": output}
            out.append(with_extra(item, p, NAME))
        else:
            rest.append(p)
    if rest:
        out.append(_message_out("user", rest))
    return out


def _assistant_out(t: Shown) -> list[dict[str, Any]]:
    if isinstance(t.content, str):
        return [{"type": "message", "role": "assistant", "content": t.content}]
    out: list[dict[str, Any]] = []
    texts: list[TextPart | RefusalPart] = []

    def flush() -> None:
        if not texts:
            return
        item = extra_of(texts[0], NAME).get("item")
        if isinstance(item, dict) and "id" in item and "status" in item:
            out.append({"type": "message", "role": "assistant", **item, "content": [
                {"type": "output_text", "text": p.text, "annotations": [],
                 **{k: v for k, v in extra_of(p, NAME).items() if k != "item"}}
                if isinstance(p, TextPart) else {"type": "refusal", "refusal": p.text}
                for p in texts
            ]})  # fmt: skip
        else:
            message = {"type": "message", "role": "assistant",
                       "content": "\n".join(p.text for p in texts)}  # fmt: skip
            if isinstance(item, dict):
                message.update({k: v for k, v in item.items() if k == "phase"})
            out.append(message)
        texts.clear()

    for p in t.content:
        if isinstance(p, TextPart | RefusalPart):
            if texts and extra_of(texts[0], NAME).get("item") != extra_of(p, NAME).get("item"):
                flush()
            texts.append(p)
            continue
        flush()
        if isinstance(p, ToolCallPart):
            call = {"type": "function_call", "call_id": p.id,
                    "name": p.name, "arguments": arguments_json(p)}  # fmt: skip
            out.append(with_extra(call, p, NAME))
        elif isinstance(p, OpaquePart) and not opaque(p, NAME):
            out.append(dict(p.data))
    flush()
    return out
