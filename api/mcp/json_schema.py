"""JSON Schemas of Structs, shaped as MCP wants a tool's schemas: an object at the root.

msgspec puts every Struct in ``$defs`` and answers with a bare ``$ref``; MCP clients read
``type: "object"`` and ``properties`` at the root of an ``inputSchema``, so the referenced
definition is lifted to the root and ``$defs`` kept beside it for the nested references.
"""

from __future__ import annotations

import copy
import functools
import json
from typing import Any

import msgspec


@functools.cache
def _schema(type_: Any) -> dict[str, Any]:
    schema = msgspec.json.schema(type_)
    ref = schema.pop("$ref", None)
    defs: dict[str, Any] = schema.pop("$defs", {})
    if ref is None:
        return schema
    name = ref.rsplit("/", 1)[1]
    root = dict(defs[name])
    # The root's own definition stays in $defs only when something refers back to it.
    if ref not in json.dumps(defs):
        del defs[name]
    if defs:
        root["$defs"] = defs
    return root


def object_schema(type_: Any) -> dict[str, Any]:
    """The JSON Schema (2020-12) of ``type_`` with its definition at the root (a fresh copy:
    callers may change it)."""
    return copy.deepcopy(_schema(type_))


MAX_INT = 2**63 - 1
_NOISE = ("title", "default", "discriminator")


def compact_schema(type_: Any, depth: int, *, arguments: bool = True) -> dict[str, Any]:
    """``object_schema(type_)`` as short as a model (or a client) needs it, with the same
    fields: nested Structs inlined ``depth`` levels deep and plain ``object`` below that,
    titles and defaults left out (the tools' descriptions say them), 64-bit bounds dropped,
    and for ``arguments`` an optional field's ``null`` left out (leaving the field out says
    the same; a result does carry its nulls).

    The tools' arguments are still decoded with the full types, so what the compact schema
    does not spell out is checked on the call, with an error naming the field. Why: the
    tool list is read by a model on every turn; the full schemas cost 5,345 cl100k tokens
    for 13 tools, most of it every content part type repeated in two tools."""
    schema = object_schema(type_)
    defs: dict[str, Any] = schema.pop("$defs", {})

    def walk(node: Any, level: int) -> Any:
        if isinstance(node, list):
            return [walk(n, level) for n in node]
        if not isinstance(node, dict):
            return node
        ref = node.get("$ref")
        if isinstance(ref, str):
            target = defs[ref.rsplit("/", 1)[1]]
            if level >= depth:
                return {"type": "object"} if target.get("type") == "object" or (
                    "anyOf" in target) else {}  # fmt: skip
            return walk(target, level + 1)
        out: dict[str, Any] = {}
        optional = arguments and "default" in node and node["default"] is None
        for key, value in node.items():
            if key in _NOISE or (key == "maximum" and value == MAX_INT):
                continue
            if key == "required" and not value:
                continue
            if key == "properties":
                out[key] = {k: walk(v, level) for k, v in value.items()}
            else:
                out[key] = walk(value, level)
        options = out.get("anyOf")
        if isinstance(options, list):
            kept: list[Any] = []
            for option in options:
                if (optional and option == {"type": "null"}) or option in kept:
                    continue
                kept.append(option)
            del out["anyOf"]
            out = {**kept[0], **out} if len(kept) == 1 else {**out, "anyOf": kept}
        return out

    root = walk(schema, 0)
    assert isinstance(root, dict)
    if arguments:  # the tool's own description says it
        root.pop("description", None)
    return root
