"""The store's contract, run once per backend (SQLite in memory, SQLite on file, PostgreSQL)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from typing import Any

import msgspec
import pytest

from eventstore import (
    ANY,
    NO_STREAM,
    STREAM_EXISTS,
    ContextCreated,
    ContextDeleted,
    DuplicateEventId,
    EventMetadata,
    EventStore,
    EventTooLarge,
    InvalidEvent,
    InvalidStreamId,
    Lane,
    LogFilter,
    MessageAppended,
    MetadataUpdated,
    ToolCallPart,
    UnknownEventType,
    VersionConflict,
)
from eventstore.recorder import NewEvent, PendingAppend
from tests.conftest import Tamper

UNDECODABLE = MessageAppended(
    message_id="m",
    role="assistant",
    content=[ToolCallPart(id="c", name="f", arguments="not an object")],  # type: ignore[arg-type]
)


def message(text: str, message_id: str | None = None) -> MessageAppended:
    return MessageAppended(message_id=message_id or str(uuid.uuid4()), role="user", content=text)


async def test_append_assigns_versions_and_gap_free_positions(store: EventStore) -> None:
    first = await store.append("a", [ContextCreated(), message("one")], NO_STREAM)
    second = await store.append("b", [ContextCreated()], NO_STREAM)
    third = await store.append("a", [message("two")], 2)

    assert (first.version, first.positions) == (2, [1, 2])
    assert (second.version, second.positions) == (1, [3])
    assert (third.version, third.positions) == (3, [4])
    events = await store.read_stream("a")
    assert [e.version for e in events] == [1, 2, 3]
    assert [e.position for e in events] == [1, 2, 4]
    assert events[1].event == message("one", events[1].event.message_id)  # type: ignore[union-attr]
    assert await store.head() == 4
    assert await store.stream_version("a") == 3
    assert await store.stream_version("missing") == 0


@pytest.mark.parametrize(
    ("expected", "actual_before"),
    [(NO_STREAM, 1), (STREAM_EXISTS, 0), (5, 1), (0, 1)],
)
async def test_conflict_carries_expected_and_actual(
    store: EventStore, expected: Any, actual_before: int
) -> None:
    if actual_before:
        await store.append("s", [ContextCreated()])
    with pytest.raises(VersionConflict) as caught:
        await store.append("s", [message("x")], expected)
    assert caught.value.expected == expected
    assert caught.value.actual == actual_before
    assert caught.value.stream_id == "s"
    assert await store.stream_version("s") == actual_before


async def test_any_and_stream_exists_accept(store: EventStore) -> None:
    await store.append("s", [ContextCreated()], ANY)
    result = await store.append("s", [message("x")], STREAM_EXISTS)
    assert result.version == 2


async def test_multi_event_append_is_atomic(store: EventStore) -> None:
    await store.append("s", [ContextCreated()])
    taken = str(uuid.uuid4())
    await store.append("other", [ContextCreated()], event_ids=[taken])
    # The second event reuses an id with other content: the whole append is refused.
    with pytest.raises(DuplicateEventId):
        await store.append("s", [message("a"), message("b")], event_ids=[str(uuid.uuid4()), taken])
    assert await store.stream_version("s") == 1
    assert await store.head() == 2


async def test_retry_returns_original_positions_and_writes_nothing(store: EventStore) -> None:
    await store.append("s", [ContextCreated()])
    ids = [str(uuid.uuid4()), str(uuid.uuid4())]
    events = [message("a"), message("b")]
    first = await store.append("s", events, 1, event_ids=ids)
    await store.append("s", [message("c")])
    # Any expected version, even one that would now conflict: it is the same append.
    for expected in (1, ANY, NO_STREAM, 17):
        retry = await store.append("s", events, expected, event_ids=ids)
        assert retry.duplicate
        assert (retry.positions, retry.version) == (first.positions, first.version)
    assert await store.head() == 4


async def test_reused_event_id_with_other_content_is_refused(store: EventStore) -> None:
    event_id = str(uuid.uuid4())
    await store.append("s", [message("original")], event_ids=[event_id])
    with pytest.raises(DuplicateEventId) as caught:
        await store.append("s", [message("changed")], event_ids=[event_id])
    assert caught.value.event_id == event_id
    with pytest.raises(DuplicateEventId):  # same content, other stream
        await store.append("t", [message("original")], event_ids=[event_id])
    assert await store.head() == 1


async def test_retry_of_part_of_an_append_is_refused(store: EventStore) -> None:
    ids = [str(uuid.uuid4()), str(uuid.uuid4())]
    events = [message("a"), message("b")]
    await store.append("s", events, event_ids=ids)
    with pytest.raises(DuplicateEventId):
        await store.append("s", [events[0], message("new")], event_ids=[ids[0], str(uuid.uuid4())])
    assert await store.head() == 2


async def test_concurrent_writers_race_one_winner_per_version(store: EventStore) -> None:
    await store.append("race", [ContextCreated()])
    writers, rounds = 16, 10
    wins: dict[int, int] = {}
    conflicts: list[tuple[int, VersionConflict]] = []

    async def writer(n: int) -> None:
        for _ in range(rounds * 4):
            version = await store.stream_version("race")
            if version > rounds:
                return
            try:
                result = await store.append("race", [message(f"w{n}")], version)
            except VersionConflict as conflict:
                conflicts.append((version, conflict))
                continue
            wins[result.version] = wins.get(result.version, 0) + 1

    await asyncio.gather(*(writer(n) for n in range(writers)))
    versions = [e.version for e in await store.read_stream("race", limit=10_000)]
    assert versions == list(range(1, len(versions) + 1))
    assert all(count == 1 for count in wins.values())
    assert conflicts
    assert all(c.actual > tried and c.expected == tried for tried, c in conflicts)
    assert sorted(wins) == versions[1:]


async def test_conflict_in_a_batch_fails_only_its_own_append(store: EventStore) -> None:
    await store.append("s", [ContextCreated()])
    appends = [store.append(f"n{i}", [ContextCreated()], NO_STREAM) for i in range(20)]
    appends.insert(10, store.append("s", [message("late")], NO_STREAM))  # conflicts
    appends.insert(5, store.append("s", [message("ok")], 1))
    batches_before = store.batches
    results = await asyncio.gather(*appends, return_exceptions=True)

    # Gathered before the writer ran, so they share very few transactions.
    assert store.batches - batches_before <= 2
    assert isinstance(results[11], VersionConflict)
    assert sum(isinstance(r, Exception) for r in results) == 1
    assert await store.head() == 22
    assert [e.version for e in await store.read_stream("s")] == [1, 2]


async def test_concurrent_duplicate_retries_in_one_batch_store_once(store: EventStore) -> None:
    ids = [str(uuid.uuid4())]
    event = message("same")
    results = await asyncio.gather(*(store.append("s", [event], event_ids=ids) for _ in range(5)))
    assert [r.duplicate for r in results].count(False) == 1
    assert {tuple(r.positions) for r in results} == {(1,)}
    assert await store.head() == 1


async def test_read_stream_directions_and_limits(store: EventStore) -> None:
    await store.append("s", [message(str(i)) for i in range(10)])
    forward = await store.read_stream("s", 3, limit=4)
    assert [e.version for e in forward] == [3, 4, 5, 6]
    backward = await store.read_stream("s", backward=True, limit=3)
    assert [e.version for e in backward] == [10, 9, 8]
    assert [e.version for e in await store.read_stream("s", 2, backward=True)] == [2, 1]
    assert await store.read_stream("nothing") == []


async def test_iter_stream_reads_in_chunks_to_a_version(store: EventStore) -> None:
    await store.append("s", [message(str(i)) for i in range(2500)])
    versions = [e.version async for e in store.iter_stream("s", 2, 2100)]
    assert versions == list(range(2, 2101))


async def test_read_all_filters(store: EventStore) -> None:
    alice = EventMetadata(actor="alice", tenant="t1")
    bob = EventMetadata(actor="bob", tenant="t2")
    await store.append("a", [ContextCreated(), message("x")], metadata=alice)
    await store.append("b", [ContextCreated()], metadata=bob)
    await store.append("a", [MetadataUpdated(patch={"k": 1})], metadata=bob)

    async def positions(**kwargs: Any) -> list[int]:
        events, _ = await store.read_all(filter=LogFilter(**kwargs))
        return [e.position for e in events]

    assert await positions() == [1, 2, 3, 4]
    assert await positions(types=("context.created",)) == [1, 3]
    assert await positions(stream_id="a") == [1, 2, 4]
    assert await positions(tenant="t2") == [3, 4]
    assert await positions(actor="alice") == [1, 2]
    assert await positions(types=("metadata.updated",), actor="bob", stream_id="a") == [4]
    events, through = await store.read_all(after=1, limit=2)
    assert ([e.position for e in events], through) == ([2, 3], 3)
    events, through = await store.read_all(filter=LogFilter(actor="alice"))
    assert through == 4  # scanned to the head, not just to the last match
    assert events[0].metadata == alice


async def test_read_all_time_range(store: EventStore) -> None:
    stamps = []
    for i in range(6):
        result = await store.append("s", [message(str(i))])
        stamps.append(result.recorded_at)
        await asyncio.sleep(0.002)
    from eventstore import to_micros

    window = LogFilter(since=to_micros(stamps[2]), until=to_micros(stamps[4]))
    events, _ = await store.read_all(filter=window)
    assert [e.position for e in events] == [3, 4]
    later = LogFilter(since=to_micros(stamps[5] + timedelta(seconds=1)))
    assert (await store.read_all(filter=later))[0] == []
    assert await store.stream_version_at("s", stamps[3]) == 4
    assert await store.stream_version_at("s", stamps[0] - timedelta(seconds=1)) == 0


async def test_recorded_at_is_utc_microseconds_and_never_decreases(store: EventStore) -> None:
    for i in range(5):
        await store.append("s", [message(str(i))])
    events = await store.read_stream("s")
    assert all(e.recorded_at.utcoffset() == timedelta(0) for e in events)
    assert [e.recorded_at for e in events] == sorted(e.recorded_at for e in events)


async def test_list_streams_paginates_both_ways_and_by_tenant(store: EventStore) -> None:
    for i in range(7):
        tenant = "even" if i % 2 == 0 else "odd"
        await store.append(f"s{i}", [ContextCreated()], metadata=EventMetadata(tenant=tenant))
        await store.append(f"s{i}", [message("x")])
    oldest = await store.list_streams(limit=3)
    assert [s.stream_id for s in oldest] == ["s0", "s1", "s2"]
    more = await store.list_streams(after=oldest[-1].position, limit=3)
    assert [s.stream_id for s in more] == ["s3", "s4", "s5"]
    newest = await store.list_streams(before=2**62, limit=2)
    assert [s.stream_id for s in newest] == ["s6", "s5"]
    older = await store.list_streams(before=newest[-1].position, limit=2)
    assert [s.stream_id for s in older] == ["s4", "s3"]
    even = await store.list_streams(tenant="even", before=2**62, limit=10)
    assert [s.stream_id for s in even] == ["s6", "s4", "s2", "s0"]
    assert even[0].tenant == "even"


async def test_streams_starting_with_a_prefix(store: EventStore) -> None:
    for stream in ("ab-1", "ab-2", "ab", "abc", "b-1", "a"):
        await store.append(stream, [ContextCreated()], NO_STREAM)
        await store.append(stream, [message("x")], 1)
    assert await store.streams_starting_with("ab") == ["ab", "ab-1", "ab-2", "abc"]
    assert await store.streams_starting_with("ab-") == ["ab-1", "ab-2"]
    assert await store.streams_starting_with("ab", limit=2) == ["ab", "ab-1"]
    assert await store.streams_starting_with("b-1") == ["b-1"]
    assert await store.streams_starting_with("c") == []
    with pytest.raises(InvalidStreamId):
        await store.streams_starting_with("")


async def test_streams_starting_with_a_prefix_are_in_byte_order(store: EventStore) -> None:
    # Every character an id may hold, which a language's collation would order otherwise
    # (PostgreSQL's default collation ignores punctuation at first): the ids come in byte
    # order on both engines, and the range holds the prefix's ids alone.
    streams = ("ab_1", "abz", "ab@1", "abA", "ab:1", "ab9", "ab.1", "ab-1", "aB", "ac", "a")
    for stream in streams:
        await store.append(stream, [ContextCreated()], NO_STREAM)
    expected = sorted(s for s in streams if s.startswith("ab"))
    assert expected == ["ab-1", "ab.1", "ab9", "ab:1", "ab@1", "abA", "ab_1", "abz"]
    assert await store.streams_starting_with("ab") == expected
    assert await store.streams_starting_with("ab", limit=3) == expected[:3]
    assert await store.streams_starting_with("aB") == ["aB"]


async def test_has_tenants_says_whether_any_stream_belongs_to_a_tenant(store: EventStore) -> None:
    # What an open server checks before it serves: no stream of a tenant, or some.
    assert await store.has_tenants() is False
    for i in range(3):
        await store.append(f"open{i}", [ContextCreated(), message("x")])
    assert await store.has_tenants() is False
    await store.append("t", [ContextCreated()], metadata=EventMetadata(tenant="acme"))
    assert await store.has_tenants() is True
    await store.append("open3", [ContextCreated()])
    assert await store.has_tenants() is True


async def test_verify_passes_on_an_intact_log(store: EventStore) -> None:
    for i in range(30):
        await store.append(f"s{i % 3}", [message(str(i))])
    seen: list[tuple[int, int]] = []
    report = await store.verify(progress=lambda done, total: seen.append((done, total)), chunk=7)
    assert report.ok
    assert report.events == 30
    assert seen[-1] == (30, 30)
    assert report.head_hash == (await store.read_stream("s2", backward=True, limit=1))[0].hash


async def test_verify_reports_the_first_tampered_position(
    store: EventStore, tamper: Tamper
) -> None:
    for i in range(10):
        await store.append("s", [message(f"m{i}")])
    forged = msgspec.json.encode(message("forged"))
    await tamper(6, forged)
    report = await store.verify()
    assert not report.ok
    assert report.broken is not None
    assert report.broken.position == 6
    assert report.events == 5


async def test_old_rows_decode_after_a_field_was_added(store: EventStore) -> None:
    class MessageAppendedV0(msgspec.Struct, tag_field="type", tag="message.appended"):
        """MessageAppended as first written: no name, no metadata."""

        message_id: str
        role: str
        content: str

    old = msgspec.json.encode(MessageAppendedV0("m-old", "user", "written long ago"))
    meta = msgspec.json.encode(EventMetadata())
    row = NewEvent(str(uuid.uuid4()), "message.appended", old, meta, None, None)
    [outcome] = await store.recorder.commit([PendingAppend("s", [row], ANY)], 1)
    assert not isinstance(outcome, Exception)

    [event] = await store.read_stream("s")
    assert event.event == MessageAppended(
        message_id="m-old", role="user", content="written long ago", name=None, metadata={}
    )
    assert (await store.verify()).ok


async def test_a_stored_row_of_unknown_type_is_a_typed_error(store: EventStore) -> None:
    row = NewEvent(
        str(uuid.uuid4()), "from.the.future", b'{"type":"from.the.future"}', b"{}", None, None
    )
    await store.recorder.commit([PendingAppend("s", [row], ANY)], 1)
    with pytest.raises(UnknownEventType) as caught:
        await store.read_stream("s")
    assert caught.value.position == 1


class NotAnEvent(msgspec.Struct):
    """Looks like data, is not one of the event types."""

    x: int = 1


@pytest.mark.parametrize(
    ("stream_id", "events", "kwargs", "error"),
    [
        ("", [ContextCreated()], {}, InvalidStreamId),
        ("../etc", [ContextCreated()], {}, InvalidStreamId),
        ("a b", [ContextCreated()], {}, InvalidStreamId),
        ("x" * 129, [ContextCreated()], {}, InvalidStreamId),
        ("nul\x00", [ContextCreated()], {}, InvalidStreamId),
        ("'; DROP TABLE events; --", [ContextCreated()], {}, InvalidStreamId),
        ("s", [], {}, InvalidEvent),
        ("s", [NotAnEvent()], {}, UnknownEventType),
        ("s", [ContextCreated(), "text"], {}, UnknownEventType),
        ("s", [message("x" * (1 << 20))], {}, EventTooLarge),
        ("s", [ContextCreated()], {"event_ids": ["not-a-uuid"]}, InvalidEvent),
        ("s", [ContextCreated()], {"event_ids": []}, InvalidEvent),
        (
            "s",
            [ContextCreated(), ContextCreated()],
            {"event_ids": [str(uuid.UUID(int=1))] * 2},
            InvalidEvent,
        ),
        ("s", [ContextCreated()], {"expected_version": -1}, InvalidEvent),
        ("s", [ContextCreated()], {"metadata": EventMetadata(actor="a\x00b")}, InvalidEvent),
        ("s", [ContextCreated()], {"metadata": EventMetadata(tenant="\x00")}, InvalidEvent),
        # Built in code, not decoded: msgspec does not check a Struct's fields at __init__.
        ("s", [UNDECODABLE], {}, InvalidEvent),
        ("s", [UNDECODABLE], {"subjects": [["user-7"]]}, InvalidEvent),  # sealed, too
        ("s", [MessageAppended(message_id="m", role="nobody", content="x")], {}, InvalidEvent),  # type: ignore[arg-type]
    ],
)
async def test_bad_input_is_refused_and_writes_nothing(
    store: EventStore, stream_id: str, events: list[Any], kwargs: dict[str, Any], error: type
) -> None:
    await store.append("before", [ContextCreated()])
    with pytest.raises(error):
        await store.append(stream_id, events, **kwargs)
    assert await store.head() == 1


async def test_size_limit_is_configurable(backend: str, tmp_path: Any) -> None:
    from tests.conftest import open_store

    store = await open_store(backend, tmp_path, max_event_bytes=200)
    try:
        await store.append("s", [message("x" * 50)])
        with pytest.raises(EventTooLarge) as caught:
            await store.append("s", [message("x" * 300)])
        assert caught.value.limit == 200
    finally:
        await store.close()


async def test_a_lane_stops_at_its_first_refused_append(store: EventStore) -> None:
    # Two appends follow each other in a lane from version 1, but another writer deleted
    # the context first (version 2): the first is refused, and so must be the second, whose
    # expected version (2) the delete happens to match.
    await store.append("s", [ContextCreated()])
    await store.append("s", [ContextDeleted()], 1)
    lane = Lane()
    outcomes = await asyncio.gather(
        store.append("s", [message("a")], 1, lane=lane),
        store.append("s", [message("b")], 1, lane=lane),
        return_exceptions=True,
    )
    assert [type(o) for o in outcomes] == [VersionConflict, VersionConflict]
    assert lane.broken
    assert await store.stream_version("s") == 2
    # A new lane, validated against the stream as it is, goes on.
    done = await store.append("s", [message("c")], 2, lane=Lane())
    assert done.version == 3
