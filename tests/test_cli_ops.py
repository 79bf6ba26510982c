"""``ctxlog verify``, ``export``, ``import``, ``backup`` and ``rebuild`` on temp databases,
through the command: tampering is found and named, a round trip keeps every column, and a
backup taken while appends go on opens and verifies."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import sqlite3
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

from eventstore import EventStore, MessageAppended
from projections import Contexts, NewMessage
from tests.conftest import PG_DSN
from tests.support.cli_helpers import (
    ADA,
    as_json,
    child_env,
    command,
    invoke,
    rows,
    story,
    tamper,
    tell_story,
)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "log.db"


def message(text: str) -> MessageAppended:
    return MessageAppended(message_id=str(uuid.uuid4()), role="user", content=text)


def test_verify_passes_then_names_the_first_tampered_position(db: Path) -> None:
    story(db)
    report = invoke("verify", "--db", db, "--format", "json")
    assert report.exit_code == 0, report.stderr
    body = as_json(report)
    assert body["ok"] is True
    assert body["chain"]["events"] == 12
    assert (body["readmodel"]["status"], body["readmodel"]["contexts"]) == ("ok", 2)
    tamper(db, 7, msgspec.json.encode({"type": "context.deleted"}))
    text = invoke("verify", "--db", db)
    assert text.exit_code == 1
    assert "BROKEN at position 7" in text.stdout
    assert "position 7" in text.stderr
    broken = invoke("verify", "--db", db, "--format", "json")
    assert broken.exit_code == 1
    assert as_json(broken)["chain"]["broken"]["position"] == 7


def test_verify_finds_a_read_model_that_differs_from_the_fold(db: Path) -> None:
    cid, _ = story(db)
    conn = sqlite3.connect(f"{db}.readmodel")
    conn.execute("UPDATE messages SET content = ? WHERE seq = 0", ('"You are verbose."',))
    conn.commit()
    conn.close()
    result = invoke("verify", "--db", db, "--format", "json")
    assert result.exit_code == 1
    readmodel = as_json(result)["readmodel"]
    assert (readmodel["status"], readmodel["differing"]) == ("differs", 2)  # and the fork's
    assert cid in {m["context_id"] for m in readmodel["mismatches"]}
    assert "messages" in readmodel["mismatches"][0]["reason"]
    assert "differs from the log" in result.stderr
    assert invoke("rebuild", "--db", db).exit_code == 0  # the cure: rebuild from the log
    assert invoke("verify", "--db", db).exit_code == 0


async def test_verify_beside_a_server_that_keeps_writing(db: Path) -> None:
    cid, _ = await tell_story(str(db))
    store = await EventStore.open_sqlite(str(db))
    service = Contexts(store)  # the server's projector, writing the same read model
    await service.start()
    stop = asyncio.Event()

    async def keep_appending() -> int:
        appended = 0
        while not stop.is_set():
            await service.append(ADA, cid, [NewMessage(role="user", content=f"m{appended}")])
            appended += 1
        return appended

    writer = asyncio.create_task(keep_appending())
    try:
        verified = await asyncio.to_thread(
            subprocess.run, command("verify", "--db", db, "--format", "json"),
            capture_output=True, text=True, env=child_env(), timeout=120, check=False,
        )  # fmt: skip
    finally:
        stop.set()
        appended = await writer
        await service.close()
        await store.close()
    assert verified.returncode == 0, verified.stderr
    report = json.loads(verified.stdout)
    assert report["readmodel"]["status"] == "ok"
    assert report["chain"]["events"] >= 12
    assert appended > 0


def test_export_import_round_trip_keeps_every_column_and_verifies(tmp_path: Path) -> None:
    source, copy, export = tmp_path / "a.db", tmp_path / "b.db", tmp_path / "log.ndjson"
    cid, _ = story(source)
    exported = invoke("export", "--db", source, "-o", export)
    assert exported.exit_code == 0, exported.stderr
    assert "exported 12 events" in exported.stderr
    imported = invoke("import", export, "--db", copy, "--format", "json")
    assert imported.exit_code == 0, imported.stderr
    assert as_json(imported)["events"] == 12
    assert rows(copy) == rows(source)  # positions, versions, ids, times, data and hashes
    report = as_json(invoke("verify", "--db", copy, "--format", "json"))
    assert report["ok"] is True
    assert report["readmodel"]["status"] == "absent"  # built when served or rebuilt
    assert invoke("rebuild", "--db", copy).exit_code == 0
    report = as_json(invoke("verify", "--db", copy, "--format", "json"))
    assert (report["ok"], report["readmodel"]["status"]) == (True, "ok")
    history = [invoke("history", cid, "--db", d, "--format", "json").stdout for d in (source, copy)]
    assert history[0] == history[1]
    again = invoke("import", export, "--db", copy)
    assert again.exit_code == 6
    assert "already holds events" in again.stderr


def test_a_tampered_export_fails_import_naming_the_position(tmp_path: Path) -> None:
    source, export = tmp_path / "a.db", tmp_path / "log.ndjson"
    story(source)
    assert invoke("export", "--db", source, "-o", export).exit_code == 0
    lines = export.read_bytes().splitlines()
    row = json.loads(lines[4])  # position 4: "Fine."
    event = json.loads(base64.b64decode(row["data"]))
    event["content"] = "Forged."
    row["data"] = base64.b64encode(json.dumps(event).encode()).decode()
    forged = tmp_path / "forged.ndjson"
    forged.write_bytes(b"\n".join([*lines[:4], json.dumps(row).encode(), *lines[5:]]) + b"\n")
    target = tmp_path / "target.db"
    result = invoke("import", forged, "--db", target)
    assert result.exit_code == 1
    assert "position 4" in result.stderr
    assert not target.exists()  # nothing written, no empty database left behind
    truncated = tmp_path / "short.ndjson"
    truncated.write_bytes(b"\n".join(lines[:6]) + b"\n")
    result = invoke("import", truncated, "--db", target)
    assert result.exit_code == 1
    assert "truncated" in result.stderr
    assert invoke("import", tmp_path / "none.ndjson", "--db", target).exit_code == 3


def test_partial_exports_are_for_reading_not_importing(tmp_path: Path) -> None:
    source = tmp_path / "a.db"
    _, fork = story(source)
    result = invoke("export", "--db", source, "--context", fork)
    assert result.exit_code == 0, result.stderr
    header, *events = (json.loads(line) for line in result.stdout.splitlines())
    assert header["scope"] == f"context:{fork}"
    assert [(e["position"], e["version"]) for e in events] == [(10, 1), (11, 2), (12, 3)]
    assert events[0]["prev_hash"] == rows(source)[8][10].hex()
    partial = tmp_path / "fork.ndjson"
    partial.write_text(result.stdout)
    refused = invoke("import", partial, "--db", tmp_path / "b.db")
    assert refused.exit_code == 6
    assert "whole log" in refused.stderr
    tenant = invoke("export", "--db", source, "--tenant", "acme")
    assert len(tenant.stdout.splitlines()) == 13
    assert invoke("export", "--db", source, "--context", str(uuid.uuid4())).exit_code == 3
    assert invoke("export", "--db", source, "--context", fork, "--tenant", "x").exit_code == 2


def test_export_refuses_a_tampered_database(tmp_path: Path) -> None:
    source, export = tmp_path / "a.db", tmp_path / "log.ndjson"
    story(source)
    tamper(source, 3, msgspec.json.encode({"type": "context.deleted"}))
    result = invoke("export", "--db", source, "-o", export)
    assert result.exit_code == 1
    assert "position 3" in result.stderr
    assert not export.exists()


async def test_a_backup_taken_during_appends_opens_and_verifies(tmp_path: Path) -> None:
    source, copy = tmp_path / "live.db", tmp_path / "copy.db"
    cid, _ = await tell_story(str(source))
    store = await EventStore.open_sqlite(str(source))
    stop = asyncio.Event()

    async def keep_appending() -> int:
        appended = 0
        while not stop.is_set():
            await store.append(cid, [message("x" * 2000) for _ in range(20)])
            appended += 1
        return appended

    for _ in range(100):  # ~4 MB: the copy takes many steps, with appends between them
        await store.append(cid, [message("y" * 2000) for _ in range(20)])
    writer = asyncio.create_task(keep_appending())
    backup = await asyncio.create_subprocess_exec(
        *command("backup", copy, "--db", source, "--format", "json"),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=child_env(),
    )  # fmt: skip
    try:
        # A copy that started over at every write would never finish while appends go on.
        out, err = await asyncio.wait_for(backup.communicate(), 120)
    finally:
        stop.set()
        batches = await writer
        await store.close()
        if backup.returncode is None:
            backup.kill()
            await backup.wait()
    assert backup.returncode == 0, err.decode()
    assert batches > 0
    through = json.loads(out)["through"]
    copied, live = rows(copy), rows(source)
    assert len(copied) == through
    assert copied == live[:through]  # the log exactly as of one commit
    verified = await asyncio.to_thread(
        subprocess.run, command("verify", "--db", copy), capture_output=True, text=True,
        env=child_env(), timeout=120, check=False,
    )  # fmt: skip
    assert verified.returncode == 0, verified.stderr
    assert "hash chain: ok" in verified.stdout


def test_backup_refuses_to_overwrite_and_needs_a_sqlite_file(db: Path, tmp_path: Path) -> None:
    story(db)
    dest = tmp_path / "copy.db"
    dest.write_text("keep me")
    result = invoke("backup", dest, "--db", db)
    assert result.exit_code == 6
    assert dest.read_text() == "keep me"
    assert invoke("backup", tmp_path / "c.db", "--db", tmp_path / "none.db").exit_code == 3
    assert invoke("backup", tmp_path / "c.db", "--db", "postgresql://x/y").exit_code == 2
    done = invoke("backup", tmp_path / "c.db", "--db", db, "--format", "json")
    assert as_json(done)["through"] == 12
    assert rows(tmp_path / "c.db") == rows(db)
    assert not (tmp_path / "c.db.readmodel").exists()  # derived: it rebuilds from the copy


def test_rebuild_replaces_the_read_model(db: Path) -> None:
    story(db)
    os.remove(f"{db}.readmodel")
    result = invoke("rebuild", "--db", db, "--format", "json")
    assert result.exit_code == 0, result.stderr
    assert as_json(result)["events"] == 12
    assert as_json(invoke("verify", "--db", db, "--format", "json"))["readmodel"]["contexts"] == 2


@pytest.mark.parametrize(
    "args",
    [["verify"], ["export"], ["rebuild"], ["backup", "copy.db"], ["history", "x"], ["stats"]],
)
def test_a_missing_database_exits_3_and_is_not_created(tmp_path: Path, args: list[str]) -> None:
    db = tmp_path / "missing.db"
    result = invoke(*args, "--db", db)
    assert result.exit_code == 3
    assert "no database at" in result.stderr
    assert not db.exists()


@pytest.mark.parametrize("args", [["verify"], ["export"], ["rebuild"], ["backup", "c.db"]])
def test_a_newer_schema_exits_4(db: Path, args: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    story(db)
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA user_version = 2")
    conn.commit()
    conn.close()
    monkeypatch.chdir(db.parent)  # backup's relative destination lands in the temp dir
    result = invoke(*args, "--db", db)
    assert result.exit_code == 4
    assert "newer" in result.stderr


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL schema as a --db URL, dropped afterwards."""
    if not PG_DSN:
        pytest.skip("PostgreSQL tests run when CTXLOG_TEST_PG_DSN is set")
    schema = "cli_" + os.urandom(6).hex()
    sep = "&" if "?" in PG_DSN else "?"
    yield f"{PG_DSN}{sep}schema={schema}"

    async def drop() -> None:
        import asyncpg

        conn = await asyncpg.connect(PG_DSN)
        try:
            await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
            await conn.execute(f"DROP SCHEMA IF EXISTS {schema}_readmodel CASCADE")
        finally:
            await conn.close()

    asyncio.run(drop())


