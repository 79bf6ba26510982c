"""Preconditions and served windows (issue 16 item 5): a write expecting version N goes on
when only ``window.served`` records were written since N, so the chat loop (append, record the
window, append with the window's version) never conflicts with its own record; any other
change since N still conflicts, in this process and across processes on one log."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
import pytest

from eventstore import (
    ContextCreated,
    EventStore,
    MessageAppended,
    RecordedEvent,
    SubjectErased,
    VersionConflict,
    WindowServed,
)
from projections import Caller, Contexts, NewMessage, TokenCounter, window
from projections.audit import verify_readmodel
from projections.preconditions import admits
from tests.support.factories import Stream
from tests.support.services import running_contexts, services_on_one_log

ME = Caller(tenant="acme", actor="alice")


def user(text: str) -> NewMessage:
    return NewMessage(role="user", content=text)


def served() -> WindowServed:
    return WindowServed(policy="tokens", max_tokens=None, encoding="cl100k_base")


@pytest.fixture
async def svc(readmodel: str) -> AsyncIterator[Contexts]:
    async with running_contexts(":memory:", readmodel, snapshot_every=4) as service:
        yield service


def test_the_fold_moves_content_version_on_every_event_but_a_served_window() -> None:
    s = Stream()
    s.add(ContextCreated())
    assert (s.state().version, s.state().content_version) == (1, 1)
    s.add(served())
    s.add(served())
    assert (s.state().version, s.state().content_version) == (3, 1)
    s.add(MessageAppended(message_id="m1", role="user", content="hi"))
    s.add(served())
    assert (s.state().version, s.state().content_version) == (5, 4)
    s.add(SubjectErased(subject="someone"))  # what windows show changed: a content change
    assert (s.state().version, s.state().content_version) == (6, 6)
    # The rule: any version from the last content change to the current one.
    assert [n for n in range(8) if admits(n, content_version=4, version=5)] == [4, 5]


async def test_the_chat_loop_appends_after_its_own_recorded_window(svc: Contexts) -> None:
    cid = (await svc.create(ME)).context_id
    for turn in range(3):
        await svc.append(ME, cid, [user(f"question {turn}")])
        shown = await svc.window(ME, cid, record=True)
        reply = NewMessage(role="assistant", content=f"answer {turn}")
        written = await svc.append(ME, cid, [reply], expected_version=shown.version)
        assert written.version == shown.version + 2  # the record, then the reply
        # The window's version is the state the model saw, exactly (time travel).
        then = await svc.get(ME, cid, version=shown.version)
        assert window(then) == shown
    history = await svc.history(ME, cid)
    assert [e.type for e in history].count("window.served") == 3
    state = await svc.get(ME, cid)
    assert [m.content for m in state.messages][-2:] == ["question 2", "answer 2"]
    assert state.content_version == state.version


async def test_a_record_keeps_the_window_cached_at_the_new_version(svc: Contexts) -> None:
    cid = (await svc.create(ME)).context_id
    await svc.append(ME, cid, [user("question")])
    recorded = await svc.window(ME, cid, record=True)
    cache = svc.window_cache
    hits, misses = cache.hits, cache.misses
    after = await svc.window(ME, cid)  # the record moved the version, not the content
    assert (cache.hits, cache.misses) == (hits + 1, misses)
    assert after.version == recorded.version + 1 == (await svc.size(ME, cid))[0]
    assert msgspec.structs.replace(after, version=recorded.version) == recorded
    assert await svc.window(ME, cid) is after  # kept at the new version, not copied again
    await svc.append(ME, cid, [user("another")], expected_version=after.version)
    moved = await svc.window(ME, cid)  # content changed: computed again
    assert cache.misses == misses + 1
    assert [e.content for e in moved.entries][-1] == "another"


async def test_a_record_says_whether_its_counts_were_an_estimate(svc: Contexts) -> None:
    cid = (await svc.create(ME)).context_id
    await svc.append(ME, cid, [user("question")])
    for model, exact in (("claude-sonnet-4", False), (None, True)):
        shown = await svc.window(ME, cid, model=model, record=True)
        assert shown.exact is exact
        record = (await svc.history(ME, cid, backward=True, limit=1))[0].event
        assert isinstance(record, WindowServed)
        assert (record.model, record.exact, record.total_tokens) == (
            model, exact, shown.total_tokens,
        )  # fmt: skip


async def test_a_content_change_since_the_window_still_conflicts(svc: Contexts) -> None:
    cid = (await svc.create(ME)).context_id
    await svc.append(ME, cid, [user("question")])
    shown = await svc.window(ME, cid, record=True)
    await svc.update_metadata(ME, cid, {"topic": "changed"})  # someone else's write
    with pytest.raises(VersionConflict) as conflict:
        await svc.append(ME, cid, [user("answer")], expected_version=shown.version)
    assert (conflict.value.expected, conflict.value.actual) == (shown.version, shown.version + 2)
    with pytest.raises(VersionConflict):  # a version nobody has seen yet
        await svc.append(ME, cid, [user("answer")], expected_version=shown.version + 3)
    with pytest.raises(VersionConflict):  # before the content last changed
        await svc.update_metadata(ME, cid, {"a": 1}, expected_version=shown.version - 1)
    # Any version from the last content change on is admitted, the newest too.
    await svc.window(ME, cid, record=True)
    await svc.window(ME, cid, record=True)
    current = (await svc.get(ME, cid)).version
    await svc.update_metadata(ME, cid, {"a": 1}, expected_version=current - 1)
    assert (await svc.get(ME, cid)).version == current + 1


def _content_versions(events: list[RecordedEvent]) -> list[int]:
    """The content version at each version of a stream, by the definition."""
    out, last = [], 0
    for rec in events:
        last = last if rec.type == "window.served" else rec.version
        out.append(last)
    return out


async def test_read_model_time_travel_and_rebuild_agree_on_content_version(
    tmp_path: Path,
) -> None:
    db = str(tmp_path / "log.db")
    store = await EventStore.open_sqlite(db)
    service = Contexts(store, snapshot_every=4)
    try:
        await service.start()
        cid = (await service.create(ME)).context_id
        for i in range(5):
            await service.append(ME, cid, [user(f"m{i}")])
            await service.window(ME, cid, record=True)
        await service.rollback(ME, cid, 4)
        await service.window(ME, cid, record=True)
        fork = (await service.fork(ME, cid, at_version=7)).context_id
        await service.window(ME, fork, record=True)
        expected = {}
        for context_id in (cid, fork):
            expected[context_id] = _content_versions(await service.history(ME, context_id))
            now = await service.get(ME, context_id)
            assert now.content_version == expected[context_id][-1]
            for version, content_version in enumerate(expected[context_id], start=1):
                past = await service.get(ME, context_id, version=version)  # snapshots + fold
                assert past.content_version == content_version
        assert (expected[cid][-1], len(expected[cid]), expected[fork]) == (12, 13, [1, 1])
        await service.rebuild()
        for context_id in (cid, fork):
            assert (await service.get(ME, context_id)).content_version == expected[context_id][-1]
        report = await verify_readmodel(store, db + ".readmodel", TokenCounter())
        assert report.ok, report
    finally:
        await service.close()
        await store.close()


async def test_loops_and_recorders_at_once_never_conflict(svc: Contexts) -> None:
    """A chat loop while other clients record windows of the same context as fast as they
    can: the loop's If-Match writes all land, and nothing is lost or written twice."""
    cid = (await svc.create(ME)).context_id

    async def loop() -> None:
        for turn in range(15):
            await svc.append(ME, cid, [user(f"q{turn}")])
            shown = await svc.window(ME, cid, record=True)
            reply = NewMessage(role="assistant", content=f"a{turn}")
            await svc.append(ME, cid, [reply], expected_version=shown.version)

    async def record() -> None:
        for _ in range(20):
            await svc.window(ME, cid, max_tokens=50, record=True)

    await asyncio.gather(loop(), *(record() for _ in range(4)))
    state = await svc.get(ME, cid)
    expected = [text for turn in range(15) for text in (f"q{turn}", f"a{turn}")]
    assert [m.content for m in state.messages] == expected
    kinds = [e.type for e in await svc.history(ME, cid, limit=1000)]
    assert kinds.count("window.served") == 15 + 4 * 20
    assert kinds.count("message.appended") == 30
    assert state.version == 1 + 30 + 15 + 80


