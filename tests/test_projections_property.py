"""The read model kept incrementally, a rebuild of it, time travel and the pure fold agree on
random histories with rollbacks, forks, edits, redactions, summaries and deletes."""

from __future__ import annotations

import asyncio
import sqlite3
from collections import defaultdict
from collections.abc import Callable

import msgspec
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from eventstore import (
    Content,
    ContextCreated,
    ContextDeleted,
    ContextForked,
    ContextRolledBack,
    Event,
    EventBase,
    EventMetadata,
    EventStore,
    MessageAppended,
    MessageEdited,
    MessageRedacted,
    MetadataUpdated,
    RecordedEvent,
    SummaryAdded,
    ToolCallPart,
    ToolResultPart,
    WindowConfigured,
    WindowServed,
    WindowSettings,
)
from projections import (
    CHUNK,
    Caller,
    Contexts,
    ContextState,
    apply,
    fold,
    history,
    plain_text,
    runner,
    search,
    tenants,
    window,
)
from projections.runner import FIRST_BUILD
from tests.support.factories import COUNTER

STREAMS = ["a", "b", "c"]
_ids = st.sampled_from(["m1", "m2", "m3"])
_content = st.one_of(
    st.text(max_size=10),
    st.just([ToolCallPart(id="t1", name="f", arguments={"x": 1})]),
    st.just([ToolResultPart(call_id="t1", content="ok")]),
)
_append = st.builds(
    MessageAppended,
    message_id=_ids,
    role=st.sampled_from(["user", "user", "assistant", "system", "tool"]),
    content=_content,
)
_event: st.SearchStrategy[EventBase] = st.one_of(
    _append,
    _append,
    _append,
    st.builds(MessageEdited, message_id=_ids, content=st.text(max_size=10)),
    st.builds(MessageRedacted, message_id=_ids),
    st.builds(
        MetadataUpdated,
        patch=st.dictionaries(st.sampled_from("xyz"), st.none() | st.integers(0, 3), max_size=2),
    ),
    st.builds(
        SummaryAdded,
        summary_id=st.sampled_from(["s1", "s2"]),
        text=st.just("summary"),
        through_message_id=_ids,
    ),
    st.builds(ContextRolledBack, to_version=st.integers(1, 14)),
    st.builds(ContextRolledBack, to_version=st.integers(1, 4)),
    st.builds(WindowConfigured, window=st.builds(WindowSettings, max_tokens=st.integers(10, 60))),
    st.just(ContextDeleted()),
    st.just(WindowServed(policy="tokens", max_tokens=None, encoding="cl100k_base")),
)
# (stream, event) steps; a fork step names its parent and a version to fork at.
Step = tuple[str, Event | tuple[str, int]]
_step = st.one_of(
    st.tuples(st.sampled_from(STREAMS), _event),
    st.tuples(st.sampled_from(["fork"]), st.tuples(st.sampled_from(STREAMS), st.integers(1, 6))),
)


def _m(mid: str, role: str = "user", content: object = "hello there") -> MessageAppended:
    return MessageAppended(message_id=mid, role=role, content=content)  # type: ignore[arg-type]


TRICKY: list[Step] = [
    ("a", _m("m1", "system", "be brief")),
    ("a", _m("m2")),
    ("a", _m("m3", "assistant", [ToolCallPart(id="t1", name="f")])),
    ("a", _m("m4", "tool", [ToolResultPart(call_id="t1", content="ok")])),
    ("a", MessageEdited(message_id="m2", content="changed")),
    ("a", SummaryAdded(summary_id="s1", text="sum", through_message_id="m2")),
    ("fork", ("a", 4)),
    ("a", MessageRedacted(message_id="m3")),
    ("a", ContextRolledBack(to_version=5)),
    ("a", _m("m5")),
    ("b", _m("m1")),
    ("fork", ("a", 9)),
    ("a", ContextRolledBack(to_version=2)),
    ("a", ContextRolledBack(to_version=10)),
    ("a", MetadataUpdated(patch={"x": 1})),
    ("a", ContextDeleted()),
    ("a", _m("m6")),
]
"""Every kind of step, with rollbacks before and after snapshots and forks of rollbacks."""


ACTORS = ("ann", "bob", None)
"""Who each step is by, in turn: every state names the actor of its latest event."""


async def write_history(
    store: EventStore, steps: list[Step], after_each: Callable[[], object]
) -> None:
    """Append the steps as raw events (the fold is lenient, so nonsense is allowed too,
    except what no fold can follow: a fork of a context or version that does not exist)."""
    versions: dict[str, int] = defaultdict(int)
    forks = 0
    for i, (target, what) in enumerate(steps):
        meta = EventMetadata(tenant="t", actor=ACTORS[i % len(ACTORS)])
        stream = target
        if isinstance(what, tuple):  # ("fork", (parent, at))
            parent, at = what
            if versions[parent] < at:
                continue
            forks += 1
            stream = f"f{forks}"
            event: EventBase = ContextForked(parent_id=parent, parent_version=at, metadata={"f": 1})
        else:
            event = what
            if versions[stream] == 0:
                await store.append(stream, [ContextCreated(metadata={"n": stream})], metadata=meta)
                versions[stream] += 1
        await store.append(stream, [event], metadata=meta)
        versions[stream] += 1
        result = after_each()
        if asyncio.iscoroutine(result):
            await result