def test_postgres_round_trip_through_sqlite_keeps_every_column(tmp_path: Path, pg_url: str) -> None:
    source, back = tmp_path / "a.db", tmp_path / "back.db"
    cid, _ = story(source)
    export = tmp_path / "log.ndjson"
    assert invoke("export", "--db", source, "-o", export).exit_code == 0
    imported = invoke("import", export, "--db", pg_url)
    assert imported.exit_code == 0, imported.stderr
    report = as_json(invoke("verify", "--db", pg_url, "--format", "json"))
    assert report["ok"] is True
    assert report["readmodel"]["status"] == "absent"  # no node has served it yet
    history = invoke("history", cid, "--db", pg_url, "--format", "json")
    assert history.stdout == invoke("history", cid, "--db", source, "--format", "json").stdout
    stats = as_json(invoke("stats", "--db", pg_url, "--format", "json"))
    assert (stats["events"], stats["contexts"]) == (12, 2)
    # The log's schema sized from the catalog; no read model yet, so no messages or deletions.
    assert stats["database_bytes"] > 0
    assert (stats["readmodel_bytes"], stats["deleted"]) == (None, None)
    assert stats["largest"][0]["messages"] is None
    again = tmp_path / "again.ndjson"
    assert invoke("export", "--db", pg_url, "-o", again).exit_code == 0
    assert invoke("import", again, "--db", back).exit_code == 0
    assert rows(back) == rows(source)
    assert invoke("import", export, "--db", pg_url).exit_code == 6
    assert invoke("backup", tmp_path / "c.db", "--db", pg_url).exit_code == 2
    # The shared read model beside the log: rebuilt in place (no node leads it here).
    rebuilt = as_json(invoke("rebuild", "--db", pg_url, "--format", "json"))
    assert rebuilt["events"] == report["chain"]["events"]
    verified = as_json(invoke("verify", "--db", pg_url, "--format", "json"))
    assert verified["readmodel"]["status"] == "ok"
    # Now stats reads the shared read model as the SQLite one: the same counts, and its size.
    stats = as_json(invoke("stats", "--db", pg_url, "--format", "json"))
    assert stats["readmodel_bytes"] > 0
    assert stats["deleted"] == 1
    largest = stats["largest"]
    assert [(c["context_id"], c["events"], c["messages"]) for c in largest] == [
        (cid, 9, 2), (largest[1]["context_id"], 3, largest[1]["messages"])
    ]
    assert largest[1]["deleted"] is True
    assert stats == as_json(invoke("stats", "--db", source, "--format", "json")) | {
        "database_bytes": stats["database_bytes"], "readmodel_bytes": stats["readmodel_bytes"]
    }
    text = invoke("stats", "--db", pg_url).stdout
    assert "2 (1 deleted)" in text
    assert "read model" in text


def test_export_help_says_what_an_export_holds() -> None:
    shown = " ".join(invoke("export", "--help").stdout.split())
    assert "An export holds the keys of the content it carries" in shown
    assert "A partial export carries no keys" in shown
