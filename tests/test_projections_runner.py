"""The projector: exactly-once across crashes and restarts, batching, rebuild, failure."""

from __future__ import annotations

import asyncio
import os
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from eventstore import (
    ContextCreated,
    EventMetadata,
    EventStore,
    MessageAppended,
    SubjectErased,
)
from projections import (
    Caller,
    Contexts,
    ProjectorBehind,
    ReadModelInUse,
    apply,
    counting,
    fold,
    runner,
)
from projections.readmodel import REBUILDING, _lock_building
from tests.support.factories import COUNTER
from tests.support.services import open_log

META = EventMetadata(tenant="t")


def appended(i: int) -> MessageAppended:
    return MessageAppended(message_id=f"m{i}", role="user", content=f"message {i}")


async def fill(store: EventStore, streams: int, each: int, first: int = 0) -> None:
    """``streams`` contexts of ``each`` messages: ``s{first}``, ``s{first + 1}``…"""
    for s in range(first, first + streams):
        await store.append(f"s{s}", [ContextCreated()], metadata=META)
        await store.append(f"s{s}", [appended(i) for i in range(each)], metadata=META)


def rows(path: str) -> tuple[int, int, int]:
    db = sqlite3.connect(path)
    try:
        row = db.execute("SELECT position FROM checkpoint").fetchone()
        checkpoint = row[0] if row else 0
        (messages,) = db.execute("SELECT count(*) FROM messages").fetchone()
        (tokens,) = db.execute("SELECT coalesce(sum(total_tokens), 0) FROM contexts").fetchone()
    finally:
        db.close()
    return checkpoint, messages, tokens


async def assert_matches_fold(svc: Contexts, store: EventStore, streams: int) -> None:
    for s in range(streams):
        events = [e async for e in store.iter_stream(f"s{s}")]
        assert await svc.get(Caller(tenant="t"), f"s{s}") == fold(events, counter=COUNTER)


async def assert_rebuilds_alike(
    svc: Contexts, store: EventStore, log: str, streams: int, **rebuild: Any
) -> int:
    """Rebuild the read model of ``log``: the same rows as before, each context the fold's;
    returns the events applied."""
    before = rows(log + ".readmodel")
    applied = await svc.projector.rebuild(**rebuild)
    assert rows(log + ".readmodel") == before
    await assert_matches_fold(svc, store, streams)
    return applied


