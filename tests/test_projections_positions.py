"""Each tenant's events numbered 1, 2, 3, … in log order (``projections.positions``), kept as
runs of consecutive log positions: every lookup agrees with counting, however the tenants'
events interleave, live, after a batch applied twice, and after a rebuild."""

from __future__ import annotations

import random
import sqlite3
from pathlib import Path

from eventstore import ContextCreated, EventMetadata, EventStore, MessageAppended
from projections import Contexts
from projections.positions import Numbering, number_upto_sync, numbers_sync, position_sync
from projections.tenants import Known, Slots

TENANTS = ["a", "b", "c", None]


async def write_interleaved(store: EventStore, seed: int) -> list[str | None]:
    """Events of random tenants in random bursts (a burst: one append, consecutive
    positions); the tenant of each log position, in order."""
    rng = random.Random(seed)
    tenants: list[str | None] = []
    for tenant in TENANTS:
        await store.append(f"c-{tenant}", [ContextCreated()], metadata=EventMetadata(tenant=tenant))
        tenants.append(tenant)
    for i in range(120):
        tenant = rng.choice(TENANTS)
        burst = rng.choice([1, 1, 1, 2, 5])
        events = [
            MessageAppended(message_id=f"m{i}-{j}", role="user", content="x") for j in range(burst)
        ]
        await store.append(f"c-{tenant}", events, metadata=EventMetadata(tenant=tenant))
        tenants += [tenant] * burst
    return tenants


def check_numbering(conn: sqlite3.Connection, tenants: list[str | None]) -> None:
    for tenant in TENANTS[:3]:
        assert tenant is not None  # the named ones
        mine = [p for p, t in enumerate(tenants, 1) if t == tenant]
        numbers = numbers_sync(conn, tenant, [*mine, *(p for p in range(1, len(tenants) + 1))])
        assert numbers == {p: n for n, p in enumerate(mine, 1)}  # nobody else's positions
        assert [position_sync(conn, tenant, n) for n in range(len(mine) + 2)] == [0, *mine, None]
        for p in range(len(tenants) + 2):
            assert number_upto_sync(conn, tenant, p) == sum(1 for q in mine if q <= p)


async def test_numbers_agree_with_counting_live_reapplied_and_rebuilt(tmp_path: Path) -> None:
    store = await EventStore.open_sqlite(str(tmp_path / "log.db"))
    svc = Contexts(store, batch_size=7)  # small batches: runs cross batch boundaries
    await svc.start()
    try:
        tenants = await write_interleaved(store, 5)
        await svc.projector.catch_up()
        await svc.readmodel.read(check_numbering, tenants)

        def number_again(conn: sqlite3.Connection, first: int, last: int) -> None:
            # What a batch applied again does (a projector stopped after its commit).
            known = Known()  # nothing known: what a restarted projector knows
            numbering = Numbering(conn, Slots(conn, known), known)
            for position in range(first, last + 1):
                numbering.note(tenants[position - 1], position)
            numbering.write()

        await svc.readmodel.write(number_again, 42, 61)  # 42: inside a run
        await svc.readmodel.read(check_numbering, tenants)
        await svc.rebuild()
        await svc.readmodel.read(check_numbering, tenants)
    finally:
        await svc.close()
        await store.close()


async def test_one_tenant_is_one_run(tmp_path: Path) -> None:
    store = await EventStore.open_sqlite(str(tmp_path / "log.db"))
    svc = Contexts(store, batch_size=10)
    await svc.start()
    try:
        meta = EventMetadata(tenant="solo")
        await store.append("s", [ContextCreated()], metadata=meta)
        for i in range(50):
            await store.append(
                "s", [MessageAppended(message_id=f"m{i}", role="user", content="x")], metadata=meta
            )
        await svc.projector.catch_up()

        def runs(conn: sqlite3.Connection) -> list[tuple[int, int, int]]:
            return conn.execute("SELECT position, number, length FROM tenant_runs").fetchall()

        assert await svc.readmodel.read(runs) == [(1, 1, 51)]
        await svc.rebuild()
        assert await svc.readmodel.read(runs) == [(1, 1, 51)]
    finally:
        await svc.close()
        await store.close()
