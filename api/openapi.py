"""The OpenAPI 3.1 document, generated from the route table and ``api/schemas.py``.

Each handler is tagged with ``@operation(...)`` naming its request, query and response Structs;
``document(routes)`` walks the route table and asks msgspec for the JSON Schemas of those
Structs (``msgspec.json.schema_components``), so the document cannot drift from what the
handlers decode and encode. ``tests/test_api_openapi.py`` checks that every route is here and
that real responses validate against it.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import msgspec
from aiohttp import web

from . import schemas

F = TypeVar("F", bound=Callable[..., Any])

REF = "#/components/schemas/{name}"
_PARAM = re.compile(r"{(\w+)}")

ERRORS: dict[int, str] = {
    101: "Switching Protocols: the WebSocket is open",
    304: "Not modified: If-None-Match is the current ETag",
    400: "Malformed or invalid request (details.path names the field)",
    401: "Missing or unknown API key",
    404: "Not found (or another tenant's: never told apart)",
    405: "Method not allowed",
    408: "The request body did not arrive in time",
    409: "Conflicts with the context's state",
    412: "If-Match / expected_version is not the current version",
    413: "Body over the size limit",
    415: "Body is not application/json",
    422: "Well-formed but impossible, or an Idempotency-Key reused for another request",
    429: "Too many requests (or live connections) for this API key; see Retry-After",
    500: "Internal error (details.request_id is in the server log)",
    503: "Database unavailable, or the server is still starting",
}


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
    headers: tuple[str, ...] = ()
    content_type: str = "application/json"
    public: bool = False
    description: str | None = None
    also: tuple[int, ...] = ()
    """Other statuses answered with the same body as the success one (e.g. 503 starting)."""
    database: bool = True
    """Whether answering needs the database (else no 503 when it is down or starting)."""


def operation(summary: str, **kwargs: Any) -> Callable[[F], F]:
    """Attach an Operation to a handler; ``document`` finds it through the route table."""

    def tag(handler: F) -> F:
        handler.__operation__ = Operation(summary, **kwargs)  # type: ignore[attr-defined]
        return handler

    return tag


_HEADERS: dict[str, dict[str, Any]] = {
    "If-Match": {
        "description": 'The version the write expects, as an ETag ("3"); 412 otherwise',
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
    """The OpenAPI 3.1 document of every tagged handler in ``routes``."""
    ops: list[tuple[str, str, Operation]] = []
    for route in routes:
        if not isinstance(route, web.RouteDef):
            continue
        op = getattr(route.handler, "__operation__", None)
        if op is not None and route.method != "HEAD":
            ops.append((route.method.lower(), route.path, op))
    types: list[Any] = [schemas.ErrorOut]
    for _, _, op in ops:
        for t in (op.response, op.body, op.query):
            # A tuple is a choice of Structs that msgspec cannot put in one (untagged) union.
            types += t if isinstance(t, tuple) else [t] if t is not None else []
    unique = list(dict.fromkeys(types))
    refs, components = msgspec.json.schema_components(unique, ref_template=REF)
    schema_of: dict[Any, dict[str, Any]] = dict(zip(unique, refs, strict=True))
    for _, _, op in ops:
        if isinstance(op.response, tuple):
            schema_of[op.response] = {"anyOf": [schema_of[t] for t in op.response]}
    paths: dict[str, dict[str, Any]] = {}
    for method, path, op in ops:
        paths.setdefault(path, {})[method] = _operation(method, path, op, schema_of, components)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "ctxlog",
            "version": version,
            "description": "An event-sourced context log for AI applications.",
        },
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
    method: str,
    path: str,
    op: Operation,
    schema_of: dict[Any, dict[str, Any]],
    components: dict[str, Any],
) -> dict[str, Any]:
    params: list[dict[str, Any]] = [
        {
            "name": name,
            "in": "path",
            "required": True,
            "schema": {"type": "string", "format": "uuid"} if name.endswith("id") else {},
        }
        for name in _PARAM.findall(path)
    ]
    if op.query is not None:
        component = components[schema_of[op.query]["$ref"].rsplit("/", 1)[1]]
        required = set(component.get("required", ()))
        for name, schema in component["properties"].items():
            params.append(
                {
                    "name": name,
                    "in": "query",
                    "required": name in required,
                    "schema": _not_null(schema),
                }
            )
    params += [{"name": h, "in": "header", **_HEADERS[h]} for h in op.headers]
    result: dict[str, Any] = {
        "summary": op.summary,
        "operationId": f"{method}_{path}".replace("/", "_").replace("{", "").replace("}", ""),
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
    if op.response is None:
        responses[str(op.status)] = {"description": "Done"}
    else:
        responses[str(op.status)] = {
            "description": "Success",
            "content": {op.content_type: {"schema": schema_of[op.response]}},
        }
    error = {"application/json": {"schema": schema_of[schemas.ErrorOut]}}
    codes = set(op.errors) | {500}
    if not op.public:
        codes |= {401, 429, 503} if op.database else {401, 429}
    if op.body is not None:
        codes |= {400, 408, 413, 415}
    if op.query is not None:
        codes |= {400}
    for code in sorted(codes - set(op.also)):
        responses[str(code)] = {"description": ERRORS[code]}
        if code >= 400:
            responses[str(code)]["content"] = error
    for code in op.also:
        responses[str(code)] = {**responses[str(op.status)], "description": ERRORS[code]}
    return result
