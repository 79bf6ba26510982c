"""A read model file shared by two processes on one log (two ``ctxlog serve``, or ``ctxlog
erase`` beside a server): each has its own projector, and every event is applied once."""

from __future__ import annotations

from pathlib import Path

from eventstore import EventStore
from projections import Caller, Contexts, NewMessage, TokenCounter
from projections.audit import verify_readmodel

ME = Caller(tenant=None, actor="me")


async def test_two_projectors_on_one_read_model_apply_each_event_once(tmp_path: Path) -> None:
    db = str(tmp_path / "log.db")
    stores = [await EventStore.open_sqlite(db) for _ in range(2)]
    services = [Contexts(store, poll_interval=0.05) for store in stores]
    try:
        for service in services:
            await service.start()
        a, b = services
        cid = (await a.create(ME)).context_id
        for i in range(6):  # writes through both, each waiting on its own projector
            writer = services[i % 2]
            await writer.projector.catch_up()
            await writer.append(ME, cid, [NewMessage(role="user", content=f"message {i}")])
        first = (await b.get(ME, cid)).messages[0].message_id
        await b.add_summary(ME, cid, "the first message", first)
        await a.projector.catch_up()
        await a.edit(ME, cid, first, "the first message, edited")
        for service in services:
            await service.projector.catch_up()
        states = [await service.get(ME, cid) for service in services]
        for state in states:
            assert [s.text for s in state.summaries] == ["the first message"]
            assert len(state.messages) == 6
            assert state.messages[0].content == "the first message, edited"
        report = await verify_readmodel(stores[0], db + ".readmodel", TokenCounter())
        assert report.ok, report
    finally:
        for service in services:
            await service.close()
        for store in stores:
            await store.close()
