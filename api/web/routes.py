"""``GET /ui`` (the page) and ``GET /ui/assets/{name}`` (its scripts, styles and icon).

Neither is behind the gate: they hold no data, like ``/docs``. What the page shows comes from
``/api/v1`` with the key the user gives it, so the gate and tenancy decide there, exactly as
for any other client.
"""

from __future__ import annotations

from aiohttp import web

from ..errors import not_found
from ..rest.openapi import operation
from . import assets

routes = web.RouteTableDef()

PREFIX = "/ui"
ASSETS = web.AppKey("web_assets", dict[str, assets.Asset])
"""The page and its files, read from the package once, when the app is made."""
_TEXT = {"schema": {"type": "string"}}


def _answer(request: web.Request, asset: assets.Asset) -> web.Response:
    headers = {"ETag": asset.etag, "Cache-Control": "no-cache"}
    if request.headers.get("If-None-Match") == asset.etag:
        return web.Response(status=304, headers=headers)
    return web.Response(body=asset.body, content_type=asset.content_type, headers=headers)


@routes.get(PREFIX)
@operation(
    "The web view: contexts, timelines, diffs, lineage, windows served and the audit, in a browser",
    response=str,
    content_type="text/html",
    tag="meta",
    public=True,
    database=False,
    errors=(304,),
    description=(
        "A page that reads this API with the key you give it (kept for the browser tab only;"
        " none on an open loopback server). It holds no data itself."
    ),
)
async def get_web_view(request: web.Request) -> web.Response:
    """The page (``static/index.html``); its scripts come from ``/ui/assets``."""
    return _answer(request, request.app[ASSETS][assets.PAGE])


@routes.get(PREFIX + "/assets/{name}")
@operation(
    "A script, style sheet or icon of the web view",
    tag="meta",
    public=True,
    database=False,
    errors=(304, 404),
    contents=dict.fromkeys(("text/javascript", "text/css", "image/svg+xml"), _TEXT),
)
async def get_web_asset(request: web.Request) -> web.Response:
    """One file of ``static/`` by name; 404 for anything else."""
    name = request.match_info["name"]
    found = request.app[ASSETS].get(name) if assets.ASSET_NAME.fullmatch(name) else None
    if found is None:
        raise not_found("no such asset")
    return _answer(request, found)


async def _secure(request: web.Request, response: web.StreamResponse) -> None:
    if request.path == PREFIX or request.path.startswith(PREFIX + "/"):
        response.headers.update(assets.HEADERS)


def setup(app: web.Application) -> None:
    """Read the page and its files; every answer under ``/ui``, errors included, gets the
    page's security headers."""
    app[ASSETS] = assets.load()
    app.on_response_prepare.append(_secure)
