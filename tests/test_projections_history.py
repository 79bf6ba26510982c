"""Time travel: snapshots (several chunks, rewritten by edits and rollbacks) against a full
fold, by version and by time, with the chunk cache cold and warm."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from eventstore import (
    ContextCreated,
    ContextRolledBack,
    EventMetadata,
    EventStore,
    MessageAppended,
    MessageEdited,
    MessageRedacted,
    MetadataUpdated,
    RecordedEvent,
)
from projections import (
    CHUNK,
    Caller,
    ContextNotFound,
    Contexts,
    InvalidVersion,
    apply,
    diff,
    fold,
    history,
)
from tests.support.factories import COUNTER


@pytest.fixture
async def svc() -> AsyncIterator[Contexts]:
    # Snapshots of several chunks, even for short streams. apply.CHUNK is history's,
    # imported by name (no re-export): shrink both.
    history.CHUNK = apply.CHUNK = 4  # type: ignore[attr-defined]
    store = await EventStore.open_sqlite(":memory:")
    service = Contexts(store, snapshot_every=5)
    await service.start()
    try:
        yield service
    finally:
        await service.close()
        await store.close()
        history.CHUNK = apply.CHUNK = CHUNK  # type: ignore[attr-defined]


async def write(svc: Contexts) -> list[RecordedEvent]:
    meta = EventMetadata(tenant="t")
    store = svc.store
    await store.append("c", [ContextCreated()], metadata=meta)
    for i in range(60):
        await store.append("c", [MessageAppended(message_id=f"m{i}", role="user", content=f"{i}")],
                           metadata=meta)  # fmt: skip
        if i % 7 == 3:
            await store.append("c", [MessageEdited(message_id=f"m{i // 2}", content="e")])
        if i % 11 == 5:
            await store.append("c", [MessageRedacted(message_id=f"m{i - 1}")])
        if i % 13 == 12:
            await store.append("c", [MetadataUpdated(patch={"i": i})])
        if i in (30, 45):
            await store.append("c", [ContextRolledBack(to_version=i // 2)])
    await svc.projector.catch_up()
    return [e async for e in store.iter_stream("c")]


async def test_every_version_equals_a_full_fold(svc: Contexts) -> None:
    events = await write(svc)
    for warm in (False, True):  # cold cache, then every chunk from the cache
        for version in range(1, len(events) + 1):
            expected = fold(events[:version], counter=COUNTER)
            assert await svc.time_travel.state_at("c", version) == expected, (warm, version)


async def test_snapshots_are_rows_every_k_versions_and_chunks_only_when_changed(
    svc: Contexts,
) -> None:
    events = await write(svc)
    snapshots = await svc.readmodel.read(
        lambda conn: [r[0] for r in conn.execute("SELECT version FROM snapshots ORDER BY 1")]
    )
    assert snapshots == list(range(5, len(events) + 1, 5))
    (chunks,) = await svc.readmodel.read(
        lambda conn: conn.execute("SELECT count(*) FROM snapshot_chunks").fetchone()
    )
    full_copies = sum(-(-v // 4) for v in snapshots)  # what a full copy per snapshot would take
    assert chunks < full_copies / 2


async def test_time_travel_by_time_and_errors(svc: Contexts) -> None:
    events = await write(svc)
    caller = Caller(tenant="t")
    for rec in events[::9]:
        state = await svc.get(caller, "c", at=rec.recorded_at)
        assert state.version >= rec.version
        assert state == fold(events[: state.version], counter=COUNTER)
    with pytest.raises(ContextNotFound):
        await svc.time_travel.state_at_time("c", events[0].recorded_at.replace(year=2000))
    with pytest.raises(InvalidVersion):
        await svc.time_travel.state_at("c", len(events) + 1)
    with pytest.raises(ContextNotFound):
        await svc.time_travel.state_at("nothing", 3)


async def test_diff_between_versions(svc: Contexts) -> None:
    events = await write(svc)
    caller = Caller(tenant="t")
    a, b = 10, len(events)
    expected = diff(fold(events[:a], counter=COUNTER), fold(events, counter=COUNTER))
    assert await svc.diff(caller, "c", a, b) == expected
    assert await svc.diff(caller, "c", a) == expected