async def test_across_processes_a_record_is_retried_past_and_content_is_not(
    tmp_path: Path,
) -> None:
    """Two services on one log, each with its own read model: the one that appends has (most
    likely) not seen the other's writes yet (it polls the log every 0.2 s), so its append
    meets them in the log. A served record there is stepped over; a content change is a
    conflict."""
    async with services_on_one_log(tmp_path, poll_interval=0.2) as (a, b):
        cid = (await a.create(ME)).context_id
        await a.append(ME, cid, [user("question")])
        shown = await a.window(ME, cid, record=True)
        await b.projector.catch_up()
        await b.window(ME, cid, record=True)  # another process records the same context
        written = await a.append(ME, cid, [user("answer")], expected_version=shown.version)
        assert written.version == shown.version + 3
        await b.projector.catch_up()
        await b.update_metadata(ME, cid, {"changed": True})  # a content change elsewhere
        with pytest.raises(VersionConflict) as conflict:
            await a.append(ME, cid, [user("late")], expected_version=written.version)
        assert (conflict.value.expected, conflict.value.actual) == (
            written.version, written.version + 1,
        )  # fmt: skip
        state = await a.get(ME, cid)
        assert [m.content for m in state.messages] == ["question", "answer"]


async def test_concurrent_writers_with_if_match_and_recorders_lose_nothing(
    tmp_path: Path,
) -> None:
    """Writers that read a version and write with it (retrying on a conflict, as a client
    does), on two services sharing one log, while windows are recorded through both: every
    append lands exactly once, and the read models agree with the log."""
    async with services_on_one_log(tmp_path, poll_interval=0.01) as services:
        cid = (await services[0].create(ME)).context_id
        await services[1].projector.catch_up()

        async def writer(n: int) -> None:
            service = services[n % 2]
            for i in range(8):
                for _ in range(100):  # bounded: a writer that never lands is a failure
                    try:  # a recorded window is a write too: it may meet the other process's
                        seen = await service.window(ME, cid, record=i % 2 == 0)
                        await service.append(
                            ME, cid, [user(f"w{n}-{i}")], expected_version=seen.version
                        )
                        break
                    except VersionConflict:
                        await service.projector.catch_up()
                else:
                    raise AssertionError(f"writer {n} never landed w{n}-{i}")

        async def recorder(n: int) -> None:
            for _ in range(15):
                with contextlib.suppress(VersionConflict):
                    await services[n % 2].window(ME, cid, max_tokens=20, record=True)

        await asyncio.gather(*(writer(n) for n in range(4)), *(recorder(n) for n in range(2)))
        for service in services:
            await service.projector.catch_up()
        for service in services:
            state = await service.get(ME, cid)
            texts = sorted(str(m.content) for m in state.messages)
            assert texts == sorted(f"w{n}-{i}" for n in range(4) for i in range(8))
        for i, service in enumerate(services):
            report = await verify_readmodel(service.store, str(tmp_path / f"rm{i}"), TokenCounter())
            assert report.ok, report


