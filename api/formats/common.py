"""What every provider format shares: reading a client's JSON with exact paths, and the
window as a list of turns that any provider accepts.

Reading: ``Obj`` walks one JSON object, field by field; every field it is not asked about is
an error naming its path, so nothing a client sends is dropped unseen. Fields a format
defines but ctxlog does not model are taken with ``Obj.kept`` into a part's ``extra`` (under
the format's name) and rendered back in that format only.

Writing: ``turns`` turns a window's entries into ``Turn``s that are valid in every format: a
summary is a system turn, a redacted message shows ``REDACTED`` (keeping the ids of its tool
calls and results: ``projections.context.redacted_content``), and a tool call or result whose
partner is not in the window (its content was erased, or a client wrote it so) becomes text,
because every provider refuses a result without its call, or a call left unanswered before
the next turn.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any, NamedTuple, NoReturn

import msgspec

from eventstore import (
    Content,
    Extra,
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
from projections import WindowEntry

from ..errors import ApiError

REDACTED = "[redacted]"
"""What a redacted message shows a model (providers refuse empty text)."""

_json = msgspec.json.Encoder()


class FormatError(ApiError):
    """A message that is not valid in its declared format: a 400 whose ``path`` names the field
    (``$.messages[3].tool_call_id``). Nothing is written."""

    def __init__(self, message: str, path: str) -> None:
        super().__init__(400, "invalid_request", message, {"in": "body", "path": path})
        self.path = path


def fail(message: str, path: str) -> NoReturn:
    """Raise FormatError(message, path)."""
    raise FormatError(message, path)


def type_name(value: object) -> str:
    """The JSON name of a value's type, for error messages."""
    match value:
        case None:
            return "null"
        case bool():
            return "boolean"
        case int() | float():
            return "number"
        case str():
            return "string"
        case list():
            return "array"
        case dict():
            return "object"
    return type(value).__name__  # pragma: no cover


class Obj:
    """One JSON object of a client's message, read field by field at ``path``."""

    def __init__(self, value: object, path: str, what: str = "an object") -> None:
        if not isinstance(value, dict):
            fail(f"expected {what}, got {type_name(value)}", path)
        self.value: dict[str, Any] = value
        self.path = path
        self._seen: set[str] = set()

    def at(self, key: str) -> str:
        """The path of ``key`` in this object."""
        return f"{self.path}.{key}"

    def get(self, key: str) -> Any:
        """The raw value of ``key`` (None when absent); marks it seen."""
        self._seen.add(key)
        return self.value.get(key)

    def has(self, key: str) -> bool:
        """Whether ``key`` is present (even as null)."""
        return key in self.value

    def text(self, key: str, *, required: bool = True, null: bool = False) -> str | None:
        """A string field; FormatError when missing (if ``required``) or of another type."""
        value = self.get(key)
        if value is None:
            if key in self.value and not null:
                fail(f"{key} must be a string, not null", self.at(key))
            if required:
                fail(f"{key} is required", self.at(key))
            return None
        if not isinstance(value, str):
            fail(f"{key} must be a string, got {type_name(value)}", self.at(key))
        return value

    def req(self, key: str) -> str:
        """A required string field."""
        value = self.text(key)
        assert value is not None
        return value

    def one_of(self, key: str, allowed: tuple[str, ...], *, required: bool = True) -> str | None:
        """A string field with one of ``allowed`` values."""
        value = self.text(key, required=required)
        if value is not None and value not in allowed:
            fail(f"{key} must be one of {', '.join(allowed)}; got {value!r}", self.at(key))
        return value

    def array(self, key: str, *, required: bool = True) -> list[Any] | None:
        """An array field."""
        value = self.get(key)
        if value is None:
            if required:
                fail(f"{key} is required", self.at(key))
            return None
        if not isinstance(value, list):
            fail(f"{key} must be an array, got {type_name(value)}", self.at(key))
        return value

    def kept(self, fmt: str, keys: tuple[str, ...]) -> Extra:
        """Those of ``keys`` present here, as a part's ``extra`` under format ``fmt``."""
        found = {k: self.get(k) for k in keys if k in self.value}
        return {fmt: found} if found else msgspec.UNSET

    def done(self) -> None:
        """FormatError for the first field nobody asked about (unknown to the format)."""
        for key in self.value:
            if key not in self._seen:
                fail(f"unknown field {key!r}", self.at(key))


def extra_of(part: Part, fmt: str) -> dict[str, Any]:
    """The fields ``part`` keeps for format ``fmt`` ({} if none)."""
    extra = getattr(part, "extra", None)
    if type(extra) is not dict:  # UNSET, nearly always
        return {}
    found = extra.get(fmt)
    return found if isinstance(found, dict) else {}


def with_extra(value: dict[str, Any], part: Part, fmt: str) -> dict[str, Any]:
    """``value`` (a rendered part) with the fields ``part`` keeps for ``fmt``."""
    extra = getattr(part, "extra", None)
    if type(extra) is not dict:
        return value
    kept = extra.get(fmt)
    return {**value, **kept} if isinstance(kept, dict) and kept else value


