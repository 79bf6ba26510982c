"""Lineage of any depth: a chain of 1,000 forks resolved without recursion by time travel,
by the projector and its rebuild, and by the fresh fold that ``ctxlog verify`` compares with;
a log whose fork names itself is refused rather than looped on."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from eventstore import ContextCreated, ContextForked, EventMetadata, EventStore
from projections import Caller, Contexts, MissingHistory, NewMessage
from projections.audit import Refold, verify_readmodel
from tests.support.factories import COUNTER
from tests.support.services import running_contexts

DEPTH = 1000
ACME = Caller(tenant="acme", actor="ada")


@pytest.fixture
async def svc(tmp_path: Path, readmodel: str) -> AsyncIterator[Contexts]:
    async with running_contexts(str(tmp_path / "log.db"), readmodel, counter=COUNTER) as service:
        yield service


async def _chain(svc: Contexts) -> list[str]:
    """A root with two messages and DEPTH forks, each of the one before at its version 1."""
    root = (await svc.create(ACME)).context_id
    await svc.append(ACME, root, [NewMessage(role="user", content="a")])
    await svc.append(ACME, root, [NewMessage(role="assistant", content="b")])
    chain = [root]
    for _ in range(DEPTH):
        chain.append((await svc.fork(ACME, chain[-1])).context_id)
    return chain


async def test_a_chain_of_forks_is_projected_and_time_travels(svc: Contexts) -> None:
    chain = await _chain(svc)
    deepest = chain[-1]
    await svc.append(ACME, deepest, [NewMessage(role="user", content="c")])
    now = await svc.get(ACME, deepest)
    assert [m.content for m in now.messages] == ["a", "b", "c"]
    assert now.parent is not None
    assert now.parent.context_id == chain[-2]
    expected = await Refold(svc.store, COUNTER).state(deepest, 1)
    assert await svc.get(ACME, deepest, version=1) == expected
    assert len((await svc.lineage(ACME, deepest)).ancestors) == DEPTH


async def test_a_chain_without_fork_snapshots_resolves_iteratively(svc: Contexts) -> None:
    # A read model from before forks had snapshots of their own: every fork's state walks
    # the whole chain back to the root, 1,000 levels, on an explicit stack.
    chain = await _chain(svc)
    await svc.readmodel.write(lambda conn: conn.execute("DELETE FROM snapshots"))
    svc.time_travel.clear_cache()
    state = await svc.time_travel.state_at(chain[-1], 1)
    assert state == await Refold(svc.store, COUNTER).state(chain[-1], 1)
    assert [m.content for m in state.messages] == ["a", "b"]


async def test_a_chain_of_forks_rebuilds_and_verifies(svc: Contexts, tmp_path: Path) -> None:
    chain = await _chain(svc)
    # One rebuild page holds the whole chain: the forks resolve through one shared memo.
    assert await svc.rebuild() == 3 + DEPTH
    assert [m.content for m in (await svc.get(ACME, chain[-1])).messages] == ["a", "b"]
    model = svc.readmodel if svc.readmodel.shared else str(tmp_path / "log.db.readmodel")
    report = await verify_readmodel(svc.store, model, COUNTER)
    assert report.status == "ok", report
    assert report.contexts == DEPTH + 1


async def test_a_fork_of_itself_is_refused_not_looped_on(tmp_path: Path) -> None:
    store = await EventStore.open_sqlite(":memory:")
    try:
        meta = EventMetadata(tenant="acme")
        loop = ContextForked(parent_id="loop", parent_version=1)
        await store.append("loop", [loop], metadata=meta)
        await store.append("fine", [ContextCreated()], metadata=meta)
        refold = Refold(store, COUNTER)
        with pytest.raises(MissingHistory, match="needs itself"):
            await refold.state("loop")
        assert (await refold.state("fine")).version == 1
    finally:
        await store.close()
