"""The OpenAPI document is complete and sound: every route is in it, every reference resolves,
and it is what /openapi.json and /docs serve. (That responses validate against it is checked
on every request the API tests make, by ``api.testing.ApiClient``.)"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from api import appkeys, create_app, testing
from api.testing import ApiClient
from tests.support.clients import AppClient


@pytest.fixture
def app(tmp_path: Path) -> web.Application:
    return create_app(testing.settings(str(tmp_path / "ctx.db")))


def test_every_route_is_documented(app: web.Application) -> None:
    doc = app[appkeys.OPENAPI]
    routes = {
        (route.method.lower(), route.resource.canonical)
        for route in app.router.routes()
        if route.resource is not None and route.method != "HEAD"
    }
    documented = {(method, path) for path, ops in doc["paths"].items() for method in ops}
    assert routes == documented


def test_the_document_is_openapi_3_1_and_its_refs_resolve(app: web.Application) -> None:
    doc = app[appkeys.OPENAPI]
    assert doc["openapi"].startswith("3.1")
    text = json.dumps(doc)
    refs = set(re.findall(r'"\$ref": "#/components/schemas/([^"]+)"', text))
    assert refs <= set(doc["components"]["schemas"])
    import jsonschema

    for schema in doc["components"]["schemas"].values():
        jsonschema.Draft202012Validator.check_schema({"components": {}, **schema})
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            assert op["summary"], (method, path)
            assert "500" in op["responses"]
            params = {p["name"] for p in op["parameters"] if p["in"] == "path"}
            assert params == set(re.findall(r"{(\w+)}", path))


def test_operations_are_named_after_their_handlers_and_grouped(app: web.Application) -> None:
    doc = app[appkeys.OPENAPI]
    handlers = {
        (route.method.lower(), route.resource.canonical): route.handler.__name__
        for route in app.router.routes()
        if route.resource is not None and route.method != "HEAD"
    }
    tags = [tag["name"] for tag in doc["tags"]]
    assert {"contexts", "messages", "windows", "history", "audit", "live", "mcp"} <= set(tags)
    names = []
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            assert op["operationId"] == handlers[(method, path)]
            assert re.fullmatch(r"[a-z][a-z_]*[a-z]", op["operationId"]), op["operationId"]
            assert op["tags"], (method, path)
            assert set(op["tags"]) <= set(tags), (method, path)
            names.append(op["operationId"])
    assert len(names) == len(set(names))
    by_path = {
        (m, p): op["operationId"] for p, ops in doc["paths"].items() for m, op in ops.items()
    }
    assert by_path[("post", "/api/v1/contexts/{id}/messages")] == "append_messages"
    assert by_path[("get", "/api/v1/contexts/{id}/window")] == "get_window"
    assert by_path[("get", "/api/v1/contexts")] == "list_contexts"


def test_every_request_field_is_described(app: web.Application) -> None:
    doc = app[appkeys.OPENAPI]
    schemas: dict[str, Any] = doc["components"]["schemas"]
    requests = {name for name, s in schemas.items() if s.get("additionalProperties") is False}
    assert {"CreateContext", "AppendMessages", "MessageIn", "WindowIn"} <= requests
    for name in requests:
        for field, prop in schemas[name]["properties"].items():
            assert prop.get("description"), f"{name}.{field} has no description"
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            for param in op["parameters"]:
                if param["in"] == "query":
                    assert param.get("description"), (method, path, param["name"])


def test_request_schemas_forbid_unknown_fields(app: web.Application) -> None:
    schemas: dict[str, Any] = app[appkeys.OPENAPI]["components"]["schemas"]
    for name in ("CreateContext", "AppendMessages", "MessageIn", "Rollback", "AuditQuery"):
        assert schemas[name]["additionalProperties"] is False


async def test_served_document_and_docs_page(aiohttp_client: Any, app: web.Application) -> None:
    client: AppClient = await aiohttp_client(app)
    api = ApiClient(client, app[appkeys.OPENAPI])
    served = await api.get("/openapi.json", expect=200)
    assert served.json == json.loads(json.dumps(app[appkeys.OPENAPI]))
    page = (await api.get("/docs", expect=200)).body.decode()
    for path in app[appkeys.OPENAPI]["paths"]:
        assert path in page
    assert "<script" not in page
    assert not re.search(r"""(src|href)=["']https?://""", page)
