"""A projector that cannot write is visible and recovers by itself: on a full read model
(SQLite's own SQLITE_FULL, from a page limit on the projector's connection) reads that
need it answer 503 with Retry-After, writes are refused before writing, ``/healthz`` and
``/readyz`` say ``behind`` and why, the rest is served; once there is room it resumes with
every acknowledged write. Any other error says ``failed`` the same way."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from api import appkeys, create_app, testing
from api.testing import ApiClient, Reply
from projections import Contexts, apply
from tests.support.clients import AppClient

CTX = "/api/v1/contexts"
ROOM = 1 << 30
"""A page limit far past anything the test writes."""


@pytest.fixture
async def api(aiohttp_client: Any, tmp_path: Path) -> ApiClient:
    app = create_app(testing.settings(str(tmp_path / "ctx.db")))
    client: AppClient = await aiohttp_client(app)
    api = ApiClient(client, app[appkeys.OPENAPI], "key-alice")
    await api.wait_ready()
    service(api).projector.backoff.cap = 0.2  # retry often: the test waits for a few
    return api


def service(api: ApiClient) -> Contexts:
    app: web.Application = api.client.app
    return app[appkeys.CONTEXTS]


def _page_limit_sync(conn: sqlite3.Connection, limit: int | None) -> int:
    """Cap the file at ``limit`` pages (None: at its size now); returns the cap."""
    if limit is None:
        (limit,) = conn.execute("PRAGMA page_count").fetchone()
    return int(conn.execute(f"PRAGMA max_page_count = {int(limit)}").fetchone()[0])


async def _until(api: ApiClient, path: str, status: int, within: float = 60.0) -> Reply:
    async with asyncio.timeout(within):
        while True:
            reply = await api.get(path)
            if reply.status == status:
                return reply
            await asyncio.sleep(0.02)


def _assert_behind(reply: Reply, status: str, why: str) -> None:
    assert reply.status == 503, reply.json
    assert int(reply.headers["Retry-After"]) >= 1
    if "error" in reply.json:
        assert reply.json["error"]["code"] == "behind"
        reply_status, reason = (reply.json["error"]["details"][k] for k in ("status", "reason"))
    else:
        reply_status, reason = reply.json["status"], reply.json["reason"]
    assert reply_status == status, reply.json
    assert why in reason, reason


async def test_a_full_read_model_is_behind_then_resumes_with_every_acknowledged_write(
    api: ApiClient, caplog: pytest.LogCaptureFixture
) -> None:
    svc = service(api)
    full = (await api.post(CTX, {}, expect=201)).json["id"]
    other = (await api.post(CTX, {}, expect=201)).json["id"]
    bob = api.as_key("key-bob")
    theirs = (await bob.post(CTX, {}, expect=201)).json["id"]
    acked: list[str] = []
    for i in range(3):
        content = f"before {i}"
        await api.post(f"{CTX}/{full}/messages", {"role": "user", "content": content}, expect=201)
        acked.append(content)

    caplog.set_level(logging.WARNING, logger="ctxlog.projector")
    await svc.readmodel.write(_page_limit_sync, None)  # the disk is full from here on
    refused = None
    for i in range(500):
        content = f"{i} " + "x" * 4000
        reply = await api.post(f"{CTX}/{full}/messages", {"role": "user", "content": content})
        if reply.status == 201:
            acked.append(content)
            continue
        _assert_behind(reply, "behind", "full")
        details = reply.json["error"]["details"]
        if details.get("written"):  # in the log; only its answer could not be read back
            acked.append(content)
            continue
        refused = content
        break
    assert refused is not None, "the read model never filled up"
    assert svc.projector.error is not None

    # Behind: health says so, reads that need the projector are 503, writes are refused
    # before writing; what the read model holds already is served.
    for path in ("/healthz", "/readyz"):
        _assert_behind(await api.get(path), "behind", "full")
    _assert_behind(await api.get(f"{CTX}/{full}"), "behind", "full")
    version = (await api.get(f"{CTX}/{other}", expect=200)).json["version"]
    (await bob.get(f"{CTX}/{theirs}", expect=200))
    _assert_behind(await api.post(f"{CTX}/{other}/messages", {"role": "user", "content": "no"}),
                   "behind", "full")  # fmt: skip
    assert await svc.store.stream_version(other) == version  # nothing was written
    async with asyncio.timeout(60):  # several attempts, each failing the same way
        while svc.projector.backoff.attempts < 4:  # noqa: ASYNC110 - polling is the point
            await asyncio.sleep(0.05)

    await svc.readmodel.write(_page_limit_sync, ROOM)  # room again: no restart, no request
    await _until(api, "/healthz", 200)
    assert (await api.get("/readyz", expect=200)).json["status"] == "ok"
    state = (await api.get(f"{CTX}/{full}", expect=200)).json
    assert [m["content"] for m in state["messages"]] == acked
    logged = await svc.store.read_stream(full)
    assert len(logged) == 1 + len(acked)  # the log: every acknowledged write, once
    await api.post(f"{CTX}/{other}/messages", {"role": "user", "content": "yes"}, expect=201)

    # Logged once when it fell behind and once when it recovered, not once per attempt.
    records = [r for r in caplog.records if r.name == "ctxlog.projector"]
    assert [r.levelname for r in records] == ["ERROR", "WARNING"], [r.message for r in records]
    assert "behind" in records[0].message
    assert "recovered" in records[1].message


async def test_a_projector_failing_on_anything_else_says_failed_and_resumes(
    api: ApiClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    cid = (await api.post(CTX, {}, expect=201)).json["id"]
    real = apply._apply_event

    def broken(*args: Any) -> Any:
        raise RuntimeError("a bug in the projector")

    monkeypatch.setattr(apply, "_apply_event", broken)
    reply = await api.post(f"{CTX}/{cid}/messages", {"role": "user", "content": "kept"})
    _assert_behind(reply, "failed", "a bug in the projector")
    assert reply.json["error"]["details"]["written"] is True
    for path in ("/healthz", "/readyz", f"{CTX}/{cid}"):
        _assert_behind(await api.get(path), "failed", "RuntimeError")
    assert (await api.get("/", expect=200)).json["name"] == "ctxlog"

    monkeypatch.setattr(apply, "_apply_event", real)  # fixed: it resumes by itself
    await _until(api, "/healthz", 200)
    state = (await api.get(f"{CTX}/{cid}", expect=200)).json
    assert [m["content"] for m in state["messages"]] == ["kept"]
