"""An id-prefix look-up on PostgreSQL (``ctxlog show 3f2a``) reads the ids with that prefix in
an index, not every stream's first event: its cost follows the answer, not the log."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import asyncpg
import pytest

from eventstore import ContextCreated, EventStore
from eventstore.recorder import prefix_range
from tests.conftest import PG_DSN

pytestmark = pytest.mark.skipif(
    not PG_DSN, reason="PostgreSQL tests run when CTXLOG_TEST_PG_DSN is set (.ci/run sets it)"
)


@pytest.fixture
async def store() -> AsyncIterator[tuple[EventStore, str]]:
    from eventstore.postgres import PostgresRecorder

    assert PG_DSN
    schema = "t_prefix_" + os.urandom(5).hex()
    store = EventStore(PostgresRecorder(PG_DSN, schema=schema, drop_schema_on_close=True))
    await store.open()
    try:
        yield store, schema
    finally:
        await store.close()


async def test_a_prefix_look_up_is_a_range_of_the_stream_ids_index(
    store: tuple[EventStore, str],
) -> None:
    from eventstore.postgres import SELECT_STREAMS_STARTING

    events, schema = store
    for n in range(200):
        await events.append(f"{n:03d}-{n % 7}", [ContextCreated()])
    assert await events.streams_starting_with("12") == [f"12{n}-{(120 + n) % 7}" for n in range(10)]
    assert PG_DSN
    conn = await asyncpg.connect(PG_DSN)
    try:
        await conn.execute("SET enable_seqscan = off")  # a table this small would be scanned
        sql = SELECT_STREAMS_STARTING.format(schema=f'"{schema}"')
        plan = "\n".join(
            row[0] for row in await conn.fetch(f"EXPLAIN {sql}", *prefix_range("12"), 10)
        )
    finally:
        await conn.close()
    assert "Index Only Scan using events_stream_ids" in plan, plan
    assert "Index Cond" in plan, plan
    assert "Sort" not in plan, plan  # the index's order is the answer's


async def test_an_existing_log_gains_the_index_when_it_is_opened(
    store: tuple[EventStore, str],
) -> None:
    from eventstore.postgres import PostgresRecorder

    events, schema = store
    await events.append("s1", [ContextCreated()])
    assert PG_DSN
    conn = await asyncpg.connect(PG_DSN)
    try:
        await conn.execute(f'DROP INDEX "{schema}".events_stream_ids')  # as a log made before
        again = EventStore(PostgresRecorder(PG_DSN, schema=schema))
        await again.open()
        try:
            assert await again.streams_starting_with("s") == ["s1"]
        finally:
            await again.close()
        found = await conn.fetchval(
            "SELECT count(*) FROM pg_indexes WHERE schemaname = $1 AND indexname = $2",
            schema, "events_stream_ids",
        )  # fmt: skip
    finally:
        await conn.close()
    assert found == 1
