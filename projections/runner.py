"""The projector: follows the log from the read model's checkpoint and keeps its tables current.

Exactly-once: each batch's rows and the new checkpoint commit in one read-model transaction
(``BEGIN IMMEDIATE`` … ``COMMIT`` in one call on the connection's thread). A crash before the
commit leaves the checkpoint where it was and the batch is applied again on restart; a crash
after leaves both. Nothing is ever applied twice.

Batching: a pump task reads ``store.subscribe(after=checkpoint)`` into a bounded queue; the
apply loop takes everything queued (up to ``batch_size``) as one transaction, so a burst costs
few commits, and a lone append is applied at once.

Per event (see ``readmodel`` for the tables): an append is one ``INSERT OR IGNORE`` (a
duplicate message id is ignored, as the fold does); an edit or redaction one point lookup and
one update; other events touch only the context row, which is read once per batch and written
back once. A rollback or a fork needs a state from elsewhere (the target version, the parent
at the fork point): it is resolved through ``History`` before the transaction, and the
context's message and summary rows are rewritten (O(context), rare). Every ``SNAPSHOT_EVERY``
versions a snapshot is written in the same transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from eventstore import (
    ContextForked,
    ContextRolledBack,
    EventStore,
    MessageAppended,
    RecordedEvent,
)

from .apply import MessageCounter, Resolved, Tokens, apply_sync
from .caches import HeaderCache
from .errors import ProjectionError
from .history import SNAPSHOT_EVERY, History
from .readmodel import ReadModel, bulk_sync, reset_sync
from .search import defer_sync, index_all_sync
from .state import TokenCounting
from .tables import ContextRow
from .tenants import Known

Progress = Callable[[int, int], None]
"""Called with (events done, events in the log) during a rebuild."""
FOLLOWER_BYTES = 32 << 20
"""What the projector's subscription may buffer: more than a client stream's budget, as
falling back to log reads under a burst would slow every append that waits for it."""


class ProjectorFailed(ProjectionError):
    """The projector stopped on an error; the read model holds everything before it."""


class Projector:
    """Keeps a ReadModel current with an EventStore; ``wait_for`` gives read-your-writes."""

    def __init__(
        self,
        store: EventStore,
        readmodel: ReadModel,
        history: History,
        counter: TokenCounting,
        *,
        batch_size: int = 1000,
        snapshot_every: int = SNAPSHOT_EVERY,
        poll_interval: float = 1.0,
        wait_timeout: float = 30.0,
    ) -> None:
        self.store = store
        self.readmodel = readmodel
        self.history = history
        self.counter = counter
        self._counting = MessageCounter(counter)
        self.batch_size = batch_size
        self.snapshot_every = snapshot_every
        self.poll_interval = poll_interval
        self.wait_timeout = wait_timeout
        self.checkpoint = 0
        """The last log position applied (and committed)."""
        self.headers = HeaderCache()
        """The rows of recently touched contexts, as committed."""
        self.tenants = Known()
        """The read model's tenants' slots and last runs, as committed."""
        self.error: BaseException | None = None
        self._task: asyncio.Task[None] | None = None
        self._advanced = asyncio.Event()
        self._waiting = 0
        self._watchdog: asyncio.TimerHandle | None = None

    @property
    def running(self) -> bool:
        """True while the live loop runs."""
        return self._task is not None and not self._task.done()

    async def start(self, checkpoint: int) -> None:
        """Follow the log from ``checkpoint`` (the read model's, from ``ReadModel.open``)."""
        if self.running:
            return
        if checkpoint > await self.store.head():
            # The read model is ahead of this log: it was built from another one.
            await self.readmodel.write(reset_sync, self.counter.encoding)
            self.history.clear_cache()
            self.headers.clear()
            self.tenants.clear()
            checkpoint = 0
        self.checkpoint = checkpoint
        self.error = None
        self._task = asyncio.create_task(self._follow(), name="ctxlog-projector")

    async def stop(self) -> None:
        """Stop following; what was committed stays."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            # A failure is already in self.error (wait_for reports it); stopping is not one.
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._wake()
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None

    async def wait_for(self, position: int) -> None:
        """Return once everything up to ``position`` is applied; ProjectorFailed if the
        projector stopped, TimeoutError after about ``wait_timeout`` seconds.

        No timer per wait: arming and cancelling one cost 4% of an append's throughput
        under load (most appends wait here for the one before them). One shared watchdog
        wakes every waiter each quarter of ``wait_timeout`` while anyone waits, and each
        checks its own deadline.
        """
        if self.checkpoint >= position:
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.wait_timeout
        self._waiting += 1
        if self._watchdog is None or self._watchdog.when() > deadline:
            if self._watchdog is not None:  # armed for a longer wait_timeout than this one's
                self._watchdog.cancel()
            self._watchdog = loop.call_later(self.wait_timeout / 4, self._watch)
        try:
            while self.checkpoint < position:
                if self.error is not None:
                    raise ProjectorFailed(f"the projector stopped: {self.error!r}") from self.error
                if not self.running:
                    raise ProjectorFailed("the projector is not running")
                if loop.time() >= deadline:
                    raise TimeoutError(f"the read model did not reach position {position}")
                await self._advanced.wait()
        finally:
            self._waiting -= 1

    def _watch(self) -> None:
        self._watchdog = None
        if self._waiting:
            self._wake()
            loop = asyncio.get_running_loop()
            self._watchdog = loop.call_later(self.wait_timeout / 4, self._watch)

    async def catch_up(self) -> None:
        """Wait until the read model has everything the log held when called."""
        head = await self.store.head()
        async with asyncio.timeout(None):  # a long catch-up is not a stuck projector
            while self.checkpoint < head:
                await self.wait_for(min(head, self.checkpoint + 1))

    async def rebuild(self, progress: Progress | None = None, *, batch_size: int = 2000) -> int:
        """Replay the whole log into a new read model; returns the events applied.

        The live loop (if running) is stopped for the duration and restarted after. On file,
        the new read model is built beside the old one, which goes on serving reads (as of
        its checkpoint: a read waiting for a newer write waits for the swap), and replaces it
        at the end; in memory, the tables are emptied and refilled in place.
        """
        was_running = self.running
        await self.stop()
        if self.readmodel.on_file:
            target = await self.readmodel.fresh()
            history = History(self.store, target, self.counter)
        else:
            target, history = self.readmodel, self.history
            await target.write(reset_sync, self.counter.encoding)
            self._forget(0)
        try:
            done, through = await self._replay(target, history, progress, batch_size)
            if target is not self.readmodel:
                await self.readmodel.adopt(target)
        except BaseException:
            if target is not self.readmodel:  # the old read model stands: follow on with it
                with contextlib.suppress(Exception):
                    await target.discard()
                if was_running:
                    await self.start(self.checkpoint)
            raise
        self._forget(through)
        if was_running:
            await self.start(self.checkpoint)
        return done

    def _forget(self, checkpoint: int) -> None:
        """The read model was replaced or reset: drop what was cached from it."""
        self.history.clear_cache()
        self.headers.clear()
        self.tenants.clear()
        self.checkpoint = checkpoint
        self._wake()

    async def _replay(
        self, target: ReadModel, history: History, progress: Progress | None, batch_size: int
    ) -> tuple[int, int]:
        """Apply the whole log to ``target`` (empty); returns (events applied, checkpoint)."""
        total = await self.store.head()
        done = through = 0
        # A pipeline of three: while the read model's thread applies page N, the log's
        # reader fetches page N+2 and this thread decodes and tokenizes page N+1 (tiktoken
        # releases the GIL while it encodes).
        reading = asyncio.ensure_future(self.store.read_all(0, batch_size))
        applying: asyncio.Future[None] | None = None
        await target.write(defer_sync)  # a crash before index_all_sync: start over
        await target.write(bulk_sync, True)
        try:
            while True:
                events, through = await reading
                if len(events) == batch_size:
                    reading = asyncio.ensure_future(self.store.read_all(through, batch_size))
                tokens = self.count_batch(events)
                if applying is not None:
                    await applying
                if events:
                    applying = asyncio.ensure_future(
                        self._apply_to(target, history, events, tokens, search=False)
                    )
                    done += len(events)
                if progress is not None:
                    progress(through, max(total, through))
                if len(events) < batch_size:
                    break
            if applying is not None:
                await applying
            await target.write(index_all_sync)
        finally:
            for pending in (reading, applying):
                if pending is not None and not pending.done():
                    pending.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await pending
            await target.write(bulk_sync, False)
        return done, through

    async def apply(
        self, batch: list[RecordedEvent], tokens: Tokens | None = None, *, search: bool = True
    ) -> None:
        """Apply consecutive log events in one transaction with the checkpoint; ``tokens``
        may hold the messages' counts already (``count_batch``)."""
        rows = await self._apply_to(self.readmodel, self.history, batch, tokens, search=search)
        self.headers.put_rows(rows)
        self.checkpoint = batch[-1].position
        self._wake()

    async def _apply_to(
        self,
        target: ReadModel,
        history: History,
        batch: list[RecordedEvent],
        tokens: Tokens | None,
        *,
        search: bool,
    ) -> list[ContextRow]:
        resolved: Resolved = {}
        for rec in batch:
            match rec.event:
                case ContextForked(parent_id=parent, parent_version=at) if rec.version == 1:
                    resolved[parent, at] = await history.state_at(parent, at)
                case ContextRolledBack(to_version=to) if 1 <= to < rec.version:
                    key = (rec.stream_id, to)
                    resolved[key] = await history.state_at(*key)
        known, tenants = None, None
        if target is self.readmodel:  # a rebuild's fresh target has none of these rows
            cached = self.headers.get
            known = {cid: row for rec in batch if (row := cached(cid := rec.stream_id))}
            tenants = self.tenants
        return await target.write(
            apply_sync, batch, resolved, self._counting, self.snapshot_every, tokens or {},
            search, known, tenants,
        )  # fmt: skip

    def count_batch(self, batch: list[RecordedEvent]) -> Tokens:
        """The token counts of the batch's appended messages (what ``apply`` would count)."""
        count = self._counting.count_message
        return {
            rec.position: count(e.role, e.content, e.name)
            for rec in batch
            if isinstance(e := rec.event, MessageAppended)
        }

    def _wake(self) -> None:
        woken, self._advanced = self._advanced, asyncio.Event()
        woken.set()

    async def _follow(self) -> None:
        queue: asyncio.Queue[RecordedEvent] = asyncio.Queue(maxsize=4 * self.batch_size)
        events = self.store.subscribe(
            self.checkpoint, poll_interval=self.poll_interval, max_bytes=FOLLOWER_BYTES
        )

        async def pump() -> None:
            async for rec in events:
                await queue.put(rec)

        pumping = asyncio.create_task(pump(), name="ctxlog-projector-pump")
        try:
            while True:
                await self.apply(await self._next_batch(queue, pumping))
        except asyncio.CancelledError:
            raise
        except BaseException as e:
            self.error = e
            self._wake()
            raise
        finally:
            pumping.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await pumping
            await events.aclose()

    async def _next_batch(
        self, queue: asyncio.Queue[RecordedEvent], pumping: asyncio.Task[None]
    ) -> list[RecordedEvent]:
        """Everything queued (at least one event, at most ``batch_size``)."""
        getting = asyncio.ensure_future(queue.get())
        try:
            await asyncio.wait({getting, pumping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not getting.done():
                getting.cancel()
        if getting.cancelled():
            pumping.result()  # re-raises what stopped the subscription
            raise ProjectorFailed("the subscription ended")
        batch = [getting.result()]
        while len(batch) < self.batch_size and not queue.empty():
            batch.append(queue.get_nowait())
        return batch
