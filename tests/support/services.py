"""A contexts service over a SQLite log, started and closed around a test."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from eventstore import EventStore
from projections import Contexts


@contextlib.asynccontextmanager
async def running_contexts(path: str = ":memory:", **kwargs: Any) -> AsyncIterator[Contexts]:
    """A started ``Contexts(store, **kwargs)`` on the log at ``path``; both closed after."""
    store = await EventStore.open_sqlite(path)
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
    try:
        for service in services:
            await service.start()
        yield services
    finally:
        for service in services:
            await service.close()
        for store in stores:
            await store.close()
