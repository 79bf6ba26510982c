"""A server on loopback, open (no API keys) as ``scripts/serve`` runs it, cannot be driven by a
web page: a page on another site sends an Origin (403), a DNS-rebinding page names its own
Host (403), an HTML form sends a form or text body (415), and no GET writes. The server's
own pages, loopback origins and configured names are let in. Each refusal writes nothing."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.support.server_process import ServerProcess, serving

EVIL = "http://evil.example"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    db = tmp_path_factory.mktemp("open") / "open.db"
    env = {
        "CTXLOG_ALLOWED_ORIGINS": "https://app.example",
        "CTXLOG_ALLOWED_HOSTS": "ctxlog.internal",
    }
    with serving(db, keys="", env=env) as proc:
        yield proc


async def _send(
    server: ServerProcess, method: str, path: str, *, data: Any = None, **headers: str
) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession() as http,
        http.request(method, server.url + path, data=data, headers=headers) as r,
    ):
        body = await r.json() if r.content_type == "application/json" else await r.text()
        return r.status, body


async def _context(server: ServerProcess) -> str:
    status, body = await _send(
        server, "POST", "/api/v1/contexts", data=b"{}", **{"Content-Type": "application/json"}
    )
    assert status == 201
    return str(body["id"])


@pytest.mark.parametrize(
    ("method", "path", "data", "headers"),
    [
        ("POST", "/api/v1/contexts", b"metadata=x", {**FORM, "Origin": EVIL}),
        ("POST", "/api/v1/contexts", b"", {**FORM, "Origin": EVIL}),
        ("POST", "/api/v1/subjects/x/erase", b"", {**FORM, "Origin": EVIL}),
        ("POST", "/api/v1/subjects/x/erase", None, {"Origin": EVIL}),
        ("POST", "/api/v1/contexts", b"{}", {"Content-Type": "application/json", "Origin": EVIL}),
        ("POST", "/api/v1/contexts", b"{}", {"Origin": "null"}),  # a sandboxed frame, a file
        ("GET", "/api/v1/events", None, {"Origin": EVIL}),
        ("GET", "/api/v1/contexts", None, {"Host": "attacker.example"}),
        ("GET", "/api/v1/contexts", None, {"Host": "attacker.example:8080"}),
        ("POST", "/api/v1/contexts", b"{}", {"Host": "attacker.example",
                                              "Content-Type": "application/json"}),
        ("POST", "/mcp", b"{}", {"Host": "attacker.example", "Content-Type": "application/json"}),
        ("POST", "/mcp", b"{}", {"Origin": EVIL, "Content-Type": "application/json"}),
    ],
)  # fmt: skip
async def test_foreign_pages_are_refused_and_write_nothing(
    server: ServerProcess, method: str, path: str, data: bytes | None, headers: dict[str, str]
) -> None:
    head = server.head()
    status, body = await _send(server, method, path, data=data, **headers)
    assert status == 403, body
    assert server.head() == head


@pytest.mark.parametrize("media_type", ["application/x-www-form-urlencoded", "text/plain",
                                        "multipart/form-data; boundary=x"])  # fmt: skip
@pytest.mark.parametrize(
    ("method", "path"),
    [("POST", "/api/v1/contexts"), ("POST", "/api/v1/subjects/x/erase"),
     ("POST", "/api/v1/contexts/{id}/fork"), ("DELETE", "/api/v1/contexts/{id}")],
)  # fmt: skip
async def test_form_bodies_are_415_even_empty_and_from_no_origin(
    server: ServerProcess, method: str, path: str, media_type: str
) -> None:
    cid = await _context(server)
    head = server.head()
    status, body = await _send(
        server, method, path.replace("{id}", cid), data=b"", **{"Content-Type": media_type}
    )
    assert status == 415, body
    assert body["error"]["code"] == "unsupported_media_type"
    assert server.head() == head


async def test_a_get_never_writes(server: ServerProcess) -> None:
    cid = await _context(server)
    head = server.head()
    status, body = await _send(server, "GET", f"/api/v1/contexts/{cid}/window?record=true")
    assert status == 400
    assert "POST" in body["error"]["message"]
    assert server.head() == head
    status, body = await _send(
        server, "POST", f"/api/v1/contexts/{cid}/window", data=b"{}",
        **{"Content-Type": "application/json"},
    )  # fmt: skip
    assert status == 200
    assert server.head() == head + 1


async def test_foreign_websockets_and_event_streams_are_refused(server: ServerProcess) -> None:
    cid = await _context(server)
    async with aiohttp.ClientSession() as http:
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await http.ws_connect(f"{server.ws_url}/api/v1/ws/{cid}", headers={"Origin": EVIL})
        assert refused.value.status == 403
        with pytest.raises(aiohttp.WSServerHandshakeError) as rebound:
            await http.ws_connect(
                f"{server.ws_url}/api/v1/ws/{cid}", headers={"Host": "attacker.example"}
            )
        assert rebound.value.status == 403
        async with http.get(f"{server.url}/api/v1/events/stream", headers={"Origin": EVIL}) as r:
            assert r.status == 403


@pytest.mark.parametrize(
    "headers",
    [
        {},  # not a browser
        {"Origin": "http://localhost:3000"},  # a page served on this machine
        {"Origin": "http://[::1]:5173"},
        {"Origin": "https://app.example"},  # configured
        {"Host": "ctxlog.internal"},  # configured, any port
        {"Host": "ctxlog.internal:8080", "Origin": "http://ctxlog.internal:8080"},  # its own page
        {"Host": "localhost"},
    ],
)
async def test_local_configured_and_own_pages_are_served(
    server: ServerProcess, headers: dict[str, str]
) -> None:
    status, _ = await _send(server, "GET", "/api/v1/contexts", **headers)
    assert status == 200


async def test_own_origin_is_the_host_and_port_the_request_names(server: ServerProcess) -> None:
    own = {"Origin": server.url}
    assert (await _send(server, "GET", "/api/v1/contexts", **own))[0] == 200
    wrong = {"Origin": "http://ctxlog.internal:9999", "Host": "ctxlog.internal:8080"}
    assert (await _send(server, "GET", "/api/v1/contexts", **wrong))[0] == 403


async def test_public_endpoints_answer_any_host(server: ServerProcess) -> None:
    # Probes name the pod's address; these hold no data.
    for path in ("/healthz", "/openapi.json"):
        status, _ = await _send(server, "GET", path, Host="10.1.2.3:8080")
        assert status == 200


def test_a_server_on_every_address_needs_its_host_names(tmp_path: Path) -> None:
    env = {**os.environ, "CTXLOG_API_KEYS": "k:t:a", "CTXLOG_ALLOWED_HOSTS": ""}
    done = subprocess.run(
        [sys.executable, "-m", "api", "serve", "--host", "0.0.0.0", "--port", "0",
         "--db", str(tmp_path / "wild.db")],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 2
    assert "CTXLOG_ALLOWED_HOSTS" in done.stderr
    assert "Traceback" not in done.stderr
