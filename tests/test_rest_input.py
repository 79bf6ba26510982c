"""Bad input, authentication, and the one error shape: nothing malformed gets written, and no
traceback reaches a client."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from aiohttp import web

from api import Settings, appkeys, create_app, testing
from api.testing import ApiClient
from tests.support.clients import AppClient

CTX = "/api/v1/contexts"
UNKNOWN = "00000000-0000-4000-8000-000000000000"


@pytest.fixture
def app(tmp_path: Path) -> web.Application:
    return create_app(testing.settings(str(tmp_path / "ctx.db"), max_body_bytes=4096))


@pytest.fixture
async def api(aiohttp_client: object, app: web.Application) -> ApiClient:
    client: AppClient = await aiohttp_client(app)  # type: ignore[operator]
    return ApiClient(client, app[appkeys.OPENAPI], "key-alice")


async def test_root_names_the_server(api: ApiClient) -> None:
    r = await api.as_key(None).get("/", expect=200)
    assert r.json["name"] == "ctxlog"
    assert r.json["docs_url"] == "/docs"
    assert r.json["version"]


async def test_docs_are_self_contained_html(api: ApiClient) -> None:
    r = await api.as_key(None).get("/docs", expect=200)
    html = r.body.decode()
    assert r.headers["Content-Type"].startswith("text/html")
    assert "/api/v1/contexts/{id}/window" in html
    assert "http://" not in html.replace("http://", "", 0) or "cdn" not in html.lower()
    assert "<script" not in html
    assert "<link" not in html  # no external stylesheet


async def test_missing_key_is_401(api: ApiClient) -> None:
    r = await api.as_key(None).get(CTX, expect=401)
    assert r.json["error"]["code"] == "unauthorized"


async def test_wrong_key_is_401_and_not_echoed(api: ApiClient) -> None:
    r = await api.as_key("not-a-key-xyz").get(CTX, expect=401)
    assert b"not-a-key-xyz" not in r.body


async def test_bearer_token_is_accepted_like_x_api_key(api: ApiClient) -> None:
    await api.wait_ready()  # /events shows a tenant its own numbering: the projector's
    r = await api.as_key(None).get(
        "/api/v1/events", headers={"Authorization": "Bearer key-bob"}, expect=200
    )
    assert r.json == {"events": [], "next_after": 0}


async def test_unknown_route_is_json_404(api: ApiClient) -> None:
    r = await api.get("/api/v1/nope", expect=404)
    assert r.json["error"]["code"] == "not_found"
    r = await api.as_key(None).get("/nope", expect=404)
    assert r.json["error"]["code"] == "not_found"


async def test_wrong_method_is_json_405(api: ApiClient) -> None:
    r = await api.put(f"{CTX}/{UNKNOWN}/rollback", json={}, expect=405)
    assert r.json["error"]["code"] == "method_not_allowed"
    assert "POST" in r.headers["Allow"]


@pytest.mark.parametrize(
    ("body", "content_type", "status", "code"),
    [
        (b"{", "application/json", 400, "invalid_json"),
        (b'{"metadata": 1}', "application/json", 400, "invalid_request"),
        (b'{"metdata": {}}', "application/json", 400, "invalid_request"),
        (b'{"metadata": {"a": "\xff"}}', "application/json", 400, "invalid_json"),
        (b'{"metadata": {"a": "\\ud800"}}', "application/json", 400, "invalid_json"),
        (b'{"metadata": {"a": "x\\u0000y"}}', "application/json", 400, "invalid_request"),
        (b'{"metadata": {"a\\u0000": 1}}', "application/json", 400, "invalid_request"),
        (
            b'{"metadata": {"a": ' + b"[" * 2000 + b"]" * 2000 + b"}}",
            "application/json",
            400,
            "invalid_json",
        ),
        (
            b'{"metadata": {"a": ' + b"[" * 70 + b"]" * 70 + b"}}",
            "application/json",
            400,
            "invalid_json",
        ),
        (b"x" * 5000, "application/json", 413, "body_too_large"),
        (b"{}", "text/plain", 415, "unsupported_media_type"),
        (b"[]", "application/json", 400, "invalid_request"),
    ],
)
async def test_bad_bodies_are_4xx_and_write_nothing(
    api: ApiClient, app: web.Application, body: bytes, content_type: str, status: int, code: str
) -> None:
    r = await api.request(
        "POST", CTX, data=body, headers={"Content-Type": content_type}, expect=status
    )
    assert r.json["error"]["code"] == code
    assert await app[appkeys.STORE].head() == 0


async def test_validation_errors_name_the_field(api: ApiClient) -> None:
    r = await api.post(CTX, {"window": {"max_tokens": "many"}}, expect=400)
    assert r.json["error"]["details"]["path"] == "$.window.max_tokens"
    r = await api.post(
        f"{CTX}/{UNKNOWN}/messages", {"messages": [{"role": "wizard", "content": "x"}]}
    )
    # Validation happens before the context is looked up.
    assert r.status in (400, 503)
    if r.status == 400:
        assert r.json["error"]["details"]["path"] == "$.messages[0].role"


async def test_bad_query_parameters_are_400(api: ApiClient) -> None:
    r = await api.get("/api/v1/events?limit=zero", expect=400)
    assert r.json["error"]["details"] == {"in": "query", "path": "$.limit"}
    r = await api.get("/api/v1/events?limit=5000", expect=400)
    r = await api.get("/api/v1/events?bogus=1", expect=400)
    r = await api.get("/api/v1/events?context_id=not-a-uuid", expect=400)
    r = await api.get("/api/v1/events?since=yesterday", expect=400)
    r = await api.get("/api/v1/events?limit=1&limit=2", expect=400)


async def test_bad_idempotency_key_and_if_match_are_400(api: ApiClient) -> None:
    headers = {"Idempotency-Key": "x" * 300}
    r = await api.post(CTX, {}, headers=headers)
    assert r.status in (400, 503)
    headers = {"If-Match": "W/nonsense, 3"}
    r = await api.delete(f"{CTX}/{UNKNOWN}", headers=headers)
    assert r.status in (400, 503)


async def test_unexpected_errors_are_json_500_with_a_logged_request_id(
    tmp_path: Path, aiohttp_client: object, caplog: pytest.LogCaptureFixture
) -> None:
    app = create_app(testing.settings(str(tmp_path / "ctx.db")))

    async def boom(request: web.Request) -> web.Response:
        raise RuntimeError("secret internals")

    app.router.add_get("/api/v1/boom", boom)
    client: AppClient = await aiohttp_client(app)  # type: ignore[operator]
    api = ApiClient(client, app[appkeys.OPENAPI], "key-alice")
    with caplog.at_level(logging.ERROR, logger="ctxlog.api"):
        r = await api.get("/api/v1/boom", expect=500)
    assert r.json["error"]["code"] == "internal"
    request_id = r.json["error"]["details"]["request_id"]
    assert b"secret internals" not in r.body
    assert b"Traceback" not in r.body
    assert request_id in caplog.text
    assert "secret internals" in caplog.text
    assert r.headers["X-Request-ID"] == request_id


def test_open_server_refuses_non_loopback(tmp_path: Path) -> None:
    from api import SettingsError

    with pytest.raises(SettingsError, match="API keys"):
        create_app(Settings(host="0.0.0.0", db=str(tmp_path / "x.db")))
    create_app(Settings(host="127.0.0.1", db=str(tmp_path / "x.db")))
    create_app(Settings(host="::1", db=str(tmp_path / "x.db")))


async def test_open_server_lets_callers_in_without_keys(
    tmp_path: Path, aiohttp_client: object
) -> None:
    app = create_app(Settings(db=str(tmp_path / "ctx.db")))
    client: AppClient = await aiohttp_client(app)  # type: ignore[operator]
    api = ApiClient(client, app[appkeys.OPENAPI])
    await api.get("/api/v1/events", expect=200)
