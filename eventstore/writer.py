"""The single writer: concurrent appends queue here and commit together (group commit)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

from .errors import EventStoreError, StoreClosed
from .observe import NO_OBSERVER, StoreObserver
from .recorder import AppendOutcome, PendingAppend, Recorder, StoredEvent

_Item = tuple[PendingAppend, "asyncio.Future[AppendOutcome]"]


class Writer:
    """One task that owns the recorder's write side.

    While a batch commits, new appends wait in the queue; the next batch takes all of them
    (up to ``max_batch_events``), so under concurrency many appends share one transaction and
    one fsync. Each caller is resolved on its own: a conflict fails only its own append. A
    future is resolved only after the commit returned, so an acknowledged append is durable.
    """

    def __init__(
        self,
        recorder: Recorder,
        on_commit: Callable[[list[StoredEvent]], None],
        *,
        max_batch_events: int = 4096,
    ) -> None:
        self._recorder = recorder
        self._on_commit = on_commit
        self._max_batch_events = max_batch_events
        self._queue: asyncio.Queue[_Item | None] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self.batches = 0
        """How many transactions were committed (for tests and benchmarks)."""
        self.observer: StoreObserver = NO_OBSERVER
        """Told about each commit (``observe``)."""

    def start(self) -> None:
        """Start the writer task on the running loop."""
        self._task = asyncio.create_task(self._run(), name="ctxlog-writer")

    async def submit(self, append: PendingAppend) -> AppendOutcome:
        """Queue an append and wait until it is committed (or refused)."""
        if self._closing or self._task is None:
            raise StoreClosed("the store is closed")
        future: asyncio.Future[AppendOutcome] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((append, future))
        return await future

    async def close(self) -> None:
        """Stop taking appends, commit everything already queued, then stop."""
        if self._task is None:
            return
        self._closing = True
        self._queue.put_nowait(None)
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None

    async def _run(self) -> None:
        while True:
            item = await self._queue.get()
            if item is None:
                return
            batch = [item]
            events = len(item[0].events)
            stop = False
            while events < self._max_batch_events and not self._queue.empty():
                nxt = self._queue.get_nowait()
                if nxt is None:
                    stop = True
                    break
                batch.append(nxt)
                events += len(nxt[0].events)
            await self._commit(batch)
            if stop:
                return

    async def _commit(self, batch: list[_Item]) -> None:
        started_ns = time.time_ns()
        start = time.perf_counter()
        try:
            outcomes = await self._recorder.commit(
                [append for append, _ in batch], started_ns // 1000
            )
        except Exception as e:  # the store's own errors, or a bug: fail the callers, keep writing
            for _, future in batch:
                if not future.done():
                    future.set_exception(e)
            return
        seconds = time.perf_counter() - start
        self.batches += 1
        committed: list[StoredEvent] = []
        appends = 0
        for (_, future), outcome in zip(batch, outcomes, strict=True):
            if isinstance(outcome, EventStoreError):
                if not future.done():
                    future.set_exception(outcome)
                continue
            if not outcome.duplicate:
                committed.extend(outcome.events)
                appends += 1
            if not future.done():
                future.set_result(outcome)
        if committed:
            self._on_commit(committed)
        if self.observer is not NO_OBSERVER:
            nbytes = sum(len(row.data) + len(row.metadata) for row in committed)
            self.observer.committed(
                appends, len(committed), nbytes, started_ns, seconds, self._recorder.last_sync
            )
