"""The contexts service: the one object the API (REST, WebSocket, MCP) and the CLI call.

Commands validate against the read model (cheap point lookups, never a whole history) and
append events with an expected version; they answer once the log has the events, and
whatever reads that context from the read model next waits for the projector to have
applied them (``Contexts._settle``), so a caller reads its own writes. Queries read the
read model (current state, windows: O(window)) or history (snapshots + at most K events
folded).

Every method takes the caller's ``tenant``: a context of another tenant reads as not found.
"""

from __future__ import annotations

import asyncio
import contextlib

from .caches import WindowCache
from .calls import (
    Caller,
    ContextPage,
    ContextSize,
    Lineage,
    MessagePage,
    NewMessage,
    Whole,
    Written,
)
from .checkpoints import Checkpoints
from .collector import fewer_collections
from .erasure import Erasure
from .queries import Queries

__all__ = [
    "Caller",
    "ContextPage",
    "ContextSize",
    "Contexts",
    "Lineage",
    "MessagePage",
    "NewMessage",
    "Whole",
    "Written",
]


class Contexts(Checkpoints, Queries, Erasure):
    """Commands and queries over contexts, on one event store and its read model
    (``commands``: idempotency keys and expected versions; ``checkpoints``: a framework's
    state on a context; ``queries``; ``erasure``).

    The read model is ``readmodel_path`` (default: ``<log>.readmodel`` beside a SQLite log
    file, else ``:memory:``, rebuilt from the log at each start). ``window_cache`` windows are
    kept by the version they were computed at (0: compute every window).
    """

    async def start(self, *, patient: bool = False) -> None:
        """Open the read model and catch the projector up to the head of the log; on a
        projector error ProjectorBehind, or when ``patient`` (a server), wait while it
        retries (its ``health`` says why)."""
        checkpoint = await self.readmodel.open(self.counter.encoding)
        with fewer_collections():  # the live loop replays what the log holds (collector.py)
            await self.projector.start(checkpoint)
            await self.projector.catch_up(patient=patient)
        await self.projector.reconcile()  # keys destroyed while this read model was closed
        self._ready = True

    async def close(self) -> None:
        """Let the projector apply what was acknowledged, then stop it and close the read
        model (stopping it mid-batch would only make the next start apply that batch again)."""
        self._ready = False
        if self.projector.running:
            with contextlib.suppress(Exception):  # a failed or stuck projector: stop anyway
                async with asyncio.timeout(self.projector.wait_timeout):
                    await self._settle()
        await self.projector.stop()
        await self.readmodel.close()

    @property
    def window_cache(self) -> WindowCache:
        """The windows kept by the version they were computed at (``hits``, ``misses``)."""
        return self._windows

    @property
    def ready(self) -> bool:
        """True once the projector caught up at start (``/healthz`` says ``starting`` before)."""
        return self._ready and self.projector.running
