"""The read model's tables: windows read in O(window) equal the pure window of the folded
state; a stale schema or another token encoding is dropped and rebuilt."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest

from eventstore import (
    ContextCreated,
    EventMetadata,
    EventStore,
    MessageAppended,
    MessageRedacted,
    SummaryAdded,
    TextPart,
    ToolCallPart,
    ToolResultPart,
    WindowSettings,
)
from projections import Caller, Contexts, NewMessage, fold, window
from projections.openmarks import boot_id
from projections.readmodel import ReadModel
from projections.tables import SCHEMA_VERSION
from tests.conftest import owner_only
from tests.support.factories import COUNTER, FailingConnection

META = EventMetadata(tenant="t")


def m(mid: str, role: str, content: object, name: str | None = None) -> MessageAppended:
    return MessageAppended(message_id=mid, role=role, content=content, name=name)  # type: ignore[arg-type]


CONVERSATION = [
    ContextCreated(window=WindowSettings(max_tokens=120, model="gpt-4")),
    m("sys", "system", "You are terse."),
    m("u1", "user", "What is the weather in Paris and in Rome today, please?"),
    m("a1", "assistant", [ToolCallPart(id="c1", name="weather", arguments={"city": "Paris"}),
                          ToolCallPart(id="c2", name="weather", arguments={"city": "Rome"})]),
    m("t1", "tool", [ToolResultPart(call_id="c1", content="sunny, 24C")]),
    m("t2", "tool", [ToolResultPart(call_id="c2", content="rain, 18C")]),
    m("a2", "assistant", "Paris is sunny; Rome is rainy.", name="bot"),
    m("sys2", "system", "Mid-conversation instruction."),
    m("u2", "user", [TextPart(text="And tomorrow?")]),
    SummaryAdded(summary_id="s1", text="They asked about weather.", through_message_id="a1"),
    m("u3", "user", "Thanks! " * 20),
    MessageRedacted(message_id="u2"),
    m("a3", "assistant", "You're welcome."),
]  # fmt: skip


async def test_windows_from_the_tables_equal_the_pure_window() -> None:
    store = await EventStore.open_sqlite(":memory:")
    svc = Contexts(store)
    await svc.start()
    try:
        caller = Caller(tenant="t")
        for upto in range(1, len(CONVERSATION) + 1):
            await store.append("w", [CONVERSATION[upto - 1]], metadata=META)
            await svc.projector.catch_up()
            events = [e async for e in store.iter_stream("w")]
            state = fold(events, counter=COUNTER)
            assert await svc.get(caller, "w") == state
            for budget in (None, 1, 20, 40, 60, 90, 120, 400):
                got = await svc.window(caller, "w", max_tokens=budget)
                assert got == window(state, budget), (upto, budget)
            for n in (1, 2, 3, 10):
                got = await svc.window(caller, "w", policy="last_n", last_n=n, model="gpt-4o")
                assert got == window(state, policy="last_n", last_n=n, model="gpt-4o")
    finally:
        await svc.close()
        await store.close()


async def test_a_stale_schema_or_another_encoding_starts_over(tmp_path: Path) -> None:
    path = str(tmp_path / "rm.db")
    model = ReadModel(path)
    assert await model.open("cl100k_base") == 0
    await model.write(
        lambda conn: conn.execute("INSERT INTO checkpoint VALUES (1, 5, 'cl100k_base')")
    )
    await model.close()
    model = ReadModel(path)
    assert await model.open("cl100k_base") == 5  # kept
    await model.close()
    model = ReadModel(path)
    assert await model.open("o200k_base") == 0  # counts in another encoding: dropped
    await model.close()
    db = sqlite3.connect(path)
    db.execute("INSERT OR REPLACE INTO checkpoint VALUES (1, 7, 'cl100k_base')")
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.commit()
    db.close()
    model = ReadModel(path)
    assert await model.open("cl100k_base") == 0  # another schema: dropped
    await model.close()


async def test_read_model_window_stops_at_a_summary_through_a_system_message(
    tmp_path: Path,
) -> None:
    """A summary may cover through a pinned system message: what is before it is covered, in
    the read model's window exactly as in the fold's (found by the property test)."""
    store = await EventStore.open_sqlite(str(tmp_path / "log.db"))
    svc = Contexts(store)
    try:
        await svc.start()
        events = [
            ContextCreated(),
            MessageAppended(message_id="m1", role="user", content="early"),
            MessageAppended(message_id="m2", role="system", content="rules"),
            SummaryAdded(summary_id="s1", text="summary", through_message_id="m2"),
        ]
        await store.append("c", events, metadata=EventMetadata(tenant="t"))
        await svc.projector.catch_up()
        got = await svc.window(Caller(tenant="t"), "c")
        expected = window(fold(await store.read_stream("c"), counter=COUNTER), None)
        assert got == expected
        assert [e.id for e in got.entries] == ["m2", "s1"]
    finally:
        await svc.close()
        await store.close()


async def test_small_reads_run_inline_and_fall_back_to_a_reader_when_busy(tmp_path: Path) -> None:
    from projections.reads import context_sync

    store = await EventStore.open_sqlite(str(tmp_path / "log.db"))
    service = Contexts(store)
    await service.start()
    try:
        cid = (await service.create(Caller(tenant="t"))).context_id
        await service.projector.catch_up()
        readmodel = service.readmodel
        assert isinstance(readmodel, ReadModel)
        threaded = await readmodel.read(context_sync, cid)
        assert threaded is not None
        assert await readmodel.read_small(context_sync, cid) == threaded
        inline = readmodel._inline
        readmodel._inline = FailingConnection("database is locked")  # type: ignore[assignment]
        assert await readmodel.read_small(context_sync, cid) == threaded
        readmodel._inline = FailingConnection("no such table: contexts")  # type: ignore[assignment]
        with pytest.raises(sqlite3.OperationalError, match="no such table"):
            await readmodel.read_small(context_sync, cid)
        readmodel._inline = inline
    finally:
        await service.close()
        await store.close()


async def test_small_reads_of_a_read_model_in_memory_use_its_one_connection() -> None:
    from projections.reads import context_sync

    store = await EventStore.open_sqlite(":memory:")
    service = Contexts(store)
    await service.start()
    try:
        cid = (await service.create(Caller(tenant="t"))).context_id
        await service.projector.catch_up()
        row = await service.readmodel.read_small(context_sync, cid)
        assert row is not None
        assert row.context_id == cid
    finally:
        await service.close()
        await store.close()


@pytest.mark.usefixtures("permissive_umask")
async def test_the_read_model_and_its_marks_are_owner_only(tmp_path: Path) -> None:
    # It holds the plaintext of every message: owner-only (0600) whatever the umask, while
    # open (its WAL, index, open mark and lock file too) and after a rebuild replaced it.
    store = await EventStore.open_sqlite(str(tmp_path / "log.db"))
    service = Contexts(store)
    try:
        await service.start()
        ada = Caller("acme", "ada")
        cid = (await service.create(ada)).context_id
        await service.append(ada, cid, [NewMessage(role="user", content="secret")])
        made = set(os.listdir(tmp_path))
        assert {"log.db.readmodel", "log.db.readmodel-wal", "log.db.readmodel-shm"} <= made
        if boot_id() is not None:  # the mark that tells a machine crash (openmarks.py)
            assert any(name.startswith("log.db.readmodel.open-") for name in made)
        assert owner_only(tmp_path) == {}
        await service.rebuild()
        assert owner_only(tmp_path) == {}
    finally:
        await service.close()
        await store.close()
    assert owner_only(tmp_path) == {}
