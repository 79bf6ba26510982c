"""Retention from outside, on a log written weeks ago: ``ctxlog retention --dry-run`` lists
what the configured policy would take and changes nothing; a real server applies the policy
on its schedule, records each deletion and erasure as an event, counts them in /metrics, and
leaves everything outside the policy alone."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path

import aiohttp
import pytest

from eventstore import EventStore
from projections import Contexts
from tests.support.aged import Story, files_holding
from tests.support.cli_helpers import invoke
from tests.support.server_process import KEYS_ENV, ServerProcess
from tests.test_projections_retention import SECRET_OLD, tell

KEYS = "key-ada:acme:ada,key-gus:globex:gus," + KEYS_ENV


async def aged_log(db: Path, monkeypatch: pytest.MonkeyPatch) -> Story:
    store = await EventStore.open_url(str(db))
    service = Contexts(store)
    await service.start()
    try:
        return await tell(service, monkeypatch)
    finally:
        await service.close()
        await store.close()


def head(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        return int(conn.execute("SELECT max(position) FROM events").fetchone()[0])


def test_dry_run_lists_what_the_policy_takes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "d.db"
    story = asyncio.run(aged_log(db, monkeypatch))
    config = tmp_path / "ctxlog.toml"
    config.write_text('[[retention]]\ntenant = "acme"\nidle_days = 30\nerase = true\n')
    before = head(db)
    result = invoke("retention", "--dry-run", "--config", str(config), "--db", str(db),
                    "--format", "json")  # fmt: skip
    assert result.exit_code == 0, result.stderr
    (plan,) = json.loads(result.stdout)
    assert [c["context_id"] for c in plan["delete"]] == [story.old, story.shared, story.plain]
    assert plan["erase"] == ["u-old"]
    assert plan["kept"] == [{"subject": "u-shared", "outside": [story.recent]}]
    text = invoke("retention", "--dry-run", "--config", str(config), "--db", str(db)).stdout
    assert "would delete and erase 3 contexts" in text
    assert story.old in text
    assert "keep subject u-shared: also in 1 contexts outside the policy" in text
    assert head(db) == before
    # No policy configured: a usage error, not a silent no-op.
    assert invoke("retention", "--dry-run", "--db", str(db)).exit_code == 2


async def test_the_server_applies_the_policy_on_its_schedule(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "s.db"
    story = await aged_log(db, monkeypatch)
    env = {"CTXLOG_RETENTION": "acme:30:erase", "CTXLOG_RETENTION_INTERVAL": "1"}
    server = ServerProcess(db, keys=KEYS, env=env)
    server.start()
    try:
        await server.ready()
        ada = {"X-API-Key": "key-ada"}
        async with aiohttp.ClientSession() as session, asyncio.timeout(60):
            while True:  # the first run follows the projector's catch-up
                async with session.get(
                    f"{server.url}/api/v1/contexts/{story.old}", headers=ada
                ) as r:
                    if r.status == 404:
                        break
                await asyncio.sleep(0.1)
            for cid in (story.recent, story.other):
                key = ada if cid == story.recent else {"X-API-Key": "key-gus"}
                async with session.get(f"{server.url}/api/v1/contexts/{cid}", headers=key) as r:
                    assert r.status == 200
            while True:
                async with session.get(f"{server.url}/metrics") as r:
                    metrics = await r.text()
                if "ctxlog_retention_runs_total 0.0" not in metrics:
                    break
                await asyncio.sleep(0.1)
            # Read once the run is over: it deletes first, then erases.
            async with session.get(
                f"{server.url}/api/v1/events?context_id={story.old}", headers=ada
            ) as r:
                log = (await r.json())["events"]
    finally:
        assert server.stop() == 0
    kinds = [(e["type"], e.get("actor")) for e in log]
    assert ("context.deleted", "ctxlog-retention") in kinds
    assert ("subject.erased", "ctxlog-retention") in kinds
    assert "ctxlog_retention_deleted_contexts_total 3.0" in metrics
    assert "ctxlog_retention_erased_subjects_total 1.0" in metrics
    output = server.output()
    assert "retention: deleted context" in output
    assert "Traceback" not in output
    assert files_holding(tmp_path, SECRET_OLD) == []
