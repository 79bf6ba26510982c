"""The web view's page and assets as served (in process, no browser): what ships, the
headers every answer under /ui carries, and rules the code must keep (no inline script, no
HTML parsing of data, nothing from another origin). ``tests/test_web_browser.py`` runs it."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from api import appkeys, create_app, testing
from api.testing import ApiClient
from api.web import assets

STATIC = Path(assets.__file__).parent / "static"
FILES = sorted(p.name for p in STATIC.iterdir() if p.is_file())


@pytest.fixture
async def api(aiohttp_client: Any, tmp_path: Path) -> ApiClient:
    app = create_app(testing.settings(str(tmp_path / "web.db")))
    client: TestClient[web.Request, web.Application] = await aiohttp_client(app)
    return ApiClient(client, app[appkeys.OPENAPI])


def _secured(headers: Any) -> None:
    csp = headers["Content-Security-Policy"]
    directives = dict(d.strip().split(" ", 1) for d in csp.split(";"))
    assert directives["script-src"] == "'self'"
    assert directives["default-src"] == "'none'"
    assert directives["frame-ancestors"] == "'none'"
    assert directives["connect-src"] == "'self'"
    assert "unsafe" not in csp
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Referrer-Policy"] == "no-referrer"
    assert headers["X-Frame-Options"] == "DENY"


async def test_the_page_needs_no_key_and_is_locked_down(api: ApiClient) -> None:
    # The page holds no data: no key needed (the API it calls asks for one).
    r = await api.get("/ui", expect=200)
    assert r.headers["Content-Type"].startswith("text/html")
    _secured(r.headers)
    page = r.body.decode()
    assert '<script type="module" src="/ui/assets/app.js"></script>' in page
    # No inline script: every <script> names its file, and no attribute runs code.
    for tag in re.findall(r"<script[^>]*>", page):
        assert 'src="/ui/assets/' in tag, tag
    assert not re.search(r"<script[^>]*>[^<\s]", page)
    assert not re.search(r"\son[a-z]+=", page)
    assert not re.search(r"""(src|href)=["'](https?:)?//""", page)


async def test_every_file_the_page_names_is_served_with_its_type(api: ApiClient) -> None:
    page = (await api.get("/ui", expect=200)).body.decode()
    named = set(re.findall(r'(?:src|href)="/ui/assets/([^"]+)"', page))
    modules = set()
    for name in FILES:
        if name.endswith(".js"):
            modules |= set(re.findall(r'from "\./([^"]+)"', (STATIC / name).read_text()))
    assert modules <= named, "a module is imported but not preloaded by the page"
    assert named | {"index.html"} == set(FILES), "a file ships that nothing uses, or is missing"
    kinds = {".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"}
    for name in sorted(named):
        r = await api.get(f"/ui/assets/{name}", expect=200)
        assert r.headers["Content-Type"].startswith(kinds[Path(name).suffix])
        assert r.body == (STATIC / name).read_bytes()
        _secured(r.headers)
        assert r.headers["Cache-Control"] == "no-cache"
        # Revalidation: the same bytes are not sent twice.
        again = await api.get(f"/ui/assets/{name}", headers={"If-None-Match": r.headers["ETag"]})
        assert again.status == 304
        assert again.body == b""


@pytest.mark.parametrize(
    "name",
    ["nope.js", "index.html", "..%2Fassets.py", "%2e%2e%2f__init__.py", ".hidden.js", "APP.JS",
     "app.js.map", "app.py"],
)  # fmt: skip
async def test_anything_else_under_assets_is_a_404(api: ApiClient, name: str) -> None:
    r = await api.get(f"/ui/assets/{name}", expect=404)
    assert r.json["error"]["code"] == "not_found"
    _secured(r.headers)  # errors under /ui carry the headers too


def test_the_scripts_never_parse_data_as_html_or_reach_elsewhere() -> None:
    # Content is attacker-controlled: it may only ever become text (textContent, text
    # nodes, attribute values set through the DOM).
    forbidden = re.compile(
        r"innerHTML|outerHTML|insertAdjacentHTML|document\.write|\beval\(|new Function|"
        r"createContextualFragment|DOMParser|srcdoc|setAttribute\(\s*[\"']on"
    )
    for name in FILES:
        text = (STATIC / name).read_text()
        assert not forbidden.search(text), (name, forbidden.search(text))
        assert not re.search(r"https?://(?!www\.w3\.org/2000/svg)", text), name
        if name.endswith(".js"):
            # EventSource cannot send the key's header: a key would end up in a URL.
            assert "new EventSource" not in text, name
            assert "localStorage" not in text, "the key is kept for the tab only"