# -- data URLs and tool arguments ---------------------------------------------------------------

_DATA_URL = re.compile(r"data:([\w.+-]+/[\w.+-]+);base64,([A-Za-z0-9+/=\s]*)", re.ASCII)


def split_data_url(url: str) -> tuple[str, str] | None:
    """(media type, base64 data) of a ``data:<type>;base64,<data>`` URL, else None."""
    match = _DATA_URL.fullmatch(url)
    return None if match is None else (match.group(1), match.group(2))


def data_url(media_type: str, data: str) -> str:
    """A base64 data URL."""
    return f"data:{media_type};base64,{data}"


def check_base64(data: str, path: str) -> None:
    """FormatError when ``data`` is not base64."""
    try:
        base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        fail("data must be base64", path)


def tool_call(call_id: str, name: str, raw: str, extra: Extra = msgspec.UNSET) -> ToolCallPart:
    """A tool call from arguments as a JSON string: parsed when they are a JSON object, and
    kept as written (``arguments_json``) whenever that is not their compact form."""
    try:
        parsed = msgspec.json.decode(raw)
    except msgspec.DecodeError:
        parsed = None
    arguments = parsed if isinstance(parsed, dict) else {}
    keep = isinstance(parsed, dict) and _json.encode(parsed).decode() == raw
    return ToolCallPart(
        id=call_id,
        name=name,
        arguments=arguments,
        arguments_json=msgspec.UNSET if keep else raw,
        extra=extra,
    )


def arguments_json(part: ToolCallPart) -> str:
    """A tool call's arguments as a JSON string, exactly as they were written."""
    if isinstance(part.arguments_json, str):
        return part.arguments_json
    return _json.encode(part.arguments).decode()


# -- the window as turns --------------------------------------------------------------------------


class Turn(NamedTuple):
    """One message of a window as every format reads it: its role, content and name. A
    window entry is read the same way (a summary's entry has role ``system``), so a turn is
    made only for an entry that must change; pinned turns are those of ``PINNED_ROLES``."""

    role: Role
    content: Content
    name: str | None = None


Shown = Turn | WindowEntry
"""What the renderers read: ``role``, ``content`` and ``name``."""


def turns(entries: tuple[WindowEntry, ...]) -> list[Shown]:
    """The window's entries as turns any provider accepts (see the module docstring): the
    entries themselves, unless one is redacted or a tool call lacks its partner."""
    calls: set[str] = set()
    results: set[str] = set()
    redacted = False
    for e in entries:
        redacted = redacted or e.redacted
        if type(e.content) is not str:
            for p in e.content:
                if isinstance(p, ToolCallPart):
                    calls.add(p.id)
                elif isinstance(p, ToolResultPart):
                    results.add(p.call_id)
    if not redacted and calls == results:
        return list(entries)  # the common case: nothing to change, nothing to copy
    out: list[Shown] = []
    for e in entries:
        content = e.content
        if e.redacted:
            if isinstance(content, str):
                content = REDACTED
            else:
                content = [TextPart(text=REDACTED), *content] if content else REDACTED
        out.append(Turn(e.role, content, e.name))
    return out if calls == results else _paired(out, calls, results)


def _paired(turns: list[Shown], calls: set[str], results: set[str]) -> list[Shown]:
    """Turns whose tool calls and results all have their partner; the others as text."""
    out: list[Shown] = []
    for t in turns:
        if isinstance(t.content, str) or not any(
            (isinstance(p, ToolCallPart) and p.id not in results)
            or (isinstance(p, ToolResultPart) and p.call_id not in calls)
            for p in t.content
        ):
            out.append(t)
            continue
        parts: list[Part] = []
        for p in t.content:
            if isinstance(p, ToolCallPart) and p.id not in results:
                parts.append(TextPart(text=f"[tool call {p.name}: {arguments_json(p)}]"))
            elif isinstance(p, ToolResultPart) and p.call_id not in calls:
                parts.append(TextPart(text=f"[tool result: {text_of(p.content)}]"))
            else:
                parts.append(p)
        role: Role = "user" if t.role == "tool" else t.role
        if role == "user" and any(isinstance(p, ToolResultPart) for p in parts):
            role = "tool"  # it still answers a call that is there
        out.append(Turn(role, parts, t.name))
    return out


def text_of(content: Content | list[TextPart | ImagePart | FilePart]) -> str:
    """The plain text of content (its text and refusal parts)."""
    if isinstance(content, str):
        return content
    return "\n".join(p.text for p in content if isinstance(p, TextPart | RefusalPart) and p.text)


def as_parts(content: Content) -> list[Part]:
    """Content as a list of parts (a string is one text part)."""
    return [TextPart(text=content)] if isinstance(content, str) else list(content)


def opaque(part: Part, fmt: str) -> bool:
    """Whether ``part`` is a provider's opaque block of another format than ``fmt`` (left
    out: only the provider that wrote it can read it)."""
    return isinstance(part, OpaquePart) and part.format != fmt


def file_label(part: FilePart) -> str:
    """What a file reference is called, for a format that cannot carry it."""
    return part.name or part.uri or part.file_id or "file"
