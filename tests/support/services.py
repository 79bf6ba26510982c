"""A contexts service over a SQLite log (or a PostgreSQL one with its shared read model),
started and closed around a test."""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from eventstore import EventStore
from projections import Contexts

READMODELS = ("sqlite", "postgres")
"""The read models the projections' tests run on: SQLite (this node's file or memory) and
PostgreSQL (shared, beside a PostgreSQL log; only when CTXLOG_TEST_PG_DSN is set)."""


async def open_log(path: str, readmodel: str = "sqlite") -> EventStore:
    """A SQLite log at ``path``, or for ``readmodel="postgres"`` a PostgreSQL log in a schema
    of its own (dropped at close, with its read model's)."""
    if readmodel == "sqlite":
        return await EventStore.open_sqlite(path)
    from eventstore.postgres import PostgresRecorder

    dsn = os.environ["CTXLOG_TEST_PG_DSN"]
    recorder = PostgresRecorder(dsn, schema="t_" + os.urandom(6).hex(), drop_schema_on_close=True)
    store = EventStore(recorder)
    await store.open()
    return store


@contextlib.asynccontextmanager
async def running_contexts(
    path: str = ":memory:", readmodel: str = "sqlite", **kwargs: Any
) -> AsyncIterator[Contexts]:
    """A started ``Contexts(store, **kwargs)`` on the log at ``path`` (``open_log``); both
    closed after."""
    store = await open_log(path, readmodel)
    service = Contexts(store, **kwargs)
    await service.start()
    try:
        yield service
    finally:
        await service.close()
        await store.close()


@contextlib.asynccontextmanager
async def services_on_one_log(
    directory: Path, count: int = 2, **kwargs: Any
) -> AsyncIterator[list[Contexts]]:
    """``count`` started services on one SQLite log in ``directory``, each with a store and
    a read model file of its own (``rm0``, ``rm1``, …), as separate processes would have."""
    db = str(directory / "log.db")
    stores = [await EventStore.open_sqlite(db) for _ in range(count)]
    services = [
        Contexts(store, readmodel_path=str(directory / f"rm{i}"), **kwargs)
        for i, store in enumerate(stores)
    ]
    async with started(stores, services):
        yield services


@contextlib.asynccontextmanager
async def started(stores: list[EventStore], services: list[Contexts]) -> AsyncIterator[None]:
    """Start each service (on its open store), in order; close them all after, the services
    first, then the stores."""
    try:
        for service in services:
            await service.start()
        yield
    finally:
        for service in services:
            await service.close()
        for store in stores:
            await store.close()