async def folded(store: EventStore) -> dict[str, list[RecordedEvent]]:
    """Every stream's events."""
    events, _ = await store.read_all(0, 100_000)
    by_stream: dict[str, list[RecordedEvent]] = defaultdict(list)
    for rec in events:
        by_stream[rec.stream_id].append(rec)
    return by_stream


def fold_at(by_stream: dict[str, list[RecordedEvent]], stream: str, version: int) -> ContextState:
    """The pure fold of a stream's first ``version`` events, parents resolved the same way."""
    return fold(
        by_stream[stream][:version],
        counter=COUNTER,
        resolve=lambda c, v: fold_at(by_stream, c, v),
    )


async def check_agrees(svc: Contexts, by_stream: dict[str, list[RecordedEvent]]) -> None:
    caller = Caller(tenant="t")
    for stream, events in by_stream.items():
        expected = fold_at(by_stream, stream, len(events))
        state = await svc.readmodel.read(_state, stream)
        assert state == expected
        if not expected.deleted:
            for budget in (None, 25, 60):
                assert await svc.window(caller, stream, max_tokens=budget) == window(
                    expected, budget
                )
        for version in range(1, len(events) + 1):
            assert await svc.time_travel.state_at(stream, version) == fold_at(
                by_stream, stream, version
            )
    await svc.readmodel.read(_search_agrees)


def _search_agrees(conn: sqlite3.Connection) -> None:
    """The tenant's full-text index holds exactly the words of the messages rows, no more,
    no less."""
    match_expression = search.match_expression
    rows = conn.execute("SELECT rowid, content FROM messages").fetchall()
    slot = tenants.slot_sync(conn, "t")
    if slot is None:  # no text indexed yet
        assert not any(plain_text(msgspec.json.decode(c, type=Content)) for _, c in rows)
        return
    table = tenants.fts_table(slot)
    conn.execute(f"INSERT INTO {table} ({table}) VALUES ('integrity-check')")
    indexed = 0
    for rowid, content in rows:
        text = plain_text(msgspec.json.decode(content, type=Content))
        indexed += bool(text)  # what index_sync indexes
        if any(ch.isalnum() for ch in text):  # it has a token: its own text finds it
            term = match_expression(text)
            hits = conn.execute(f"SELECT rowid FROM {table} WHERE {table} MATCH ?", (term,))
            assert (rowid,) in hits.fetchall()
    (total,) = conn.execute(f"SELECT count(*) FROM {table}_docsize").fetchone()
    assert total == indexed


def _state(conn: object, stream: str) -> ContextState | None:
    from projections.reads import state_sync

    return state_sync(conn, stream)  # type: ignore[arg-type]


@pytest.mark.slow
@settings(
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@example(steps=TRICKY, batch=1)
@example(steps=TRICKY, batch=1000)
@given(steps=st.lists(_step, min_size=15, max_size=40), batch=st.sampled_from([1, 3, 1000]))
def test_incremental_rebuild_time_travel_and_fold_agree(
    steps: list[Step], batch: int
) -> None:
    async def run() -> None:
        # Two-message snapshot chunks, so snapshots span several chunks and rewrite some.
        # apply.CHUNK is history's, imported by name (no re-export): shrink both.
        history.CHUNK = apply.CHUNK = 2  # type: ignore[attr-defined]
        store = await EventStore.open_sqlite(":memory:")
        svc = Contexts(store, snapshot_every=3, batch_size=batch, poll_interval=0.01)
        try:
            await svc.start()
            # Incrementally: the projector follows while the history is written, sometimes
            # one event per batch, sometimes many.
            await write_history(store, steps, lambda: asyncio.sleep(0) if batch > 1 else None)
            await svc.projector.catch_up()
            by_stream = await folded(store)
            await check_agrees(svc, by_stream)
            svc.time_travel.clear_cache()
            await svc.rebuild()
            await check_agrees(svc, by_stream)
            # A service starting with an empty read model builds it as a rebuild does.
            runner.FIRST_BUILD = 0
            first = Contexts(store, snapshot_every=3)
            await first.start()
            assert first.projector.applied == await store.head()
            await check_agrees(first, by_stream)
            await first.close()
        finally:
            await svc.close()
            await store.close()
            history.CHUNK = apply.CHUNK = CHUNK  # type: ignore[attr-defined]
            runner.FIRST_BUILD = FIRST_BUILD

    asyncio.run(run())
