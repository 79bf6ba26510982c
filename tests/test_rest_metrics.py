"""``/metrics`` on a real server: Prometheus's own parser reads it, and what it says moves
when requests are made (routes by template, appends, commits, the window cache, live
connections, limits, erasures); the optional token guards it; it can be turned off."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.server_process import ServerProcess, key_secrets, serving

TOKEN = "metrics-token-123"
KEY = {"X-API-Key": "key-alice"}
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    db = tmp_path_factory.mktemp("metrics") / "m.db"
    env = {
        "CTXLOG_METRICS_TOKEN": TOKEN,
        "CTXLOG_RATE_LIMIT": "1000",
        "CTXLOG_RATE_BURST": "1000",
        "CTXLOG_MAX_LIVE_PER_KEY": "1",
    }
    with serving(db, env=env, secrets=[*key_secrets(), TOKEN]) as proc:
        yield proc


async def scrape(session: aiohttp.ClientSession, server: ServerProcess) -> Samples:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with session.get(f"{server.url}/metrics", headers=headers) as r:
        assert r.status == 200
        assert r.headers["Content-Type"].startswith("text/plain; version=")
        text = await r.text()
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[s.name, frozenset(s.labels.items())] = s.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


async def test_metrics_parse_and_move_with_requests(server: ServerProcess) -> None:
    async with aiohttp.ClientSession() as session:
        before = await scrape(session, server)
        base = f"{server.url}/api/v1/contexts"
        async with session.post(base, json={"metadata": {"subject": "u-1"}}, headers=KEY) as r:
            cid = (await r.json())["id"]
        for n in range(3):
            pair = [{"role": "user", "content": f"m{n}"}, {"role": "user", "content": "x"}]
            body = {"messages": pair}
            async with session.post(f"{base}/{cid}/messages", json=body, headers=KEY) as r:
                assert r.status == 201
        for _ in range(3):  # the first computes the window, the others come from the cache
            async with session.get(f"{base}/{cid}/window", headers=KEY) as r:
                assert r.status == 200
        async with session.get(f"{base}/{cid}", headers={"X-API-Key": "wrong"}) as r:
            assert r.status == 401
        for method in ("PROPFIND", "MKCOL", "LOCK"):  # methods outside the API: one label
            async with session.request(method, f"{server.url}/", headers=KEY) as r:
                assert r.status == 405
        async with session.post(f"{server.url}/api/v1/subjects/u-1/erase", headers=KEY) as r:
            assert r.status == 200, await r.text()
        after = await scrape(session, server)

    route = "/api/v1/contexts/{id}/messages"
    count = "ctxlog_http_request_duration_seconds_count"
    moved = value(after, count, method="POST", route=route, status="201") - value(
        before, count, method="POST", route=route, status="201"
    )
    assert moved == 3
    assert value(after, count, method="GET", route="/api/v1/contexts/{id}", status="401") >= 1
    assert value(after, count, method="other", route="unmatched", status="405") == 3
    assert not any(name == count and ("method", "PROPFIND") in labels for name, labels in after)
    # Routes are templates: no id ever becomes a label.
    assert not any(cid in v for (_, labels) in after for _, v in labels)
    # 1 creation + 3 appends (+ the erasure's record) were stored, in at least one commit.
    assert value(after, "ctxlog_appends_total") - value(before, "ctxlog_appends_total") >= 4
    written = "ctxlog_events_written_total"
    events = value(after, written) - value(before, written)
    assert events >= 7
    assert value(after, "ctxlog_written_bytes_total") > value(before, "ctxlog_written_bytes_total")
    assert value(after, "ctxlog_commit_batch_appends_count") > value(
        before, "ctxlog_commit_batch_appends_count"
    )
    assert value(after, "ctxlog_commit_duration_seconds_sum") > 0
    assert value(after, "ctxlog_commit_sync_duration_seconds_count") > 0
    hits = value(after, "ctxlog_window_cache_hits_total") - value(
        before, "ctxlog_window_cache_hits_total"
    )
    assert hits >= 2
    assert value(after, "ctxlog_erasures_total") - value(before, "ctxlog_erasures_total") == 1
    assert value(after, "ctxlog_erased_keys_total") >= 1
    assert value(after, "ctxlog_projector_state", state="ok") == 1
    assert value(after, "ctxlog_projector_lag_events") == 0
    assert value(after, "ctxlog_projector_position") >= events
    assert value(after, "process_resident_memory_bytes") > 0


async def test_live_connections_and_refusals_are_counted(server: ServerProcess) -> None:
    async with aiohttp.ClientSession() as session:
        before = await scrape(session, server)
        url = f"{server.ws_url}/api/v1/events/stream"
        async with session.get(url.replace("ws://", "http://"), headers=KEY) as stream:
            assert stream.status == 200
            await stream.content.readline()
            during = await scrape(session, server)
            # The key's one live slot is taken: a second stream is refused (429).
            async with session.get(url.replace("ws://", "http://"), headers=KEY) as second:
                assert second.status == 429
            refused = await scrape(session, server)
    assert value(during, "ctxlog_live_connections", kind="stream") == 1
    assert (
        value(refused, "ctxlog_rate_limited_total", limit="connections")
        == value(before, "ctxlog_rate_limited_total", limit="connections") + 1
    )


async def test_mcp_sessions_and_subscriptions_are_counted(server: ServerProcess) -> None:
    params = {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t"}}
    init = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": params}
    headers = {**KEY, "Accept": "application/json, text/event-stream"}
    async with aiohttp.ClientSession() as session:
        before = await scrape(session, server)
        async with session.post(f"{server.url}/mcp", json=init, headers=headers) as r:
            assert r.status == 200
            sid = r.headers["Mcp-Session-Id"]
        headers["Mcp-Session-Id"] = sid
        async with session.post(f"{server.url}/api/v1/contexts", json={}, headers=KEY) as r:
            cid = (await r.json())["id"]
        subscribe = {"jsonrpc": "2.0", "id": 2, "method": "resources/subscribe",
                     "params": {"uri": f"ctxlog://contexts/{cid}"}}  # fmt: skip
        async with session.post(f"{server.url}/mcp", json=subscribe, headers=headers) as r:
            assert r.status == 200, await r.text()
        during = await scrape(session, server)
        async with session.delete(f"{server.url}/mcp", headers=headers) as r:
            assert r.status in (200, 204)
        after = await scrape(session, server)
    assert value(during, "ctxlog_mcp_sessions") == value(before, "ctxlog_mcp_sessions") + 1
    assert (
        value(during, "ctxlog_mcp_subscriptions") == value(before, "ctxlog_mcp_subscriptions") + 1
    )
    assert value(after, "ctxlog_mcp_sessions") == value(before, "ctxlog_mcp_sessions")


async def test_the_token_guards_metrics(server: ServerProcess) -> None:
    async with aiohttp.ClientSession() as session:
        for headers in ({}, {"Authorization": "Bearer nope"}, {"X-API-Key": "key-alice"}):
            async with session.get(f"{server.url}/metrics", headers=headers) as r:
                assert r.status == 401
                assert TOKEN not in await r.text()


async def test_metrics_can_be_turned_off(tmp_path: Path) -> None:
    with serving(tmp_path / "off.db", env={"CTXLOG_METRICS": "false"}) as proc:
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{proc.url}/metrics") as r:
                assert r.status == 404
            async with session.get(f"{proc.url}/openapi.json") as r:
                assert "/metrics" not in (await r.json())["paths"]


async def test_rate_limit_refusals_are_counted(tmp_path: Path) -> None:
    env = {"CTXLOG_RATE_LIMIT": "0.01", "CTXLOG_RATE_BURST": "1"}
    with serving(tmp_path / "rl.db", env=env) as proc:
        async with aiohttp.ClientSession() as session:
            statuses = []
            for _ in range(3):
                async with session.get(f"{proc.url}/api/v1/events", headers=KEY) as r:
                    statuses.append(r.status)
            await asyncio.sleep(0)
            async with session.get(f"{proc.url}/metrics") as r:
                families = {
                    (s.name, s.labels.get("limit")): s.value
                    for f in text_string_to_metric_families(await r.text())
                    for s in f.samples
                }
    assert statuses == [200, 429, 429]
    assert families["ctxlog_rate_limited_total", "requests"] == 2
