"""Catch-up subscriptions: no gap and no duplicate, across the hand-over, for slow readers too."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncGenerator
from pathlib import Path

from eventstore import ContextCreated, EventStore, LogFilter, MessageAppended, RecordedEvent


def message(text: str) -> MessageAppended:
    return MessageAppended(message_id=str(uuid.uuid4()), role="user", content=text)


async def collect(
    events: AsyncGenerator[RecordedEvent, None],
    count: int,
    delay: float = 0.0,
    within: float = 30.0,
) -> list[RecordedEvent]:
    got: list[RecordedEvent] = []

    async def run() -> None:
        async with contextlib.aclosing(events) as sub:
            async for event in sub:
                got.append(event)
                if delay:
                    await asyncio.sleep(delay)
                if len(got) == count:
                    return

    await asyncio.wait_for(run(), within)
    return got


async def append_many(store: EventStore, writers: int, each: int) -> None:
    async def writer(n: int) -> None:
        for i in range(each):
            await store.append(f"w{n}", [message(str(i))])
            if i % 7 == 0:
                await asyncio.sleep(0)

    await asyncio.gather(*(writer(n) for n in range(writers)))


async def test_catch_up_then_live_is_gap_and_duplicate_free(tmp_path: Path) -> None:
    async with await EventStore.open_sqlite(str(tmp_path / "log.db")) as store:
        await append_many(store, 4, 300)  # history to catch up on
        total = 1200 + 8 * 250
        reader = asyncio.create_task(collect(store.subscribe(), total))
        await append_many(store, 8, 250)  # appended while the reader catches up and follows
        got = await reader
        assert [e.position for e in got] == list(range(1, total + 1))


async def test_subscription_from_a_position_with_a_filter(tmp_path: Path) -> None:
    async with await EventStore.open_sqlite(str(tmp_path / "log.db")) as store:
        for i in range(10):
            await store.append(f"s{i % 2}", [message(str(i))])
        only_s1 = LogFilter(stream_id="s1")
        reader = asyncio.create_task(collect(store.subscribe(4, only_s1), 6))
        for i in range(10, 16):
            await store.append(f"s{i % 2}", [message(str(i))])
        got = await reader
        assert [e.position for e in got] == [6, 8, 10, 12, 14, 16]
        assert {e.stream_id for e in got} == {"s1"}


async def test_a_slow_consumer_loses_nothing_with_a_small_buffer(tmp_path: Path) -> None:
    async with await EventStore.open_sqlite(str(tmp_path / "log.db")) as store:
        await store.append("s", [ContextCreated()])
        total = 1 + 4 * 200
        reader = asyncio.create_task(collect(store.subscribe(capacity=16), total, delay=0.0005))
        await asyncio.sleep(0.05)  # let it go live before the burst
        await append_many(store, 4, 200)
        got = await reader
        assert [e.position for e in got] == list(range(1, total + 1))


async def test_events_from_another_process_arrive_by_polling(tmp_path: Path) -> None:
    path = str(tmp_path / "log.db")
    async with (
        await EventStore.open_sqlite(path) as mine,
        await EventStore.open_sqlite(path) as theirs,
    ):
        await mine.append("s", [ContextCreated()])
        reader = asyncio.create_task(collect(mine.subscribe(poll_interval=0.05), 5))
        await asyncio.sleep(0.1)
        await mine.append("s", [message("mine")])
        await theirs.append("s", [message("theirs 1"), message("theirs 2")])
        await mine.append("s", [message("mine again")])
        got = await reader
        assert [e.position for e in got] == [1, 2, 3, 4, 5]


async def test_closing_a_subscription_unregisters_it(tmp_path: Path) -> None:
    async with await EventStore.open_sqlite(str(tmp_path / "log.db")) as store:
        await store.append("s", [ContextCreated()])
        await collect(store.subscribe(), 1)
        assert store._feeds == set()


async def test_a_stopped_consumer_holds_at_most_its_byte_budget(tmp_path: Path) -> None:
    budget = 64 << 10
    async with await EventStore.open_sqlite(str(tmp_path / "log.db")) as store:
        await store.append("s", [ContextCreated()])
        sub = store.subscribe(max_bytes=budget)
        async with contextlib.aclosing(sub):
            first = await anext(sub)  # live now; then the consumer stops taking events
            for i in range(50):
                await store.append("s", [message(f"{i} " + "x" * 3000) for _ in range(10)])
            (feed,) = store._feeds
            assert 0 < feed.bytes <= budget  # not the 500 events (1.5 MB) published
            rest = [await anext(sub) for _ in range(500)]
        assert [e.position for e in [first, *rest]] == list(range(1, 502))


async def test_a_page_of_the_log_is_cut_to_the_byte_budget() -> None:
    from eventstore.recorder import LogPage, StoredEvent
    from eventstore.subscription import _bounded, row_bytes

    def row(position: int, size: int) -> StoredEvent:
        return StoredEvent(position, "s", position, str(position), "t", b"x" * size, b"{}",
                           None, None, 0, b"")  # fmt: skip

    page = LogPage([row(p, 3000) for p in range(1, 101)], 100)
    kept, through, more, following = _bounded(page, 100, 10 * row_bytes(page.events[0]), 1000)
    assert [r.position for r in kept] == list(range(1, 11))
    assert (through, more, following) == (10, True, 10)
    kept, through, more, _ = _bounded(LogPage([row(1, 1 << 20)], 7), 5, 1024, 1000)
    assert [r.position for r in kept] == [1]  # one row always, however big
    assert (through, more) == (7, False)
