"""Two services on one PostgreSQL log share its read model: one of them (elected) applies the
log, the other trails the checkpoint and serves the same state; when the projector goes,
the other takes over from the checkpoint."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable

import pytest

from eventstore import EventStore
from projections import Caller, Contexts, NewMessage, TokenCounter
from projections.audit import verify_readmodel
from tests.conftest import PG_DSN
from tests.support.services import started

pytestmark = pytest.mark.skipif(
    not PG_DSN, reason="PostgreSQL tests run when CTXLOG_TEST_PG_DSN is set (.ci/run sets it)"
)

ME = Caller(tenant="acme", actor="me")


@pytest.fixture
async def pair() -> AsyncIterator[list[Contexts]]:
    """Two started services on one fresh PostgreSQL log (the second started second)."""
    from eventstore.postgres import PostgresRecorder

    assert PG_DSN
    schema = "t_share_" + os.urandom(5).hex()
    stores = [
        EventStore(PostgresRecorder(PG_DSN, schema=schema, drop_schema_on_close=last))
        for last in (False, True)
    ]
    services = [Contexts(store, poll_interval=0.05) for store in stores]
    for store in stores:
        await store.open()
    async with started(stores, services):
        yield services


async def until(condition: Callable[[], bool], within: float = 30.0) -> None:
    """Return once ``condition()`` holds (checked every 50 ms, for up to ``within`` s)."""
    async with asyncio.timeout(within):
        while not condition():  # noqa: ASYNC110 (a state of another task, polled)
            await asyncio.sleep(0.05)


async def test_one_service_applies_and_the_other_serves_what_it_applied(
    pair: list[Contexts],
) -> None:
    a, b = pair
    await until(lambda: a.projector.applying)  # the first to ask
    assert not b.projector.applying
    cid = (await b.create(ME)).context_id
    for i in range(6):  # writes through both; each reads its own back
        writer = pair[i % 2]
        await writer.append(ME, cid, [NewMessage(role="user", content=f"message {i}")])
        assert (await writer.get(ME, cid)).messages[-1].content == f"message {i}"
    first = (await b.get(ME, cid)).messages[0].message_id
    await b.add_summary(ME, cid, "the first message", first)
    await b.edit(ME, cid, first, "the first message, edited")
    await a.projector.catch_up()
    await b.projector.catch_up()
    for service in pair:
        state = await service.get(ME, cid)
        assert state.version == 9
        assert state.messages[0].content == "the first message, edited"
        assert [s.text for s in state.summaries] == ["the first message"]
        assert (await service.search(ME, "edited")).hits
    assert b.projector.applied == 0
    assert a.projector.applied == 9
    report = await verify_readmodel(b.store, b.readmodel, TokenCounter())
    assert report.status == "ok", report


async def test_when_the_projector_stops_the_other_takes_over_from_the_checkpoint(
    pair: list[Contexts],
) -> None:
    a, b = pair
    cid = (await a.create(ME)).context_id
    await a.append(ME, cid, [NewMessage(role="user", content="before")])
    await a.close()  # its session ends: the duty is free
    await a.store.close()
    await until(lambda: b.projector.applying)
    await b.append(ME, cid, [NewMessage(role="user", content="after")])
    state = await b.get(ME, cid)
    assert [m.content for m in state.messages] == ["before", "after"]
    assert b.projector.applied == 1  # only what came after: nothing applied twice
    report = await verify_readmodel(b.store, b.readmodel, TokenCounter())
    assert report.status == "ok", report


async def test_an_erasure_through_the_trailing_service_reaches_both(
    pair: list[Contexts],
) -> None:
    a, b = pair
    await until(lambda: a.projector.applying)
    ada = Caller(tenant="acme", actor="ada")
    cid = (await b.create(ada, metadata={"subject": "ada"})).context_id
    await b.append(ada, cid, [NewMessage(role="user", content="ada's secret")])
    await a.projector.catch_up()
    for service in pair:  # each caches the window and the whole context
        assert "secret" in str(await service.window(ada, cid, max_tokens=500))
        assert "secret" in str(await service.get(ada, cid))
    await b.erase(ada, "ada")
    await a.projector.catch_up()
    for service in pair:
        assert "secret" not in str(await service.window(ada, cid, max_tokens=500))
        assert "secret" not in str(await service.get(ada, cid))
        assert not (await service.search(ada, "secret")).hits
    assert b.projector.applied == 0
