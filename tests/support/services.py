"""A contexts service over a SQLite log, started and closed around a test."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
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
