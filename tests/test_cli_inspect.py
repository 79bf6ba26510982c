"""``ctxlog history``, ``replay``, ``show``, ``audit`` and ``stats`` on a temp database, through
the command itself: what happened to a conversation, who did it, and what the model saw."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sqlite3
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from eventstore import EventMetadata, EventStore, MessageAppended, to_datetime
from tests.support.cli_helpers import as_json, child_env, command, invoke, ndjson, rows, story


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "log.db"


def test_history_is_a_table_of_versions_and_json_for_scripts(db: Path) -> None:
    cid, _ = story(db)
    text = invoke("history", cid, "--db", db)
    assert text.exit_code == 0, text.stderr
    lines = text.stdout.splitlines()
    assert lines[0].split() == ["v", "time", "actor", "event", "change"]
    assert "bob" in lines[6]
    assert "message.redacted" in lines[6]
    assert "pii" in lines[6]
    assert "\x1b[" not in text.stdout  # no colours when piped
    events = as_json(invoke("history", cid, "--db", db, "--format", "json"))
    assert [e["version"] for e in events] == list(range(1, 10))
    assert events[4]["type"] == "message.edited"
    assert events[4]["data"]["content"] == "Fine, thanks!"
    assert {e["tenant"] for e in events} == {"acme"}
    assert events[5]["actor"] == "bob"


def test_replay_shows_each_change_in_place(db: Path) -> None:
    cid, fork = story(db)
    result = invoke("replay", cid, "--db", db)
    assert result.exit_code == 0, result.stderr
    out = result.stdout
    assert "+ [user] Hello there, how are you?" in out
    assert "~ [assistant] Fine.\n  → [assistant] Fine, thanks!" in out
    assert "✗ [user] Hello there, how are you? (redacted: pii)" in out
    assert "Σ summary through" in out
    assert "served 1 messages" in out
    assert "↺ back to v3: 2 messages\n    [system] You are terse.\n    [user] Hello there" in out
    forked = invoke("replay", fork, "--db", db).stdout
    assert f"⑂ from {cid} v2: 1 messages\n    [system] You are terse." in forked
    records = ndjson(invoke("replay", cid, "--db", db, "--format", "ndjson"))
    assert len(records) == 9
    assert records[4]["effect"] == {"before": "Fine."}
    assert records[5]["effect"] == {"before": "Hello there, how are you?"}
    assert len(records[8]["effect"]["messages"]) == 2
    first = as_json(invoke("replay", cid, "--db", db, "--format", "json", "--to-version", "4"))
    assert [r["version"] for r in first] == [1, 2, 3, 4]
    assert invoke("replay", cid, "--follow", "--format", "json", "--db", db).exit_code == 2


async def test_replay_follow_tails_live_appends_until_ctrl_c(db: Path) -> None:
    cid, _ = await asyncio.to_thread(story, db)
    follower = await asyncio.create_subprocess_exec(
        *command("replay", cid, "--follow", "--format", "ndjson", "--db", db),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=child_env(),
    )  # fmt: skip
    assert follower.stdout is not None
    try:
        for version in range(1, 10):
            line = await asyncio.wait_for(follower.stdout.readline(), 60)
            assert json.loads(line)["version"] == version
        store = await EventStore.open_sqlite(str(db))
        try:
            event = MessageAppended(message_id=str(uuid.uuid4()), role="user", content="live!")
            await store.append(cid, [event], metadata=EventMetadata(actor="eve", tenant="acme"))
        finally:
            await store.close()
        live = json.loads(await asyncio.wait_for(follower.stdout.readline(), 60))
        assert (live["version"], live["actor"], live["data"]["content"]) == (10, "eve", "live!")
        follower.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(follower.wait(), 60) == 0
    finally:
        with contextlib.suppress(ProcessLookupError):
            follower.kill()
        await follower.wait()


def test_show_now_at_a_version_at_a_time_and_a_window(db: Path) -> None:
    cid, fork = story(db)
    now = as_json(invoke("show", cid, "--db", db, "--format", "json"))
    assert now["version"] == 9
    assert [m["content"] for m in now["messages"]] == [
        "You are terse.",
        "Hello there, how are you?",
    ]
    assert (now["tenant"], now["deleted"]) == ("acme", False)
    v6 = as_json(invoke("show", cid, "--version", "6", "--db", db, "--format", "json"))
    assert [m["redacted"] for m in v6["messages"]] == [False, True, False]
    assert v6["messages"][2]["content"] == "Fine, thanks!"
    # --at: the state as of the time of version 5's event.
    at = to_datetime(rows(db)[4][9]).isoformat()
    v5 = as_json(invoke("show", cid, "--at", at, "--db", db, "--format", "json"))
    assert v5["version"] == 5
    gone = as_json(invoke("show", fork, "--db", db, "--format", "json"))
    assert gone["deleted"] is True
    assert gone["parent"] == {"context_id": cid, "version": 2}
    text = invoke("show", cid, "--version", "5", "--db", db)
    assert "edited v5" in text.stdout
    assert "Fine, thanks!" in text.stdout
    window = as_json(invoke("show", cid, "--window", "15", "--db", db, "--format", "json"))
    assert window["max_tokens"] == 15
    assert window["total_tokens"] <= 15
    assert [e["kind"] for e in window["entries"]] == ["system"]
    assert window["left_out"][0]["reason"] == "over_budget"
    wide = as_json(
        invoke("show", cid, "--window", "500", "--model", "gpt-4o", "--db", db, "--format", "json")
    )
    assert len(wide["entries"]) == 2
    assert (wide["exact"], wide["encoding"]) == (True, "o200k_base")
    claude = invoke("show", cid, "--window", "500", "--model", "claude-sonnet-4", "--db", db)
    assert "estimated" in claude.stdout
    assert "claude-sonnet-4 has no local tokenizer" in claude.stdout
    assert "window hash" in invoke("show", cid, "--window", "500", "--db", db).stdout


def test_show_errors_have_their_exit_codes(db: Path) -> None:
    cid, fork = story(db)
    assert invoke("show", str(uuid.uuid4()), "--db", db).exit_code == 3
    assert invoke("show", "not an id!", "--db", db).exit_code == 3
    missing = invoke("show", cid, "--version", "99", "--db", db)
    assert missing.exit_code == 3
    assert "version 99" in missing.stderr
    assert invoke("show", cid, "--at", "2000-01-01", "--db", db).exit_code == 3
    assert invoke("show", cid, "--version", "2", "--at", "1h", "--db", db).exit_code == 2
    assert invoke("show", cid, "--model", "gpt-4", "--db", db).exit_code == 2
    assert invoke("show", cid, "--at", "yesterday-ish", "--db", db).exit_code == 2
    assert invoke("show", fork, "--window", "100", "--db", db).exit_code == 3  # deleted
    assert invoke("replay", cid, "--follow", "--to-version", "2", "--db", db).exit_code == 2


def test_audit_filters_the_whole_log(db: Path) -> None:
    _cid, fork = story(db)

    def audit(*args: str) -> list[dict[str, Any]]:
        result = invoke("audit", "--db", db, "--format", "json", *args)
        assert result.exit_code == 0, result.stderr
        return as_json(result)  # type: ignore[no-any-return]

    assert len(audit()) == 12
    assert [e["type"] for e in audit("--actor", "bob")] == ["message.redacted"]
    edits = audit("--type", "message.edited", "--type", "message.redacted")
    assert [e["version"] for e in edits] == [5, 6]
    assert len(audit("--type", "message.edited,message.redacted")) == 2
    assert {e["context_id"] for e in audit("--context", fork)} == {fork}
    assert audit("--tenant", "someone-else") == []
    assert len(audit("--tenant", "acme")) == 12
    assert audit("--since", "1h", "--until", "2000-01-01") == []
    times = [to_datetime(row[9]) for row in rows(db)]
    since = (times[9] - timedelta(microseconds=0)).isoformat()
    assert next(e["position"] for e in audit("--since", since)) == 10
    assert [e["position"] for e in audit("--after", "10", "--limit", "1")] == [11]
    served = audit("--served")
    assert len(served) == 1
    assert served[0]["type"] == "window.served"
    seen = served[0]["data"]["message_ids"]  # what the model saw
    assert len(seen) == 1
    table = invoke("audit", "--served", "--db", db)
    assert seen[0] in table.stdout
    assert "gpt-4" in table.stdout
    assert invoke("audit", "--served", "--type", "message.edited", "--db", db).exit_code == 2
    lines = ndjson(invoke("audit", "--db", db, "--format", "ndjson", "--limit", "3"))
    assert [e["position"] for e in lines] == [1, 2, 3]


def test_stats_counts_types_and_the_largest_contexts(db: Path) -> None:
    cid, fork = story(db)
    stats = as_json(invoke("stats", "--db", db, "--format", "json"))
    assert (stats["events"], stats["contexts"], stats["tenants"], stats["deleted"]) == (12, 2, 1, 1)
    assert stats["by_type"]["message.appended"] == 4
    assert sum(stats["by_type"].values()) == 12
    largest = stats["largest"]
    assert [(c["context_id"], c["events"]) for c in largest] == [(cid, 9), (fork, 3)]
    assert (largest[0]["messages"], largest[1]["deleted"]) == (2, True)
    assert stats["database_bytes"] > 0
    assert stats["readmodel_bytes"] > 0
    text = invoke("stats", "--db", db).stdout
    assert "message.appended" in text
    assert "2 (1 deleted)" in text


def test_a_missing_database_is_not_created(tmp_path: Path) -> None:
    db = tmp_path / "nowhere.db"
    for args in (["history", "x"], ["replay", "x"], ["show", "x"], ["audit"], ["stats"]):
        result = invoke(*args, "--db", db)
        assert result.exit_code == 3, args
        assert "no database at" in result.stderr
    assert not db.exists()
    assert invoke("stats", "--db", ":memory:").exit_code == 2


def test_a_newer_schema_is_refused(db: Path) -> None:
    cid, _ = story(db)
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA user_version = 99")
    conn.commit()
    conn.close()
    for args in (["history", cid], ["show", cid], ["audit"], ["stats"]):
        result = invoke(*args, "--db", db)
        assert result.exit_code == 4, args
        assert "newer" in result.stderr


def test_another_apps_database_is_left_alone(tmp_path: Path) -> None:
    other = tmp_path / "other.db"
    conn = sqlite3.connect(other)
    conn.execute("CREATE TABLE notes (body TEXT)")
    conn.commit()
    conn.close()
    (tmp_path / "text.db").write_text("not sqlite at all")
    for db in (other, tmp_path / "text.db"):
        result = invoke("stats", "--db", db)
        assert result.exit_code == 5
        assert "database" in result.stderr
    conn = sqlite3.connect(other)
    assert conn.execute("SELECT name FROM sqlite_schema").fetchall() == [("notes",)]
    conn.close()
