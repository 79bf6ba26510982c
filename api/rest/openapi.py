"""The OpenAPI 3.1 document, generated from the route table and ``api/rest/schemas``.

Each handler is tagged with ``@operation(...)`` naming its request, query and response Structs;
``document(routes)`` walks the route table and asks msgspec for the JSON Schemas of those
Structs (``msgspec.json.schema_components``), so the document cannot drift from what the
handlers decode and encode. ``tests/test_rest_openapi.py`` checks that every route is here and
that real responses validate against it.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import inspect
import itertools
import re
import textwrap
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

import msgspec
from aiohttp import web

from ..gate import WRITES
from . import schemas

F = TypeVar("F", bound=Callable[..., Any])

REF = "#/components/schemas/{name}"
_PARAM = re.compile(r"{(\w+)}")

ERRORS: dict[int, str] = {
    101: "Switching Protocols: the WebSocket is open",
    304: "Not modified: If-None-Match is the current ETag",
    400: "Malformed or invalid request (details.path names the field)",
    401: "Missing or unknown API key",
    403: "The Host or the Origin may not use this server (DNS rebinding, cross-site pages)",
    404: "Not found (or another tenant's: never told apart)",
    405: "Method not allowed",
    408: "The request body did not arrive in time",
    409: "Conflicts with the context's state",
    412: "Since the If-Match / expected_version, something other than a recorded window was"
    " written",
    413: "Body over the size limit",
    415: "Body is not application/json",
    422: "Well-formed but impossible, or an Idempotency-Key reused for another request",
    429: "Too many requests (or live connections) for this API key; see Retry-After",
    500: "Internal error (details.request_id is in the server log)",
    503: "Database unavailable, or the server is still starting",
}


TAGS: dict[str, str] = {
    "contexts": "Create, list, read and delete contexts; change their metadata",
    "messages": "Append, edit and redact messages; add summaries",
    "windows": "What fits a model's window, and a context's window settings",
    "history": "Versions: a context's events, diffs, lineage, rollback and forks",
    "audit": "The whole log (the caller's tenant), and erasure of a data subject",
    "live": "Follow changes as they happen: WebSocket and server-sent events",
    "checkpoints": "An agent framework's state on a context: checkpoints, writes, removals",
    "mcp": "The Model Context Protocol endpoint, and REST views shaped for MCP clients",
    "meta": "The server itself: what it is, its health, this document",
}
"""The groups operations are listed in, in this order."""


@dataclasses.dataclass(frozen=True)
class Operation:
    """What one handler takes and gives, for the document."""

    summary: str
    response: Any = None
    status: int = 200
    body: Any = None
    body_required: bool = True
    query: Any = None
    errors: tuple[int, ...] = ()
    tag: str = "contexts"
    """Which group the operation is listed in (one of ``TAGS``)."""
    headers: tuple[str, ...] = ()
    content_type: str = "application/json"
    public: bool = False
    description: str | None = None
    also: tuple[int, ...] = ()
    """Other statuses answered with the same body as the success one (e.g. 503 starting)."""
    database: bool = True
    """Whether answering needs the database (else no 503 when it is down or starting)."""
    answers: tuple[int, ...] | None = None
    """Exactly the statuses answered with, when the usual rules do not say (a protocol
    endpoint such as /mcp); None: derived from the other fields."""
    notes: Mapping[int, str] = dataclasses.field(default_factory=dict)
    """What a status means for this operation, where ``ERRORS`` says it too generally."""
    error_schema: Mapping[str, Any] | None = None
    """The schema of this operation's error bodies (None: ``ErrorOut``)."""
    contents: Mapping[str, Mapping[str, Any]] | None = None
    """The success body's schema per media type, where one Struct cannot say it."""


WRITE_HEADERS = ("If-Match", "Idempotency-Key")
"""The headers a conditional, retry-safe write takes."""


def operation(summary: str, **kwargs: Any) -> Callable[[F], F]:
    """Attach an Operation to a handler; ``document`` finds it through the route table."""

    def tag(handler: F) -> F:
        handler.__operation__ = Operation(summary, **kwargs)  # type: ignore[attr-defined]
        return handler

    return tag


