"""Shared by the ``ctxlog`` command tests: a database with a story in it, and ways to run
the command and look at the rows behind its back."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import sys
from pathlib import Path
from typing import Any

from click.testing import CliRunner, Result

from api.cli import cli
from eventstore import EventStore, WindowSettings
from projections import Caller, Contexts, NewMessage

ADA = Caller(tenant="acme", actor="ada")
BOB = Caller(tenant="acme", actor="bob")


async def tell_story(db: str) -> tuple[str, str]:
    """One conversation with every kind of event, and a deleted fork of it (12 events);
    the read model is left beside the log. Returns (context id, fork id)."""
    store = await EventStore.open_url(db)
    service = Contexts(store)
    try:
        await service.start()
        window = WindowSettings(max_tokens=100, model="gpt-4")
        cid = (await service.create(ADA, metadata={"user": "ada"}, window=window)).context_id
        await service.append(ADA, cid, [
            NewMessage(role="system", content="You are terse."),
            NewMessage(role="user", content="Hello there, how are you?"),
        ])  # fmt: skip
        await service.append(ADA, cid, [NewMessage(role="assistant", content="Fine.")])
        state = await service.get(ADA, cid)
        _, user, assistant = (m.message_id for m in state.messages)
        await service.edit(ADA, cid, assistant, "Fine, thanks!")
        await service.redact(BOB, cid, user, reason="pii")
        await service.add_summary(ADA, cid, "greeting exchanged", assistant)
        await service.window(ADA, cid, max_tokens=50, record=True)
        await service.rollback(ADA, cid, 3)
        fork = (await service.fork(ADA, cid, at_version=2)).context_id
        await service.append(ADA, fork, [NewMessage(role="user", content="branch!")])
        await service.delete(ADA, fork, reason="done")
    finally:
        await service.close()
        await store.close()
    return cid, fork


def story(db: Path) -> tuple[str, str]:
    """``tell_story`` from a test that is not async."""
    return asyncio.run(tell_story(str(db)))


def invoke(*args: str | Path) -> Result:
    """Run ``ctxlog`` in this process (click's runner: stdout and stderr kept apart)."""
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def as_json(result: Result) -> Any:
    """The command's stdout as JSON."""
    return json.loads(result.stdout)


def ndjson(result: Result) -> list[Any]:
    """The command's stdout, one JSON value per line."""
    return [json.loads(line) for line in result.stdout.splitlines()]


def rows(db: Path) -> list[tuple[Any, ...]]:
    """Every column of every row of the log, read behind the store's back."""
    conn = sqlite3.connect(db)
    try:
        return conn.execute("SELECT * FROM events ORDER BY position").fetchall()
    finally:
        conn.close()


def tamper(db: Path, position: int, data: bytes) -> None:
    """Overwrite one event's data, as an attacker with a shell could."""
    conn = sqlite3.connect(db)
    try:
        conn.execute("DROP TRIGGER events_no_update")
        conn.execute("UPDATE events SET data = ? WHERE position = ?", (data, position))
        conn.commit()
    finally:
        conn.close()


def command(*args: str | Path) -> list[str]:
    """``python -m api ARGS``: the command as a separate process."""
    return [sys.executable, "-m", "api", *(str(a) for a in args)]


def child_env() -> dict[str, str]:
    """The environment for a child ``ctxlog``: this one, with the project importable."""
    root = str(Path(__file__).resolve().parents[2])
    return {**os.environ, "PYTHONPATH": root, "NO_COLOR": "1"}
