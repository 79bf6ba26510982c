"""Commits announced across processes (PostgreSQL LISTEN/NOTIFY): a follower on one store sees
another store's appends without waiting for its poll, and a lost listening connection is
replaced, with a log read for whatever was announced meanwhile."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator

import pytest

from eventstore import ContextCreated, EventStore, MessageAppended, RecordedEvent
from tests.conftest import PG_DSN

pytestmark = pytest.mark.skipif(
    not PG_DSN, reason="PostgreSQL tests run when CTXLOG_TEST_PG_DSN is set (.ci/run sets it)"
)

NEVER = 3600.0
"""A poll interval no test waits for: what arrives, arrived through an announcement."""


@pytest.fixture
async def pair() -> AsyncIterator[tuple[EventStore, EventStore]]:
    """Two stores on one fresh schema, as two nodes would open it."""
    from eventstore.postgres import PostgresRecorder

    assert PG_DSN
    schema = "t_notify_" + os.urandom(5).hex()
    a = EventStore(PostgresRecorder(PG_DSN, schema=schema, drop_schema_on_close=True))
    b = EventStore(PostgresRecorder(PG_DSN, schema=schema))
    await a.open()
    await b.open()
    try:
        yield a, b
    finally:
        await b.close()
        await a.close()


async def _next(events: AsyncIterator[RecordedEvent]) -> RecordedEvent:
    async with asyncio.timeout(30):  # a hang guard, far below the poll interval
        return await anext(events)


async def test_a_follower_sees_another_stores_append_at_once(
    pair: tuple[EventStore, EventStore],
) -> None:
    a, b = pair
    assert b.listening
    events = b.subscribe(0, poll_interval=NEVER)
    async with contextlib.aclosing(events):
        await a.append("s1", [ContextCreated()])
        assert (await _next(events)).stream_id == "s1"
        # Live (the follower is now waiting on its feed, not reading a first page).
        await a.append("s2", [ContextCreated()])
        await a.append("s2", [MessageAppended(message_id="m", role="user", content="hi")])
        got = [await _next(events), await _next(events)]
    assert [(rec.stream_id, rec.version) for rec in got] == [("s2", 1), ("s2", 2)]


async def test_own_and_others_commits_interleave_in_log_order(
    pair: tuple[EventStore, EventStore],
) -> None:
    a, b = pair
    events = b.subscribe(0, poll_interval=NEVER)
    async with contextlib.aclosing(events):
        await b.append("s0", [ContextCreated()])
        got = [await _next(events)]
        for n in range(1, 6):
            await (a if n % 2 else b).append(f"s{n}", [ContextCreated()])
            got.append(await _next(events))
    assert [rec.position for rec in got] == [1, 2, 3, 4, 5, 6]


async def test_a_lost_listening_connection_is_replaced_and_the_log_read(
    pair: tuple[EventStore, EventStore],
) -> None:
    import asyncpg

    a, b = pair
    recorder = b.recorder
    events = b.subscribe(0, poll_interval=NEVER)
    async with contextlib.aclosing(events):
        await a.append("s1", [ContextCreated()])
        await _next(events)
        # The server ends the listening session, as a failover or an idle timeout would.
        listener = recorder._listener  # type: ignore[attr-defined]
        assert listener is not None
        conn = await asyncpg.connect(PG_DSN)
        try:
            await conn.execute("SELECT pg_terminate_backend($1)", listener.get_server_pid())
        finally:
            await conn.close()
        # Announced while nobody listened: found by the log read after reconnecting.
        await a.append("s2", [ContextCreated()])
        assert (await _next(events)).stream_id == "s2"
        await a.append("s3", [ContextCreated()])
        assert (await _next(events)).stream_id == "s3"