_HEADERS: dict[str, dict[str, Any]] = {
    "If-Match": {
        "description": (
            'The version the write expects, as an ETag ("3"). The write goes on if nothing but'
            " recorded windows (window.served, POST .../window) was written since that version,"
            " so the ETag of a recorded window works: the chat loop never conflicts with its own"
            " record. Anything else written since: 412, with details.current_version."
        ),
        "schema": {"type": "string", "pattern": r'^\s*(\*|(W/)?"?[0-9]{1,18}"?)\s*$'},
    },
    "Idempotency-Key": {
        "description": "Retries with the same key return the first result and write nothing",
        "schema": {"type": "string", "pattern": r"^[\x21-\x7e]{1,255}$"},
    },
    "Prefer": {
        "description": "return=minimal answers with {version, message_ids} only",
        "schema": {"type": "string"},
    },
    "Last-Event-ID": {
        "description": "Resume the stream after this position (the id of the last event)",
        "schema": {"type": "string", "pattern": r"^\s*[0-9]{1,19}\s*$"},
    },
}


def document(routes: Iterable[web.AbstractRouteDef], version: str) -> dict[str, Any]:
    """The OpenAPI 3.1 document of every tagged handler in ``routes``; each operation is named
    (``operationId``) after its handler, so the code, the document and client libraries
    generated from it use one name."""
    ops: list[tuple[str, str, str, Operation]] = []
    for route in routes:
        if not isinstance(route, web.RouteDef):
            continue
        op = getattr(route.handler, "__operation__", None)
        if op is not None and route.method != "HEAD":
            name = route.handler.__name__
            ops.append((name, route.method.lower(), route.path, op))
    unknown = {op.tag for *_, op in ops} - TAGS.keys()
    if unknown:
        raise ValueError(f"operations tagged with no entry in TAGS: {sorted(unknown)}")
    names = [name for name, *_ in ops]
    if len(set(names)) != len(names):
        raise ValueError(f"two operations share a handler name: {sorted(names)}")
    types: list[Any] = [schemas.ErrorOut]
    for *_, op in ops:
        for t in (op.response, op.body, op.query):
            # A tuple is a choice of Structs that msgspec cannot put in one (untagged) union.
            types += t if isinstance(t, tuple) else [t] if t is not None else []
    unique = list(dict.fromkeys(types))
    refs, components = msgspec.json.schema_components(unique, ref_template=REF)
    _describe_fields(components)
    schema_of: dict[Any, dict[str, Any]] = dict(zip(unique, refs, strict=True))
    for *_, op in ops:
        for choice in (op.response, op.body):
            if isinstance(choice, tuple):
                schema_of[choice] = {"anyOf": [schema_of[t] for t in choice]}
    paths: dict[str, dict[str, Any]] = {}
    for name, method, path, op in ops:
        paths.setdefault(path, {})[method] = _operation(
            name, method, path, op, schema_of, components
        )
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "ctxlog",
            "version": version,
            "description": "An event-sourced context log for AI applications.",
        },
        "tags": [{"name": tag, "description": text} for tag, text in TAGS.items()],
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
                "bearer": {"type": "http", "scheme": "bearer"},
            },
        },
        "security": [{"apiKey": []}, {"bearer": []}],
    }


def _not_null(schema: dict[str, Any]) -> dict[str, Any]:
    """A query parameter's schema without its ``null``: an optional one is left out, and a
    query string cannot say null (an empty value is a string)."""
    options = schema.get("anyOf")
    if options is None:
        return schema
    kept = [o for o in options if o.get("type") != "null"]
    rest = {k: v for k, v in schema.items() if k not in ("anyOf", "default")}
    return {**rest, **kept[0]} if len(kept) == 1 else {**rest, "anyOf": kept}