async def test_a_read_model_from_before_content_versions_is_rebuilt(tmp_path: Path) -> None:
    """A read model of schema 8 has no content_version: opening it drops it and the projector
    replays the log, so the rule has the right version from the first command on."""
    db = str(tmp_path / "log.db")
    store = await EventStore.open_sqlite(db)
    try:
        service = Contexts(store)
        await service.start()
        cid = (await service.create(ME)).context_id
        await service.append(ME, cid, [user("q")])
        shown = await service.window(ME, cid, record=True)
        await service.close()
        old = sqlite3.connect(db + ".readmodel")
        old.execute("ALTER TABLE contexts DROP COLUMN content_version")
        old.execute("PRAGMA user_version = 8")
        old.commit()
        old.close()
        service = Contexts(store)
        await service.start()
        assert (await service.get(ME, cid)).content_version == shown.version
        await service.append(ME, cid, [user("a")], expected_version=shown.version)
        await service.close()
    finally:
        await store.close()


async def test_a_keyed_record_retried_on_a_process_that_has_not_seen_it_answers_it(
    tmp_path: Path,
) -> None:
    """A window recorded with an idempotency key through one service, retried through
    another whose read model has not applied the record yet (it polls the log rarely): the
    retry answers the window recorded, and nothing is recorded twice."""
    async with services_on_one_log(tmp_path, poll_interval=30) as (a, b):
        cid = (await a.create(ME)).context_id
        await b.projector.catch_up()  # b knows the context, not what comes next
        await a.append(ME, cid, [user("question")])
        first = await a.window(ME, cid, record=True, idempotency_key="turn-1")
        assert first.message_ids  # b's view (no messages) differs
        retry = await b.window(ME, cid, record=True, idempotency_key="turn-1")
        assert retry == first
        history = await a.history(ME, cid)
        assert [type(e.event).__name__ for e in history].count("WindowServed") == 1
