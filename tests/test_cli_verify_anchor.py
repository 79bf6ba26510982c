"""``ctxlog verify`` against an anchor kept outside the database, and subject keys gone with no
erasure recorded: what the hash chain alone cannot tell."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path

import msgspec
import pytest

from api.cli.support import Exit
from eventstore import EventStore
from eventstore.chain import chain_hash
from projections import Caller, Contexts, NewMessage
from tests.support.cli_helpers import as_json, invoke, story

ADA = Caller(tenant="acme", actor="ada")


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "log.db"
    story(path)
    return path


def _rewrite(db: Path, keep: int, change: int | None = None) -> None:
    """What an attacker with a shell can do: keep the first ``keep`` events, change the data
    of event ``change``, and recompute every hash from there, so the chain verifies."""
    conn = sqlite3.connect(db)
    try:
        conn.executescript("DROP TRIGGER events_no_update; DROP TRIGGER events_no_delete;")
        conn.execute("DELETE FROM events WHERE position > ?", (keep,))
        if change is not None:
            data = msgspec.json.encode({"type": "context.deleted", "reason": "forged"})
            conn.execute("UPDATE events SET data = ? WHERE position = ?", (data, change))
        rows = conn.execute("SELECT * FROM events ORDER BY position").fetchall()
        previous = bytes(32)
        for row in rows:
            fixed = chain_hash(previous, tuple(row[:-1]))
            conn.execute("UPDATE events SET hash = ? WHERE position = ?", (fixed, row[0]))
            previous = fixed
        conn.commit()
    finally:
        conn.close()


def test_an_anchor_catches_truncation_and_a_recomputed_chain(db: Path, tmp_path: Path) -> None:
    anchor = tmp_path / "anchor.json"
    written = invoke("verify", "--db", db, "--write-anchor", anchor, "--format", "json")
    assert written.exit_code == 0, written.stderr
    head = as_json(written)["chain"]
    kept = json.loads(anchor.read_text())
    assert (kept["position"], kept["hash"]) == (head["events"], head["head_hash"])
    again = invoke("verify", "--db", db, "--anchor", anchor)
    assert again.exit_code == 0, again.stderr
    assert "anchor: ok" in again.stdout

    copy = tmp_path / "copy.db"
    copy.write_bytes(db.read_bytes())
    _rewrite(copy, keep=9)  # the last events removed, the chain still whole
    (copy.parent / "copy.db.readmodel").unlink(missing_ok=True)
    assert invoke("verify", "--db", copy).exit_code == 0  # the chain alone cannot tell
    truncated = invoke("verify", "--db", copy, "--anchor", anchor)
    assert truncated.exit_code == Exit.FAILED
    assert "events were removed" in truncated.stderr

    _rewrite(db, keep=12, change=5)  # an event rewritten, every later hash recomputed
    (db.parent / "log.db.readmodel").unlink(missing_ok=True)
    assert invoke("verify", "--db", db).exit_code == 0
    rewritten = invoke("verify", "--db", db, "--anchor", anchor, "--format", "json")
    assert rewritten.exit_code == Exit.FAILED
    assert "does not have the anchored hash" in rewritten.stderr
    assert as_json(rewritten)["anchor"]["ok"] is False
    refused = tmp_path / "not-written.json"
    bad = invoke("verify", "--db", db, "--anchor", anchor, "--write-anchor", refused)
    assert bad.exit_code == Exit.FAILED
    assert not refused.exists()  # a failed verification anchors nothing


def test_an_unreadable_anchor_is_a_usage_error(db: Path, tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.json"
    garbage.write_text("{not an anchor")
    assert invoke("verify", "--db", db, "--anchor", garbage).exit_code == Exit.USAGE
    missing = invoke("verify", "--db", db, "--anchor", tmp_path / "nowhere.json")
    assert missing.exit_code == Exit.NOT_FOUND


async def _subject_content(db: Path) -> None:
    store = await EventStore.open_url(str(db))
    service = Contexts(store)
    try:
        await service.start()
        cid = (await service.create(ADA, metadata={"subject": "ada"})).context_id
        await service.append(ADA, cid, [NewMessage(role="user", content="ada's words")])
        grace = (await service.create(ADA, metadata={"subject": "grace"})).context_id
        await service.append(ADA, grace, [NewMessage(role="user", content="grace's words")])
        await service.erase(ADA, "grace")  # erased on record: fine
    finally:
        await service.close()
        await store.close()


async def test_a_key_deleted_behind_ctxlogs_back_fails_verify(tmp_path: Path) -> None:
    db = tmp_path / "log.db"
    await _subject_content(db)
    assert (await asyncio.to_thread(invoke, "verify", "--db", db)).exit_code == 0
    conn = sqlite3.connect(db)
    try:
        (key_id,) = conn.execute("SELECT key_id FROM subject_keys WHERE subject = 'ada'").fetchone()
        conn.execute("DELETE FROM subject_keys WHERE subject = 'ada'")  # "erased", no event
        conn.commit()
    finally:
        conn.close()
    found = await asyncio.to_thread(invoke, "verify", "--db", db, "--format", "json")
    assert found.exit_code == Exit.FAILED
    assert key_id in found.stderr
    assert [m["key_id"] for m in as_json(found)["keys"]["missing"]] == [key_id]
    assert as_json(found)["keys"]["missing"][0]["subject"] == "ada"
    # Erasing the subject now records what happened; then verify passes again.
    erased = await asyncio.to_thread(
        invoke, "erase", "--subject", "ada", "--tenant", "acme", "--db", db, "--format", "json"
    )
    assert erased.exit_code == 0, erased.stderr
    assert as_json(erased)["keys_destroyed"] == 0
    assert (await asyncio.to_thread(invoke, "verify", "--db", db)).exit_code == 0