def _operation(
    name: str,
    method: str,
    path: str,
    op: Operation,
    schema_of: dict[Any, dict[str, Any]],
    components: dict[str, Any],
) -> dict[str, Any]:
    params: list[dict[str, Any]] = [
        {
            "name": param,
            "in": "path",
            "required": True,
            "schema": {"type": "string", "format": "uuid"} if param.endswith("id") else {},
        }
        for param in _PARAM.findall(path)
    ]
    if op.query is not None:
        component = components[schema_of[op.query]["$ref"].rsplit("/", 1)[1]]
        required = set(component.get("required", ()))
        for field, schema in component["properties"].items():
            param = {"name": field, "in": "query", "required": field in required}
            if "description" in schema:
                param["description"] = schema["description"]
            params.append({**param, "schema": _not_null(schema)})
    params += [{"name": h, "in": "header", **_HEADERS[h]} for h in op.headers]
    result: dict[str, Any] = {
        "summary": op.summary,
        "operationId": name,
        "tags": [op.tag],
        "parameters": params,
        "responses": {},
    }
    if op.description:
        result["description"] = op.description
    if op.public:
        result["security"] = []
    if op.body is not None:
        result["requestBody"] = {
            "required": op.body_required,
            "content": {"application/json": {"schema": schema_of[op.body]}},
        }
    responses = result["responses"]
    if op.contents is not None:
        responses[str(op.status)] = {"description": "Success", "content": dict(op.contents)}
    elif op.response is None:
        responses[str(op.status)] = {"description": "Done"}
    else:
        responses[str(op.status)] = {
            "description": "Success",
            "content": {op.content_type: {"schema": schema_of[op.response]}},
        }
    error_schema = op.error_schema or schema_of[schemas.ErrorOut]
    error = {"application/json": {"schema": error_schema}}
    if op.answers is not None:
        codes = set(op.answers) - {op.status}
    else:
        codes = set(op.errors) | {500}
        if not op.public:
            codes |= {401, 403, 429, 503} if op.database else {401, 403, 429}
            if method.upper() in WRITES:
                codes |= {415}
        if op.body is not None:
            codes |= {400, 408, 413, 415}
        if op.query is not None:
            codes |= {400}
    for code in sorted(codes - set(op.also)):
        responses[str(code)] = {"description": op.notes.get(code) or ERRORS[code]}
        if code >= 400:
            responses[str(code)]["content"] = error
    for code in op.also:
        responses[str(code)] = {**responses[str(op.status)], "description": ERRORS[code]}
    return result


def _describe_fields(components: dict[str, Any]) -> None:
    """Give each request field in ``components`` the one-line description written under it
    in ``schemas/requests.py`` (an attribute docstring). Kept out of the Structs' types, so
    that MCP tool schemas built from the same Structs stay as short as a model needs them."""
    for cls in _request_structs():
        component = components.get(cls.__name__)
        if component is None:
            continue
        # The name on the wire (``from``) may differ from the attribute's (``from_``).
        wire = dict(zip(cls.__struct_fields__, cls.__struct_encode_fields__, strict=True))
        for field, text in field_docs(cls).items():
            prop = component["properties"].get(wire.get(field, field))
            if prop is not None:
                prop["description"] = text


def _request_structs() -> list[type[msgspec.Struct]]:
    found: list[type[msgspec.Struct]] = []
    todo: list[type[msgspec.Struct]] = [schemas.Request]
    while todo:
        cls = todo.pop()
        found.append(cls)
        todo += cls.__subclasses__()
    return found


@functools.cache
def field_docs(cls: type) -> dict[str, str]:
    """The attribute docstrings of ``cls`` and its bases (field name -> first line); empty
    when the source is not available."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        try:
            source = textwrap.dedent(inspect.getsource(klass))
        except (OSError, TypeError):
            continue
        body = ast.parse(source).body
        if not body or not isinstance(body[0], ast.ClassDef):
            continue
        statements = body[0].body
        for stmt, after in itertools.pairwise(statements):
            if (
                isinstance(stmt, ast.AnnAssign)
                and isinstance(stmt.target, ast.Name)
                and isinstance(after, ast.Expr)
                and isinstance(after.value, ast.Constant)
                and isinstance(after.value.value, str)
            ):
                docs[stmt.target.id] = after.value.value.strip().splitlines()[0]
    return docs
