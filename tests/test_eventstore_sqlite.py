"""What only the SQLite recorder does: files, restarts, pragmas, its schema guard."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from eventstore import (
    ContextCreated,
    EventStore,
    MessageAppended,
    SchemaTooNew,
    SQLiteRecorder,
    StoreClosed,
    StoreUnavailable,
)
from eventstore.inline import CommitPlacement
from eventstore.sqlite_schema import SELECT_ANY_TENANT
from tests.support.factories import FailingConnection


def message(text: str) -> MessageAppended:
    return MessageAppended(message_id=str(uuid.uuid4()), role="user", content=text)


async def test_idempotency_survives_a_restart(tmp_path: Path) -> None:
    path = str(tmp_path / "log.db")
    ids = [str(uuid.uuid4()), str(uuid.uuid4())]
    events = [ContextCreated(), message("hello")]
    async with await EventStore.open_sqlite(path) as store:
        first = await store.append("s", events, event_ids=ids)
    async with await EventStore.open_sqlite(path) as store:
        retry = await store.append("s", events, 0, event_ids=ids)
        assert retry.duplicate
        assert retry.positions == first.positions
        assert await store.head() == 2
        assert (await store.verify()).ok


async def test_the_file_is_wal_with_the_chosen_synchronous_mode(tmp_path: Path) -> None:
    path = str(tmp_path / "log.db")
    for mode, number in (("FULL", 2), ("NORMAL", 1)):
        async with await EventStore.open_sqlite(path, synchronous=mode) as store:  # type: ignore[arg-type]
            writer = store.recorder._writer  # type: ignore[attr-defined]
            assert (await (await writer.execute("PRAGMA journal_mode")).fetchone())[0] == "wal"
            assert (await (await writer.execute("PRAGMA synchronous")).fetchone())[0] == number
            # Group commits run on their own connection (``inline``): as durable as the writer.
            committer = store.recorder._committer  # type: ignore[attr-defined]
            assert committer.execute("PRAGMA synchronous").fetchone()[0] == number


async def test_rows_cannot_be_updated_or_deleted(tmp_path: Path) -> None:
    path = tmp_path / "log.db"
    async with await EventStore.open_sqlite(str(path)) as store:
        await store.append("s", [ContextCreated()])
    db = sqlite3.connect(path)
    with pytest.raises(sqlite3.IntegrityError, match="immutable"):
        db.execute("UPDATE events SET data = x'00'")
    with pytest.raises(sqlite3.IntegrityError, match="immutable"):
        db.execute("DELETE FROM events")
    db.close()


async def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "log.db"
    db = sqlite3.connect(path)
    db.execute("PRAGMA user_version = 99")
    db.close()
    with pytest.raises(SchemaTooNew) as caught:
        await EventStore.open_sqlite(str(path))
    assert caught.value.found == 99


async def test_not_a_database_is_a_store_error_and_leaves_no_thread(tmp_path: Path) -> None:
    import threading

    path = tmp_path / "garbage.db"
    path.write_bytes(b"this is not sqlite" * 100)
    before = set(threading.enumerate())
    with pytest.raises(StoreUnavailable):
        await EventStore.open_sqlite(str(path))
    # A connection thread left behind would keep the process from exiting. A closed one may
    # still be on its way out when close() returns: give it a moment, not forever.
    for thread in set(threading.enumerate()) - before:
        thread.join(timeout=5)
        assert not thread.is_alive()


async def test_a_closed_store_refuses_work(tmp_path: Path) -> None:
    store = await EventStore.open_sqlite(str(tmp_path / "log.db"))
    await store.append("s", [ContextCreated()])
    await store.close()
    with pytest.raises(StoreClosed):
        await store.append("s", [message("late")])
    with pytest.raises(StoreClosed):
        await store.read_stream("s")


async def test_close_commits_what_was_queued(tmp_path: Path) -> None:
    import asyncio

    path = str(tmp_path / "log.db")
    store = await EventStore.open_sqlite(path)
    pending = [asyncio.ensure_future(store.append(f"s{i}", [ContextCreated()])) for i in range(50)]
    await asyncio.sleep(0)
    await store.close()
    results = await asyncio.gather(*pending)
    assert len(results) == 50
    async with await EventStore.open_sqlite(path) as reopened:
        assert await reopened.head() == 50


async def test_stream_pages_read_inline_and_on_a_reader_when_the_file_is_busy(
    tmp_path: Path,
) -> None:
    store = await EventStore.open_sqlite(str(tmp_path / "log.db"))
    try:
        await store.append("s", [message(str(i)) for i in range(5)])
        recorder = store.recorder
        assert isinstance(recorder, SQLiteRecorder)
        inline = recorder._inline
        assert inline is not None
        expected = [e.version for e in await store.read_stream("s")]
        assert expected == [1, 2, 3, 4, 5]
        recorder._inline = FailingConnection("database is locked")  # type: ignore[assignment]
        assert [e.version for e in await store.read_stream("s")] == expected
        recorder._inline = FailingConnection("disk I/O error")  # type: ignore[assignment]
        with pytest.raises(StoreUnavailable, match="disk I/O error"):
            await store.read_stream("s")
        # Pages too big to read inline go to a reader thread whatever the inline connection.
        assert len(await store.read_stream("s", limit=5000)) == 5
        recorder._inline = inline
    finally:
        await store.close()


async def test_a_commit_waits_for_another_writers_lock_and_then_lands(tmp_path: Path) -> None:
    path = str(tmp_path / "log.db")
    async with await EventStore.open_sqlite(path) as store:
        await store.append("s", [ContextCreated()])
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")  # another process's write transaction
        appending = asyncio.ensure_future(store.append("s", [message("after the lock")], 1))
        # The inline connection does not wait for the lock; the writer's thread does.
        await asyncio.sleep(0.05)
        assert not appending.done()
        other.execute("COMMIT")
        other.close()
        assert (await appending).version == 2
        assert [e.version for e in await store.read_stream("s")] == [1, 2]


async def test_inline_commits_reach_the_database_file_through_checkpoints(tmp_path: Path) -> None:
    path = tmp_path / "log.db"
    async with await EventStore.open_sqlite(str(path)) as store:
        recorder = store.recorder
        assert isinstance(recorder, SQLiteRecorder)
        recorder._placement = CommitPlacement(checkpoint_every=4)
        for i in range(6):
            await store.append(f"s{i}", [ContextCreated()])
        # ``immutable`` reads the database file alone, not the WAL: what was checkpointed.
        main_file = sqlite3.connect(f"file:{path}?immutable=1", uri=True)
        (in_file,) = main_file.execute("SELECT count(*) FROM events").fetchone()
        main_file.close()
        assert 4 <= in_file < 6


async def test_has_tenants_is_one_seek_in_the_index_of_stream_starts(tmp_path: Path) -> None:
    # An open server asks this at every start: it must not scan a long log.
    path = str(tmp_path / "log.db")
    async with await EventStore.open_sqlite(path) as store:
        await store.append("s", [ContextCreated(), message("x")])
        assert not await store.has_tenants()
    conn = sqlite3.connect(path)
    try:
        plan = conn.execute("EXPLAIN QUERY PLAN " + SELECT_ANY_TENANT).fetchall()
    finally:
        conn.close()
    assert [row[-1] for row in plan] == [
        "SEARCH events USING INDEX events_tenant_stream_starts (tenant>?)"
    ]


def test_a_file_sqlite_cannot_open_fails_cleanly_and_leaves_no_thread(tmp_path: Path) -> None:
    """aiosqlite stops the thread of a failed connection without waiting for it: the store
    must fail before that, or the thread outlives the event loop (a traceback at exit)."""
    script = (
        "import asyncio, sys\n"
        "from eventstore import EventStore, StoreUnavailable\n"
        "async def main():\n"
        "    try:\n"
        "        await EventStore.open_url(sys.argv[1])\n"
        "    except StoreUnavailable as e:\n"
        "        print(e)\n"
        "asyncio.run(main())\n"
    )
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "nodir" / "x.db")],
        capture_output=True, text=True, timeout=60, check=False,
        env={**os.environ, "PYTHONPATH": str(root)},
    )  # fmt: skip
    assert done.returncode == 0
    assert done.stdout == "database error: unable to open database file\n"
    assert done.stderr == ""
