"""Read-your-writes across processes on one log (``Contexts.reach``): a read that names a
version this read model has not applied waits for it, bounded, then says to try again; a
version the log does not hold is not waited for."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from eventstore import EventStore
from projections import ProjectorBehind
from projections.calls import Caller, NewMessage
from projections.errors import ContextNotFound, InvalidVersion
from projections.service import Contexts

ALICE = Caller(tenant="acme", actor="alice")
NEVER = 3600.0
"""B's poll interval: on SQLite only a poll shows it A's writes."""


@pytest.fixture
async def pair(tmp_path: Path) -> AsyncIterator[tuple[Contexts, Contexts]]:
    """Two services on one SQLite log, each with its own read model, as two processes."""
    db = str(tmp_path / "log.db")
    store_a = await EventStore.open_sqlite(db)
    store_b = await EventStore.open_sqlite(db)
    a = Contexts(store_a)
    b = Contexts(store_b, readmodel_path=":memory:", poll_interval=NEVER, min_version_wait=0.2)
    await a.start()
    await b.start()
    try:
        yield a, b
    finally:
        await b.close()
        await a.close()
        await store_b.close()
        await store_a.close()


async def test_a_version_not_applied_yet_is_refused_after_the_wait(
    pair: tuple[Contexts, Contexts],
) -> None:
    a, b = pair
    written = await a.create(ALICE)
    with pytest.raises(ProjectorBehind) as raised:
        await b.reach(ALICE, written.context_id, written.version)
    assert raised.value.retry_after >= 1
    await b.reach(ALICE, written.context_id, None)  # no version asked: no wait


async def test_a_version_applied_is_answered_at_once(pair: tuple[Contexts, Contexts]) -> None:
    a, b = pair
    written = await a.create(ALICE)
    b.projector.poll_interval = 0.01
    await b.projector.stop()
    await b.projector.start(b.projector.checkpoint)
    b.min_version_wait = 30
    await b.reach(ALICE, written.context_id, written.version)
    state = await b.get(ALICE, written.context_id)
    assert state.version == written.version


async def test_a_version_the_log_does_not_hold_is_not_waited_for(
    pair: tuple[Contexts, Contexts],
) -> None:
    a, _ = pair
    written = await a.create(ALICE)
    appended = await a.append(ALICE, written.context_id, [NewMessage(role="user", content="x")])
    with pytest.raises(InvalidVersion) as raised:
        await a.reach(ALICE, written.context_id, appended.version + 1)
    assert raised.value.current == appended.version
    with pytest.raises(ContextNotFound):  # another tenant's context
        await a.reach(Caller(tenant="other"), written.context_id, appended.version + 1)


async def test_a_context_created_elsewhere_is_waited_for_not_reported_missing(
    pair: tuple[Contexts, Contexts],
) -> None:
    a, b = pair
    written = await a.create(ALICE)
    # B's projector has not seen it (it polls hourly): behind, not "not found".
    with pytest.raises(ProjectorBehind):
        await b.get(ALICE, written.context_id)
    b.projector.poll_interval = 0.01
    await b.projector.stop()
    await b.projector.start(b.projector.checkpoint)
    b.min_version_wait = 30
    appended = await b.append(ALICE, written.context_id, [NewMessage(role="user", content="x")])
    assert appended.version == written.version + 1
    with pytest.raises(ContextNotFound):  # still not found where nothing was created
        await b.get(ALICE, "01a242de-c87f-7929-abe6-d96d36d99a0b")


async def test_a_context_applied_while_the_log_is_looked_at_is_found(
    pair: tuple[Contexts, Contexts], monkeypatch: pytest.MonkeyPatch
) -> None:
    """B reads no row (not applied yet), looks in the log, and its projector applies the
    creation meanwhile: the row is read again, not reported missing (it was, once in six
    runs, between two PostgreSQL nodes)."""
    a, b = pair
    written = await a.create(ALICE)
    b.projector.poll_interval = 0.01
    real = b.store.recorder.read_stream

    async def applied_meanwhile(*args: object) -> object:
        await b.projector.stop()
        await b.projector.start(b.projector.checkpoint)
        await b.projector.catch_up()  # the creation is applied during the look
        return await real(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(b.store.recorder, "read_stream", applied_meanwhile)
    appended = await b.append(ALICE, written.context_id, [NewMessage(role="user", content="x")])
    assert appended.version == written.version + 1
