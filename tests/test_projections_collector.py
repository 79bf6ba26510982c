"""While the projector replays the log (a rebuild, a catch-up), the cyclic collector's first
generation runs every 20,000 allocations instead of 700 (``projections/collector.py``); what
was set before is back afterwards."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from pathlib import Path

import pytest

from eventstore import ContextCreated, EventMetadata, EventStore, MessageAppended
from projections import Contexts
from projections.collector import REPLAY_THRESHOLD, fewer_collections

META = EventMetadata(tenant="t")


@pytest.fixture
def default_threshold() -> Iterator[tuple[int, int, int]]:
    before = gc.get_threshold()
    gc.set_threshold(700, 10, 10)
    try:
        yield gc.get_threshold()
    finally:
        gc.set_threshold(*before)


def test_the_threshold_is_raised_for_the_block_only(
    default_threshold: tuple[int, int, int],
) -> None:
    with fewer_collections():
        assert gc.get_threshold() == (REPLAY_THRESHOLD, 10, 10)
    assert gc.get_threshold() == default_threshold
    gc.set_threshold(50_000, 10, 10)  # already higher: left alone
    with fewer_collections():
        assert gc.get_threshold()[0] == 50_000
    assert gc.get_threshold()[0] == 50_000


def test_a_change_made_meanwhile_stands(default_threshold: tuple[int, int, int]) -> None:
    with fewer_collections():
        gc.set_threshold(1000, 10, 10)  # someone else's decision, e.g. a server's start
    assert gc.get_threshold() == (1000, 10, 10)


async def test_a_rebuild_and_a_catch_up_replay_with_fewer_collections(
    tmp_path: Path, default_threshold: tuple[int, int, int]
) -> None:
    store = await EventStore.open_sqlite(str(tmp_path / "log.db"))
    for s in range(3):
        await store.append(f"s{s}", [ContextCreated()], metadata=META)
        events = [MessageAppended(message_id=f"m{i}", role="user", content="hi") for i in range(20)]
        await store.append(f"s{s}", events, metadata=META)
    svc = Contexts(store)
    seen: list[int] = []
    real_apply = svc.projector.apply

    async def apply(*args: object, **kwargs: object) -> None:
        seen.append(gc.get_threshold()[0])
        await real_apply(*args, **kwargs)  # type: ignore[arg-type]

    svc.projector.apply = apply  # type: ignore[method-assign]
    try:
        await svc.start()  # the live loop catches up while start waits for it
        assert seen
        assert set(seen) == {REPLAY_THRESHOLD}
        assert gc.get_threshold() == default_threshold
        during: list[int] = []
        await svc.rebuild(lambda done, total: during.append(gc.get_threshold()[0]))
        assert during
        assert set(during) == {REPLAY_THRESHOLD}
        assert gc.get_threshold() == default_threshold
    finally:
        await svc.close()
        await store.close()
