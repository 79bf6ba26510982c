"""One process leads a duty for every process on a PostgreSQL log (``Recorder.lead``): a
session-level advisory lock, free again when its session ends, then taken by another."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator

import pytest

from eventstore import EventStore
from tests.conftest import PG_DSN

pytestmark = pytest.mark.skipif(
    not PG_DSN, reason="PostgreSQL tests run when CTXLOG_TEST_PG_DSN is set (.ci/run sets it)"
)


async def _open(schema: str, *, drop: bool = False) -> EventStore:
    from eventstore.postgres import PostgresRecorder

    assert PG_DSN
    store = EventStore(PostgresRecorder(PG_DSN, schema=schema, drop_schema_on_close=drop))
    await store.open()
    return store


async def _takes(store: EventStore, duty: str) -> bool:
    """Whether ``store`` takes ``duty`` once the server has ended the old leader's session
    (it does so a moment after the connection is gone)."""
    for _ in range(600):
        if await store.recorder.lead(duty):
            return True
        await asyncio.sleep(0.05)
    return False


@pytest.fixture
async def schema() -> AsyncIterator[str]:
    name = "t_lead_" + os.urandom(5).hex()
    keeper = await _open(name, drop=True)  # drops the schema when the test is done
    try:
        yield name
    finally:
        await keeper.close()


async def test_one_process_leads_each_duty(schema: str) -> None:
    a, b = await _open(schema), await _open(schema)
    try:
        assert await a.recorder.lead("retention")
        assert await a.recorder.lead("retention")  # held, not taken twice
        assert not await b.recorder.lead("retention")
        assert await b.recorder.lead("projector")  # another duty is another lock
        assert not await a.recorder.lead("projector")
    finally:
        await a.close()
        await b.close()


async def test_a_duty_passes_on_when_its_leader_closes(schema: str) -> None:
    a, b = await _open(schema), await _open(schema)
    try:
        assert await a.recorder.lead("retention")
        assert not await b.recorder.lead("retention")
        await a.close()
        assert await _takes(b, "retention")
    finally:
        await b.close()


async def test_a_duty_passes_on_when_its_leaders_session_is_cut(schema: str) -> None:
    import asyncpg

    a, b = await _open(schema), await _open(schema)
    try:
        assert await a.recorder.lead("retention")
        listener = a.recorder._listener  # type: ignore[attr-defined]
        conn = await asyncpg.connect(PG_DSN)
        try:
            await conn.execute("SELECT pg_terminate_backend($1)", listener.get_server_pid())
        finally:
            await conn.close()
        assert await _takes(b, "retention")
        assert not await a.recorder.lead("retention")  # whether reconnected yet or not
    finally:
        await a.close()
        await b.close()
