"""The three probes: ``/livez`` answers while the process does; ``/readyz`` is ``/healthz`` plus
a readable log and a projector within the configured lag (events or seconds behind)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

import eventstore as es
from api import appkeys, create_app, testing
from api.testing import ApiClient
from projections import Projector

CTX = "/api/v1/contexts"


async def connect(aiohttp_client: Any, tmp_path: Path, **settings: Any) -> ApiClient:
    app = create_app(testing.settings(str(tmp_path / "p.db"), **settings))
    client: TestClient[Any, Any] = await aiohttp_client(app)
    api = ApiClient(client, app[appkeys.OPENAPI], "key-alice")
    await api.wait_ready()
    return api


def app_of(api: ApiClient) -> web.Application:
    app: web.Application = api.client.app
    return app


async def test_livez_answers_without_a_key_or_a_host_check(
    aiohttp_client: Any, tmp_path: Path
) -> None:
    api = await connect(aiohttp_client, tmp_path)
    reply = await api.as_key(None).get("/livez", headers={"Host": "10.1.2.3:8080"}, expect=200)
    assert reply.json["status"] == "ok"


async def test_readyz_fails_while_the_projector_lags_past_the_limit(
    aiohttp_client: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    api = await connect(aiohttp_client, tmp_path, ready_max_lag_events=2, ready_max_lag_seconds=0)
    cid = (await api.post(CTX, {}, expect=201)).json["id"]
    assert (await api.get("/readyz")).status == 200

    held = asyncio.Event()
    real_apply = Projector.apply

    async def slow_apply(self: Projector, *args: Any, **kwargs: Any) -> None:
        await held.wait()
        await real_apply(self, *args, **kwargs)

    monkeypatch.setattr(Projector, "apply", slow_apply)
    store = app_of(api)[appkeys.STORE]
    projector = app_of(api)[appkeys.CONTEXTS].projector
    meta = es.EventMetadata(tenant="tenant-a", actor="alice")

    async def append() -> int:
        event = es.MessageAppended(message_id=str(es.new_id()), role="user", content="x")
        return (await store.append(cid, [event], metadata=meta)).positions[-1]

    # The projector waiting for its next batch already holds the real ``apply``: one more
    # event goes through it, the ones after wait in ``slow_apply``.
    await projector.wait_for(await append())
    await append()
    assert (await api.get("/readyz")).status == 200  # one event behind: within the limit
    for _ in range(2):
        await append()
    reply = await api.get("/readyz", expect=503)
    assert reply.json["status"] == "behind"
    assert "3 events" in reply.json["reason"]
    assert reply.headers["Retry-After"] == "1"
    # /healthz says nothing is wrong with the projector; /livez that the process answers.
    assert (await api.get("/healthz")).status == 200
    assert (await api.get("/livez")).status == 200
    held.set()
    async with asyncio.timeout(30):
        while (await api.get("/readyz")).status != 200:  # noqa: ASYNC110 (a probe polls)
            await asyncio.sleep(0.02)


async def test_readyz_fails_on_the_age_of_the_oldest_unapplied_event(
    aiohttp_client: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    api = await connect(aiohttp_client, tmp_path, ready_max_lag_seconds=5)
    projector = app_of(api)[appkeys.CONTEXTS].projector

    async def lag(self: Projector) -> tuple[int, float]:
        return 1, 6.0

    assert (await api.get("/readyz")).status == 200
    monkeypatch.setattr(type(projector), "lag", lag)
    reply = await api.get("/readyz", expect=503)
    assert "6.0 s" in reply.json["reason"]


async def test_readyz_fails_when_the_log_cannot_be_read(
    aiohttp_client: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    api = await connect(aiohttp_client, tmp_path)
    store = app_of(api)[appkeys.STORE]

    async def unavailable(*args: Any, **kwargs: Any) -> Any:
        raise es.StoreUnavailable("the disk is gone")

    monkeypatch.setattr(store, "head", unavailable)
    reply = await api.get("/readyz", expect=503)
    assert reply.json["status"] == "failed"
    assert "log cannot be read" in reply.json["reason"]
    assert (await api.get("/livez")).status == 200
