"""``ctxlog verify``, ``rebuild`` and ``stats`` on a read model overwritten with garbage:
verify names it (exit 1), rebuild sets it aside (renamed, not deleted), says so and
rebuilds it, stats counts the log alone (each once ended with exit 70)."""

from __future__ import annotations

import os
from pathlib import Path

from tests.support.cli_helpers import as_json, invoke, story

GARBAGE = os.urandom(64) * 1024


def _damage(db: Path) -> Path:
    path = db.with_name(db.name + ".readmodel")
    for extra in ("-wal", "-shm"):
        db.with_name(path.name + extra).unlink(missing_ok=True)
    path.write_bytes(GARBAGE)
    return path


def test_verify_names_a_damaged_read_model(tmp_path: Path) -> None:
    db = tmp_path / "ctx.db"
    story(db)
    path = _damage(db)
    result = invoke("verify", "--db", db)
    assert result.exit_code == 1, result.output
    assert "damaged" in result.stderr
    assert "file is not a database" in result.stderr
    result = invoke("verify", "--db", db, "--format", "json")
    assert result.exit_code == 1
    report = as_json(result)
    assert report["chain"]["ok"] is True
    assert report["readmodel"]["status"] == "damaged"
    assert path.read_bytes() == GARBAGE  # verify changes nothing


def test_rebuild_sets_a_damaged_read_model_aside_and_rebuilds_it(tmp_path: Path) -> None:
    db = tmp_path / "ctx.db"
    story(db)
    _damage(db)
    result = invoke("rebuild", "--db", db)
    assert result.exit_code == 0, result.output
    (aside,) = tmp_path.glob("ctx.db.readmodel.damaged-*")
    assert aside.read_bytes() == GARBAGE  # renamed, not deleted
    assert f"set aside as {aside}" in result.stderr.replace("\n", "")
    assert "rebuilt the read model from 12 events" in result.stdout
    assert invoke("verify", "--db", db).exit_code == 0


def test_stats_counts_the_log_beside_a_damaged_read_model(tmp_path: Path) -> None:
    db = tmp_path / "ctx.db"
    story(db)
    _damage(db)
    result = invoke("stats", "--db", db, "--format", "json")
    assert result.exit_code == 0, result.output
    assert as_json(result)["events"] == 12
