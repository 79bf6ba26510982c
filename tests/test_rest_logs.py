"""Logs of a real server: ``--log-format json`` gives one JSON object per line, the access log
names method, route, status, duration, request id, tenant and actor, the request id is the one
in ``X-Request-ID``, and no line holds an API key or message content."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aiohttp

from tests.support.server_process import key_secrets, serving

CONTENT = "TOP-SECRET-CONTENT-7f3a"
SUBJECT = "subject-in-a-query-9c1"


def lines(log: str) -> list[dict[str, Any]]:
    """Every line of the server's output, parsed (a line that is not JSON fails the test)."""
    return [json.loads(line) for line in log.splitlines() if line.strip()]


async def test_json_logs_and_the_access_log(tmp_path: Path) -> None:
    env = {"CTXLOG_LOG_FORMAT": "json", "CTXLOG_ACCESS_LOG": "1"}
    with serving(tmp_path / "l.db", env=env, secrets=key_secrets()) as server:
        key = {"X-API-Key": "key-alice"}
        async with aiohttp.ClientSession() as session:
            base = f"{server.url}/api/v1/contexts"
            async with session.post(base, json={}, headers=key) as r:
                cid = (await r.json())["id"]
            body = {"role": "user", "content": CONTENT}
            headers = {**key, "X-Request-ID": "req-given-42"}
            async with session.post(f"{base}/{cid}/messages", json=body, headers=headers) as r:
                assert r.status == 201
                assert r.headers["X-Request-ID"] == "req-given-42"
            window = f"{base}/{cid}/window?policy=last_n&model={SUBJECT}"
            async with session.get(window, headers=key) as r:
                assert r.status == 422
                minted = r.headers["X-Request-ID"]
            async with session.get(f"{base}/{cid}", headers={"X-API-Key": "key-wrong"}) as r:
                assert r.status == 401
        log = server.output()
    records = lines(log)  # every line parses
    assert all({"time", "level", "logger", "message"} <= set(r) for r in records)
    access = [r for r in records if r["logger"] == "ctxlog.access"]
    appended = next(r for r in access if r["request_id"] == "req-given-42")
    assert appended["method"] == "POST"
    assert appended["route"] == "/api/v1/contexts/{id}/messages"
    assert appended["status"] == 201
    assert appended["duration_ms"] > 0
    assert (appended["tenant"], appended["actor"]) == ("tenant-a", "alice")
    refused = next(r for r in access if r["request_id"] == minted)
    assert (refused["route"], refused["status"]) == ("/api/v1/contexts/{id}/window", 422)
    unauthorized = next(r for r in access if r["status"] == 401)
    assert unauthorized["tenant"] is None
    # Neither content, nor keys, nor ids or query strings from paths.
    for secret in (CONTENT, SUBJECT, cid, *key_secrets(), "key-wrong"):
        assert secret not in log
    assert any(r["logger"] == "ctxlog" and "serving" in r["message"] for r in records)


async def test_text_logs_carry_the_access_fields(tmp_path: Path) -> None:
    env = {"CTXLOG_ACCESS_LOG": "true"}
    with serving(tmp_path / "t.db", env=env) as server:
        async with aiohttp.ClientSession() as session:
            headers = {"X-API-Key": "key-bob", "X-Request-ID": "req-text-1"}
            async with session.get(f"{server.url}/api/v1/events", headers=headers) as r:
                assert r.status == 200
        log = server.output()
    line = next(line for line in log.splitlines() if "req-text-1" in line)
    assert "ctxlog.access: GET /api/v1/events 200" in line
    assert "request_id=req-text-1 tenant=tenant-b actor=bob" in line


async def test_no_access_log_unless_asked(tmp_path: Path) -> None:
    with serving(tmp_path / "n.db") as server:
        async with aiohttp.ClientSession() as session:
            url, bob = f"{server.url}/api/v1/events", {"X-API-Key": "key-bob"}
            async with session.get(url, headers=bob) as r:
                assert r.status == 200
        log = server.output()
    assert "ctxlog.access" not in log
