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
