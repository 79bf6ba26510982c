"""The router: every route of the table is reached by its own paths, the hot ones (appends,
window reads) are tried first, and the OpenAPI document keeps the table's order."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from api import appkeys, create_app, rest, testing

ID = "0190a6f4-1c2d-7e3f-8a4b-5c6d7e8f9a0b"
HOT_PATHS = ["/api/v1/contexts/{id}/messages", "/api/v1/contexts/{id}/window"]


@pytest.fixture
def app(tmp_path: Path) -> web.Application:
    return create_app(testing.settings(str(tmp_path / "ctx.db")))


async def test_every_route_resolves_to_its_own_handler(app: web.Application) -> None:
    routes = [r for r in app.router.routes() if r.resource is not None and r.method != "HEAD"]
    assert len(routes) > 40
    for route in routes:
        assert route.resource is not None
        path = re.sub(r"\{(\w+)(:[^}]*)?\}", ID, route.resource.canonical)
        request = make_mocked_request(route.method, path, app=app)
        match = await app.router.resolve(request)
        assert match.route is route, (route.method, path)


def test_the_hot_paths_are_tried_first(app: web.Application) -> None:
    paths = [resource.canonical for resource in app.router.resources()]
    assert paths[: len(HOT_PATHS)] == HOT_PATHS
    assert len(paths) == len(set(paths))  # each path one resource, all its methods in it


def test_the_document_keeps_the_tables_order(app: web.Application) -> None:
    table = []
    for route in [*rest.routes]:
        path = re.sub(r"\{(\w+):[^}]*\}", r"{\1}", getattr(route, "path", ""))
        if path and path not in table:
            table.append(path)
    documented = [p for p in app[appkeys.OPENAPI]["paths"] if p in table]
    assert documented == table