def crash_applying_after(events: int, monkeypatch: pytest.MonkeyPatch) -> object:
    """Make the projector fail ("killed") on the event after ``events`` applied ones;
    returns the real function, to put back."""
    real = apply._apply_event
    seen = 0

    def crashing(*args: object) -> object:
        nonlocal seen
        seen += 1
        if seen > events:
            raise RuntimeError("killed")
        return real(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(apply, "_apply_event", crashing)
    return real


async def test_a_crash_mid_batch_applies_nothing_and_a_restart_applies_it_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = str(tmp_path / "log.db")
    store = await EventStore.open_sqlite(log)
    await fill(store, 3, 40)
    real = crash_applying_after(50, monkeypatch)
    svc = Contexts(store, batch_size=1000)
    with pytest.raises(ProjectorBehind, match="killed") as failed:
        await svc.start()  # the one batch of 123 events fails at the 51st
    assert failed.value.status == "failed"  # not a transient error; retried all the same
    await svc.close()
    assert rows(log + ".readmodel") == (0, 0, 0)  # the failed batch left nothing behind

    monkeypatch.setattr(apply, "_apply_event", real)
    svc = Contexts(store, batch_size=7)  # restart: small batches this time
    await svc.start()
    checkpoint, messages, _ = rows(log + ".readmodel")
    assert (checkpoint, messages) == (await store.head(), 120)
    await assert_matches_fold(svc, store, 3)
    await svc.close()

    await fill(store, 4, 5)  # s0..s2 again: duplicate ids, ignored like the fold does
    svc = Contexts(store)  # a restart resumes from the checkpoint, nothing twice
    await svc.start()
    assert rows(log + ".readmodel")[1] == 125
    await assert_matches_fold(svc, store, 4)
    await svc.close()
    await store.close()


@pytest.fixture
async def running(tmp_path: Path) -> AsyncIterator[tuple[EventStore, Contexts]]:
    """A store on file and a started service on it, closed after the test."""
    store = await EventStore.open_sqlite(str(tmp_path / "log.db"))
    svc = Contexts(store)
    await svc.start()
    yield store, svc
    await svc.close()
    await store.close()


async def test_live_events_are_applied_and_waited_for(
    running: tuple[EventStore, Contexts],
) -> None:
    store, svc = running
    await fill(store, 2, 10)
    await svc.projector.wait_for(await store.head())
    await assert_matches_fold(svc, store, 2)


async def test_a_live_batch_starts_from_a_cached_row_only_at_the_version_before_it(
    running: tuple[EventStore, Contexts],
) -> None:
    store, svc = running
    await fill(store, 1, 3)
    await svc.projector.wait_for(await store.head())
    cached = svc.projector.headers.get("s0")
    assert cached is not None
    assert cached.version == 4
    seen = msgspec.structs.asdict(cached)

    # The cached row, at the version before the next event: used as a copy, never changed.
    await store.append("s0", [appended(3)], metadata=META)
    await svc.projector.wait_for(await store.head())
    assert msgspec.structs.asdict(cached) == seen
    await assert_matches_fold(svc, store, 1)

    # A row of another version in the cache (here an older one) is not the row before the
    # next event: the committed row is read instead, or this message would be numbered 3.
    svc.projector.headers.put("s0", cached)
    await store.append("s0", [appended(4)], metadata=META)
    await svc.projector.wait_for(await store.head())
    await assert_matches_fold(svc, store, 1)
    now = svc.projector.headers.get("s0")
    assert now is not None
    assert (now.version, now.message_count) == (6, 5)


async def test_rebuild_replays_everything_with_progress(tmp_path: Path) -> None:
    log = str(tmp_path / "log.db")
    store = await EventStore.open_sqlite(log)
    await fill(store, 5, 30)
    svc = Contexts(store)
    await svc.start()
    try:
        reports: list[tuple[int, int]] = []
        progress = lambda done, total: reports.append((done, total))  # noqa: E731
        applied = await assert_rebuilds_alike(svc, store, log, 5, progress=progress, batch_size=40)
        assert applied == await store.head() == 155
        assert len(reports) == 4
        assert reports[-1] == (155, 155)
        assert svc.projector.running  # restarted after the rebuild
    finally:
        await svc.close()
        await store.close()


async def test_a_rebuild_inserts_appends_together_and_still_ignores_duplicate_ids(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rebuild holds appended rows back and inserts many in one statement; a duplicate id
    (in one append, or of a message an earlier batch inserted) sends its batch back to a
    row at a time, and the read model is the fold's either way."""
    log = str(tmp_path / "log.db")
    store = await EventStore.open_sqlite(log)
    await fill(store, 3, 100)
    await store.append("s0", [appended(100), appended(100)], metadata=META)
    await store.append("s1", [appended(5), appended(101)], metadata=META)
    svc = Contexts(store)
    await svc.start()
    held: list[int] = []  # rows of each flush that inserted them all
    duplicates = 0
    real = apply.HeldAppends.flush

    def flush(self: apply.HeldAppends) -> None:
        nonlocal duplicates
        rows = len(self._rows)
        try:
            real(self)
        except apply.DuplicateAppend:
            duplicates += 1
            raise
        held.append(rows)

    monkeypatch.setattr(apply.HeldAppends, "flush", flush)
    try:
        assert rows(log + ".readmodel")[1] == 3 * 100 + 2
        await assert_rebuilds_alike(svc, store, log, 3, batch_size=150)
        assert max(held) >= 100  # a context's appends, at least, in one flush (two statements)
        assert duplicates == 1  # the last batch, holding both duplicates, went a row at a time
    finally:
        await svc.close()
        await store.close()


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch) -> list[counting.Counting]:
    """Every ``Counting`` started from now on, each made ready (its worker process has
    loaded the encoding) before its first page, which a real one does not wait for."""
    start = counting.Counting.start
    started: list[counting.Counting] = []

    async def start_ready(self: counting.Counting) -> None:
        await start(self)
        assert await self.ready()
        started.append(self)

    monkeypatch.setattr(counting.Counting, "start", start_ready)
    return started


async def test_a_rebuild_counts_tokens_in_a_second_process_with_the_same_result(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, started: list[counting.Counting]
) -> None:
    """Past ``COUNT_AWAY`` events a replay's pages are counted by a worker process."""
    monkeypatch.setattr(runner, "COUNT_AWAY", 0)
    log = str(tmp_path / "log.db")
    store = await EventStore.open_sqlite(log)
    await fill(store, 3, 30)
    svc = Contexts(store)
    await svc.start()
    started.clear()  # the start caught up with a worker too (more than COUNT_AWAY behind)
    try:
        await assert_rebuilds_alike(svc, store, log, 3, batch_size=20)
        assert [c.pages_away for c in started] == [5]  # all 5 pages (each has appends)
    finally:
        await svc.close()
        await store.close()


async def test_a_projector_far_behind_catches_up_counting_in_a_second_process(
    tmp_path: Path,
    readmodel: str,
    monkeypatch: pytest.MonkeyPatch,
    started: list[counting.Counting],
) -> None:
    """A projector more than ``COUNT_AWAY`` events behind (its node was down) reads and
    counts as a replay does, a page at a time, tokens counted by the worker process, and
    applies each page as the live loop does: an erasure recorded meanwhile is refolded, and
    the read model ends as a fresh fold, then follows the log."""
    monkeypatch.setattr(runner, "COUNT_AWAY", 10)
    monkeypatch.setattr(runner, "REPLAY_BATCH", 20)
    log = str(tmp_path / "log.db")
    store = await open_log(log, readmodel)
    await store.append("s0", [ContextCreated()], metadata=META)
    secrets = [
        MessageAppended(message_id=f"a{i}", role="user", content=f"secret{i} of ada")
        for i in range(5)
    ]
    await store.append("s0", secrets, metadata=META, subject="ada")
    await fill(store, 2, 10, first=1)
    svc = Contexts(store)
    await svc.start()
    await svc.close()
    started.clear()
    # Down a while: ada is erased, and the log grows by more than COUNT_AWAY events.
    destroyed = await store.destroy_subject_key("t", "ada")
    assert destroyed
    await store.append("s0", [SubjectErased(subject="ada", key_ids=destroyed)], metadata=META)
    await fill(store, 3, 30, first=3)
    head = await store.head()
    svc = Contexts(store)
    await svc.start()
    try:
        assert svc.projector.checkpoint == head
        assert started
        assert started[0].pages_away > 0  # a page's tokens counted by the worker
        await assert_matches_fold(svc, store, 6)
        assert (await svc.search(Caller(tenant="t"), "secret3")).hits == []
        await store.append("s5", [appended(99)], metadata=META)
        await svc.projector.wait_for(await store.head())
        await assert_matches_fold(svc, store, 6)
        if readmodel == "sqlite":
            await assert_rebuilds_alike(svc, store, log, 6)
    finally:
        await svc.close()
        await store.close()


async def test_a_first_build_replays_the_log_then_follows_it(
    tmp_path: Path, readmodel: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A projector starting with an empty read model on a log of many events builds it as
    a rebuild does (appends together, the search index once at the end), then follows the
    log as it grows: in place in memory or shared on PostgreSQL, and in a new file swapped
    in for a SQLite file (which another process may open meanwhile)."""
    monkeypatch.setattr(runner, "FIRST_BUILD", 10)
    log = str(tmp_path / "log.db")
    store = await open_log(log, readmodel)
    await fill(store, 3, 30)
    replayed: list[tuple[int, int]] = []
    real = runner.Projector._replay

    async def replay(self: runner.Projector, *args: Any) -> tuple[int, int]:
        replayed.append(await real(self, *args))
        return replayed[-1]

    monkeypatch.setattr(runner.Projector, "_replay", replay)
    paths = [None, ":memory:"] if readmodel == "sqlite" else [None]
    for n, path in enumerate(paths):
        replayed.clear()
        head = await store.head()
        svc = Contexts(store, readmodel_path=path)
        await svc.start()
        try:
            assert replayed == [(head, head)]
            assert svc.projector.applied == head
            await assert_matches_fold(svc, store, 3)
            hits = (await svc.search(Caller(tenant="t"), "message 17")).hits
            assert sorted(h.context_id for h in hits) == ["s0", "s1", "s2"]
            await store.append("s1", [appended(90 + n)], metadata=META)
            await svc.projector.wait_for(await store.head())
            await assert_matches_fold(svc, store, 3)
            hits = (await svc.search(Caller(tenant="t"), str(90 + n))).hits
            assert [h.context_id for h in hits] == ["s1"]
            assert len(replayed) == 1  # followed, not replayed again
        finally:
            await svc.close()
        if readmodel == "sqlite" and path is None:  # the file that was swapped in
            assert rows(log + ".readmodel")[:2] == (head + 1, 90 + 1)
            assert not Path(log + ".readmodel" + REBUILDING).exists()  # noqa: ASYNC240
    await store.close()


async def test_a_first_build_beside_a_file_another_process_has_open_goes_event_by_event(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The new file cannot replace one another process holds open (its write-ahead log
    would be replayed onto it): the replay is thrown away and the file caught up event by
    event, as before first builds were replays."""
    monkeypatch.setattr(runner, "FIRST_BUILD", 10)
    log = str(tmp_path / "log.db")
    store = await EventStore.open_sqlite(log)
    await fill(store, 3, 30)
    other = sqlite3.connect(log + ".readmodel")  # another process's connection, in WAL mode
    other.execute("PRAGMA journal_mode = WAL")
    other.execute("CREATE TABLE IF NOT EXISTS elsewhere (x)")
    svc = Contexts(store)
    try:
        with caplog.at_level("INFO", logger="ctxlog.projector"):
            await svc.start()
        assert "in place, following the log" in caplog.text
        assert svc.projector.applied == await store.head()
        await assert_matches_fold(svc, store, 3)
        assert not Path(log + ".readmodel" + REBUILDING).exists()  # noqa: ASYNC240
    finally:
        await svc.close()
        other.close()
        await store.close()


async def test_a_first_build_beside_that_fails_goes_event_by_event(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Whatever breaks the replay of a first build beside the file, the new file is thrown
    away and the old one caught up event by event: the start does not fail on it."""
    monkeypatch.setattr(runner, "FIRST_BUILD", 10)
    log = str(tmp_path / "log.db")
    store = await EventStore.open_sqlite(log)
    await fill(store, 3, 30)

    async def broken(self: runner.Projector, *args: Any) -> tuple[int, int]:
        raise RuntimeError("the replay broke")

    monkeypatch.setattr(runner.Projector, "_replay", broken)
    svc = Contexts(store)
    try:
        with caplog.at_level("WARNING", logger="ctxlog.projector"):
            await svc.start()
        assert "the replay broke" in caplog.text
        assert svc.projector.applied == await store.head()  # every event, one by one
        await assert_matches_fold(svc, store, 3)
        assert not Path(log + ".readmodel" + REBUILDING).exists()  # noqa: ASYNC240
    finally:
        await svc.close()
        await store.close()


async def test_a_second_builder_beside_one_file_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While one process builds ``<read model>.rebuilding``, another's rebuild is refused
    and its first build goes event by event: it neither deletes the file being built nor
    swaps it in half done."""
    monkeypatch.setattr(runner, "FIRST_BUILD", 10)
    log = str(tmp_path / "log.db")
    store = await EventStore.open_sqlite(log)
    await fill(store, 3, 30)
    building = _lock_building(log + ".readmodel")  # as the other builder holds it
    other = Path(log + ".readmodel" + REBUILDING)
    other.write_bytes(b"the other builder's file")  # noqa: ASYNC240
    svc = Contexts(store)
    try:
        await svc.start()
        await assert_matches_fold(svc, store, 3)
        with pytest.raises(ReadModelInUse, match="being rebuilt by another process"):
            await svc.projector.rebuild()
        assert svc.projector.running  # the read model it had goes on being followed
        await assert_matches_fold(svc, store, 3)
        assert other.read_bytes() == b"the other builder's file"  # noqa: ASYNC240
    finally:
        os.close(building)
        await svc.close()
        await store.close()
    svc = Contexts(store := await EventStore.open_sqlite(log))
    try:
        await svc.start()
        await svc.projector.rebuild()  # the lock is free again
        await assert_matches_fold(svc, store, 3)
    finally:
        await svc.close()
        await store.close()


async def test_a_read_model_of_another_log_is_rebuilt(tmp_path: Path) -> None:
    store = await EventStore.open_sqlite(str(tmp_path / "a.db"))
    await fill(store, 2, 3)
    svc = Contexts(store, readmodel_path=str(tmp_path / "rm.db"))
    await svc.start()
    await svc.close()
    await store.close()
    store = await EventStore.open_sqlite(str(tmp_path / "b.db"))  # empty: the model is ahead
    await fill(store, 1, 1)
    svc = Contexts(store, readmodel_path=str(tmp_path / "rm.db"))
    await svc.start()
    try:
        assert rows(str(tmp_path / "rm.db"))[:2] == (2, 1)
    finally:
        await svc.close()
        await store.close()


async def test_a_rebuild_cut_off_before_its_search_index_starts_over(tmp_path: Path) -> None:
    """A rebuild indexes the search table once at its end; a read model left with the index
    still deferred (a crash in between) is rebuilt from scratch on open, never served with
    an incomplete index."""
    from projections import search
    from projections.readmodel import ReadModel

    path = str(tmp_path / "rm.db")
    model = ReadModel(path)
    await model.open(COUNTER.encoding)
    await model.write(search.defer_sync)
    await model.write(_set_checkpoint, 42)
    await model.close()
    reopened = ReadModel(path)
    try:
        assert await reopened.open(COUNTER.encoding) == 0  # started over
        assert not await reopened.read(search.deferred_sync)
    finally:
        await reopened.close()


def _set_checkpoint(conn: object, position: int) -> None:
    from projections.tables import UPSERT_CHECKPOINT

    conn.execute(UPSERT_CHECKPOINT, (position, COUNTER.encoding))  # type: ignore[attr-defined]


async def test_the_projector_stops_while_an_append_is_arriving(tmp_path: Path) -> None:
    """A stop that lands as the live feed wakes its follower must still stop it (on Python
    3.11, asyncio.wait_for swallowed that cancellation and the stop waited forever)."""
    store = await EventStore.open_sqlite(str(tmp_path / "log.db"))
    svc = Contexts(store)
    try:
        await svc.start()
        for i in range(20):
            await store.append(f"s{i}", [ContextCreated()], metadata=EventMetadata(tenant="t"))
            stopping = asyncio.create_task(svc.projector.stop())
            done, _ = await asyncio.wait({stopping}, timeout=5)
            assert done, "the projector did not stop"
            await svc.projector.start(svc.projector.checkpoint)
    finally:
        await svc.close()
        await store.close()


async def test_a_wait_for_a_position_never_applied_times_out(
    running: tuple[EventStore, Contexts],
) -> None:
    store, svc = running
    await fill(store, 1, 3)
    head = await store.head()
    await svc.projector.wait_for(head)
    svc.projector.wait_timeout = 0.2
    # Running and caught up, but nothing will ever reach head + 1: no hang.
    with pytest.raises(TimeoutError):
        await svc.projector.wait_for(head + 1)
    svc.projector.wait_timeout = 30
    waits = [asyncio.ensure_future(svc.projector.wait_for(head + 1)) for _ in range(3)]
    await store.append("s0", [appended(99)], metadata=META)  # every waiter is released
    await asyncio.wait_for(asyncio.gather(*waits), timeout=5)


async def assert_followed(svc: Contexts, store: EventStore, streams: int) -> None:
    """The projector runs after a rebuild (done or failed) and applies a new append."""
    assert svc.projector.running
    await store.append("s0", [appended(99)], metadata=META)
    await svc.projector.wait_for(await store.head())
    await assert_matches_fold(svc, store, streams)


def rebuilding_file(svc: Contexts) -> bool:
    """Whether a rebuild's new read model lies beside the read model's file."""
    return os.path.exists(svc.readmodel.path + REBUILDING)


async def test_a_rebuild_on_file_serves_the_old_read_model_until_it_swaps_the_new_one_in(
    running: tuple[EventStore, Contexts], monkeypatch: pytest.MonkeyPatch
) -> None:
    store, svc = running
    await fill(store, 3, 20)
    await svc.projector.wait_for(await store.head())
    path = svc.readmodel.path
    inode = os.stat(path).st_ino
    half_built, go_on = asyncio.Event(), asyncio.Event()
    real = svc.projector._apply_to

    async def pausing(*args: Any, **kwargs: Any) -> Any:
        rows = await real(*args, **kwargs)
        half_built.set()
        await go_on.wait()
        return rows

    monkeypatch.setattr(svc.projector, "_apply_to", pausing)
    rebuilding = asyncio.create_task(svc.projector.rebuild(batch_size=10))
    await half_built.wait()
    assert rebuilding_file(svc)
    await assert_matches_fold(svc, store, 3)  # the old model, whole, while the new one fills
    go_on.set()
    assert await rebuilding == await store.head()
    assert not rebuilding_file(svc)
    assert os.stat(path).st_ino != inode
    await assert_followed(svc, store, 3)


async def test_a_failed_rebuild_leaves_the_old_read_model_serving_and_followed(
    running: tuple[EventStore, Contexts], monkeypatch: pytest.MonkeyPatch
) -> None:
    store, svc = running
    await fill(store, 2, 30)
    await svc.projector.wait_for(await store.head())
    real = crash_applying_after(40, monkeypatch)
    with pytest.raises(RuntimeError, match="killed"):
        await svc.projector.rebuild(batch_size=25)
    monkeypatch.setattr(apply, "_apply_event", real)
    assert not rebuilding_file(svc)
    await assert_followed(svc, store, 2)


async def test_a_rebuild_is_refused_while_another_process_has_the_read_model_open(
    running: tuple[EventStore, Contexts],
) -> None:
    """Its connection would go on with the unlinked file, and its write-ahead log would be
    replayed onto the new one: the old read model stays."""
    store, svc = running
    await fill(store, 2, 5)
    await svc.projector.wait_for(await store.head())
    other = sqlite3.connect(svc.readmodel.path)  # what another process's connection leaves
    try:
        other.execute("SELECT count(*) FROM messages").fetchone()
        with pytest.raises(ReadModelInUse, match="open in another process"):
            await svc.rebuild()
    finally:
        other.close()
    assert not rebuilding_file(svc)
    await assert_followed(svc, store, 2)
    assert await svc.rebuild() == await store.head()  # once it is closed


async def test_a_rebuild_replaces_what_a_crashed_one_left_beside_the_read_model(
    running: tuple[EventStore, Contexts],
) -> None:
    store, svc = running
    await fill(store, 2, 5)
    await asyncio.to_thread(Path(svc.readmodel.path + REBUILDING).write_bytes, b"half a db")
    assert await svc.rebuild() == await store.head()
    await assert_matches_fold(svc, store, 2)


async def test_a_swap_that_fails_leaves_the_old_read_model_open_and_followed(
    running: tuple[EventStore, Contexts], monkeypatch: pytest.MonkeyPatch
) -> None:
    from projections import readmodel

    store, svc = running
    await fill(store, 2, 5)

    def rename_fails(fresh: str, path: str) -> bool:
        raise OSError("read-only file system")

    monkeypatch.setattr(readmodel, "_swap_files", rename_fails)
    with pytest.raises(OSError, match="read-only"):
        await svc.rebuild()
    assert not rebuilding_file(svc)
    await assert_followed(svc, store, 2)
