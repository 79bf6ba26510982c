"""The projector: follows the log from the read model's checkpoint and keeps its tables current.

Exactly-once: each batch's rows and the new checkpoint commit in one read-model transaction
(``BEGIN IMMEDIATE`` … ``COMMIT`` in one call on the connection's thread). A crash before the
commit leaves the checkpoint where it was and the batch is applied again on restart; a crash
after leaves both. Nothing is ever applied twice.

Batching: a pump task reads ``store.subscribe(after=checkpoint)`` into a bounded queue; the
apply loop takes everything queued (up to ``batch_size``) as one transaction, so a burst costs
few commits, and a lone append is applied at once. A projector more than ``COUNT_AWAY`` events
behind (a node that was down a while) first catches up a page at a time, each page's tokens
counted in a second process while the page before is applied, as a replay does
(``_catch_up``), then follows.

Errors: a batch that fails rolls back whole, and the projector tries again from its
checkpoint after a bounded exponential backoff (``retry``), logging once when it falls
behind and once when it recovers, never once per attempt. Meanwhile ``health`` says
``behind`` or ``failed`` with the reason, and a wait for a position it has not reached
raises ProjectorBehind at once (the API answers 503 with Retry-After) instead of hanging.

Per event (see ``readmodel`` for the tables): an append is one ``INSERT OR IGNORE`` (a
duplicate message id is ignored, as the fold does); an edit or redaction one point lookup and
one update; other events touch only the context row, which is read once per batch and written
back once. A rollback or a fork needs a state from elsewhere (the target version, the parent
at the fork point): it is resolved through ``History`` before the transaction, and the
context's message and summary rows are rewritten (O(context), rare). Every ``SNAPSHOT_EVERY``
versions, and at a fork's version 1, a snapshot is written in the same transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

from eventstore import (
    ContextForked,
    ContextRolledBack,
    EventStore,
    RecordedEvent,
    SubjectErased,
)

from .apply import (
    Applied,
    DuplicateAppend,
    MessageCounter,
    Resolved,
    Tokens,
    apply_sync,
    refold_sync,
)
from .caches import HeaderCache
from .collector import fewer_collections
from .counting import Counting
from .errors import (
    ProjectionError,
    ProjectorBehind,
    ProjectorElsewhere,
    ReadModelBehind,
    ReadModelInUse,
)
from .history import SNAPSHOT_EVERY, History
from .readmodel import Model, ReadModel, bulk_sync
from .retry import OK, Backoff, Health, health
from .search import defer_sync, index_all_sync
from .sharing import LEAD, Sharing
from .shredding import (
    erased_at_sync,
    forgotten_sync,
    holding_sync,
    not_forgotten_sync,
    unsettled_sync,
)
from .state import TokenCounting
from .tenants import Known

log = logging.getLogger("ctxlog.projector")

Progress = Callable[[int, int], None]
"""Called with (events done, events in the log) during a rebuild."""
FOLLOWER_BYTES = 32 << 20
"""What the projector's subscription may buffer: more than a client stream's budget, as
falling back to log reads under a burst would slow every append that waits for it."""
MIN_WATCH = 0.01
"""Seconds between the watchdog's wake-ups at least, however short a wait."""
FIRST_BUILD = 10_000
"""Events in the log past which a projector starting with an empty read model builds it as
a rebuild does (``_replay``: appends inserted together, the search index at the end) before
it follows the log: in place where it may (``Projector._builds_in_place``), else in a new
file swapped in (``Projector._first_build_beside``)."""
REPLAY_BATCH = 2000
"""Events per transaction of a replay."""
COUNT_AWAY = 20_000
"""Events in the log (a replay), or behind its head (a projector's catch-up), past which
tokens are counted in a second process (``counting``): fewer are applied about as soon as
that process would be ready."""


class ProjectorFailed(ProjectionError):
    """The projector stopped on an error; the read model holds everything before it."""


class Projector(Sharing):
    """Keeps a ReadModel current with an EventStore; ``wait_for`` gives read-your-writes."""

    def __init__(
        self,
        store: EventStore,
        readmodel: Model,
        history: History,
        counter: TokenCounting,
        *,
        batch_size: int = 1000,
        snapshot_every: int = SNAPSHOT_EVERY,
        poll_interval: float = 1.0,
        wait_timeout: float = 30.0,
        retry_initial: float = 0.05,
        retry_cap: float = 5.0,
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
        self.forgetting: list[Callable[[], None]] = []
        """Called whenever the read model forgot content (an erasure applied, a rebuild):
        whoever caches what was read from it empties that cache."""
        self.tenants = Known()
        """The read model's tenants' slots and last runs, as committed."""
        self.error: BaseException | None = None
        """What the last attempt failed on; None once a batch applies again."""
        self.applied = 0
        """Events this projector applied to the read model since it was made (not counting
        a rebuild's replay): on a shared read model, 0 for a node that never led."""
        self.rebuilding: tuple[int, int] | None = None
        """(position replayed, head of the log) while a rebuild runs, else None."""
        self.backoff = Backoff(retry_initial, retry_cap)
        self._retry_at = 0.0
        self._rebuilding = False
        """True while ``rebuild`` runs: the live loop is stopped, and waiters wait for it."""
        self._rebuild_turn = asyncio.Lock()
        self._writing = asyncio.Lock()
        """Held while a batch or a refold (``shredding``) is applied: each reads the rows
        it builds on, and must not interleave with another."""
        self._task: asyncio.Task[None] | None = None
        self._advanced = asyncio.Event()
        self._waiting = 0
        self._watchdog: asyncio.TimerHandle | None = None
        self._period = wait_timeout / 4
        """Seconds between the watchdog's wake-ups: a quarter of the shortest wait asked
        for since it was last idle."""

    def health(self) -> Health:
        """``ok``, or ``behind``/``failed`` with the reason while it retries after an error."""
        error = self.error
        if error is None:
            return OK
        return health(error, self._retry_at - asyncio.get_running_loop().time())

    async def lag(self) -> tuple[int, float]:
        """How far the read model is behind the log: the events it has not applied, and the
        age in seconds of the oldest of them (0, 0.0 when caught up)."""
        behind = await self.store.head() - self.checkpoint
        if behind <= 0:
            return 0, 0.0
        events, _ = await self.store.read_all(self.checkpoint, 1)
        if not events:
            return behind, 0.0
        return behind, max(0.0, time.time() - events[0].recorded_at.timestamp())

    def check(self) -> None:
        """ProjectorBehind while the projector retries after an error."""
        if self.error is not None:
            now = self.health()
            raise ProjectorBehind(now.status, now.reason or "", now.retry_after)

    @property
    def applying(self) -> bool:
        """Whether this node applies the log: always on its own read model, on a shared one
        while elected (``sharing``)."""
        return self.leading or not self.readmodel.shared

    @property
    def running(self) -> bool:
        """True while the live loop runs."""
        return self._task is not None and not self._task.done()

    async def start(self, checkpoint: int) -> None:
        """Follow the log from ``checkpoint`` (the read model's, from ``ReadModel.open``)."""
        if self.running:
            return
        head = await self.store.head()
        if checkpoint > head:
            # The read model is ahead of this log: it was built from another one.
            await self.readmodel.reset(self.counter.encoding)
            self.history.clear_cache()
            self.headers.clear()
            self.tenants.clear()
            checkpoint = 0
        if checkpoint == 0 and head > FIRST_BUILD and not self._builds_in_place:
            checkpoint = await self._first_build_beside()
        self.checkpoint = checkpoint
        self.error = None
        self.backoff.reset()
        loop = self._share() if self.readmodel.shared else self._follow()
        self._task = asyncio.create_task(loop, name="ctxlog-projector")

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

    async def wait_for(self, position: int, within: float | None = None) -> None:
        """Return once everything up to ``position`` is applied; ProjectorBehind at once
        while the projector retries after an error, and after about ``within`` seconds
        (default ``wait_timeout``); ProjectorFailed if it is not running.

        No timer per wait: arming and cancelling one cost 4% of an append's throughput
        under load (most appends wait here for the one before them). One shared watchdog
        wakes every waiter each quarter of the shortest wait asked for while anyone waits,
        and each checks its own deadline.
        """
        if self.checkpoint >= position:
            return
        limit = self.wait_timeout if within is None else within
        loop = asyncio.get_running_loop()
        deadline = loop.time() + limit
        self._waiting += 1
        quarter = max(limit / 4, MIN_WATCH)
        self._period = min(self._period, quarter) if self._watchdog else quarter
        if self._watchdog is None or self._watchdog.when() > loop.time() + self._period:
            if self._watchdog is not None:  # armed for a longer wait than this one's
                self._watchdog.cancel()
            self._watchdog = loop.call_later(self._period, self._watch)
        try:
            while self.checkpoint < position:
                self.check()
                if not self.running and not self._rebuilding:
                    raise ProjectorFailed("the projector is not running")
                if loop.time() >= deadline:
                    reason = f"it did not reach position {position} in {limit:g} s"
                    raise ProjectorBehind("behind", reason, 1)
                await self._advanced.wait()
        finally:
            self._waiting -= 1

    def _watch(self) -> None:
        self._watchdog = None
        if self._waiting:
            self._wake()
            loop = asyncio.get_running_loop()
            self._watchdog = loop.call_later(self._period, self._watch)

    async def catch_up(self, *, patient: bool = False) -> None:
        """Wait until the read model has everything the log held when called; a long
        catch-up is not a stuck projector. On an error: ProjectorBehind, or, when
        ``patient`` (a server starting), wait on while the projector retries."""
        head = await self.store.head()
        if self.checkpoint < head:
            self.store.notice(head)  # another process's rows: read them now, not at a poll
        while self.checkpoint < head:
            # A rebuild stops the live loop for its duration; what waits, waits for it.
            if not self.running and not self._rebuilding:
                raise ProjectorFailed("the projector is not running")
            if not patient:
                self.check()
            await self._advanced.wait()

    async def rebuild(
        self, progress: Progress | None = None, *, batch_size: int = REPLAY_BATCH
    ) -> int:
        """Replay the whole log into a new read model; returns the events applied.

        The live loop (if running) is stopped for the duration and restarted after. On file,
        the new read model is built beside the old one, which goes on serving reads (as of
        its checkpoint: a read waiting for a newer write waits for the swap), and replaces it
        at the end; in memory, the tables are emptied and refilled in place.
        """
        async with self._rebuild_turn:  # two at once would build in one file
            was_running = self.running
            self._rebuilding = was_running  # a read of one's own write waits for the new model
            try:
                with fewer_collections():  # collector.py
                    return await self._rebuild(was_running, progress, batch_size)
            finally:
                self._rebuilding = False
                self._wake()

    async def _rebuild(self, was_running: bool, progress: Progress | None, batch_size: int) -> int:
        target: Model
        if isinstance(self.readmodel, ReadModel) and self.readmodel.on_file:
            # Before the live loop stops: refused while another process builds one.
            target = await self.readmodel.fresh()
            history = History(self.store, target, self.counter)
            try:
                await self.stop()
            except BaseException:
                await target.discard()
                raise
        else:
            await self.stop()
            if self.readmodel.shared and not await self.store.recorder.lead(LEAD):
                if was_running:
                    await self.start(self.checkpoint)
                raise ProjectorElsewhere(self.readmodel.path)
            target, history = self.readmodel, self.history
            await target.reset(self.counter.encoding)
            self._forget(0)
        self.store.keys.forget()  # the log is read anew: no key another process destroyed
        start = await self.store.head()
        try:
            done, through = await self._replay(target, history, progress, batch_size)
            await self._settle_keys(target, history, start)
            fresh = isinstance(target, ReadModel) and target is not self.readmodel
            if fresh and isinstance(self.readmodel, ReadModel):
                await self.readmodel.adopt(target)  # type: ignore[arg-type]
        except BaseException:
            if isinstance(target, ReadModel) and target is not self.readmodel:
                # The old read model stands: follow on with it.
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
        self.headers.clear()
        self._forget_content()
        self.tenants.clear()
        self.checkpoint = checkpoint
        self._wake()

    def _forget_content(self) -> None:
        self.history.clear_cache()
        for forget in self.forgetting:
            forget()

    async def reconcile(self) -> list[str]:
        """Forget the content of keys destroyed behind this read model's back (an erasure
        cut off between destroying a key and recording it, or between recording it and this
        read model forgetting it; a key row deleted by hand): every key that sealed content
        here, its content not forgotten, is checked against the key table, and the contexts
        holding content of a missing one are folded again. Returns the keys found missing."""
        missing = await self._missing(self.readmodel)
        if missing:
            async with self._writing:
                await self._refold(missing)
                self._forget_content()
        return missing

    async def _missing(self, target: Model) -> list[str]:
        candidates = await target.read(unsettled_sync)
        if not candidates:
            return []
        existing = await self.store.recorder.keys_by_id(candidates)
        return [key_id for key_id in candidates if key_id not in existing]

    async def _settle_keys(self, target: Model, history: History, start: int) -> None:
        """After a rebuild's replay: the content of a key destroyed before it began read as
        "[erased]" throughout, but one destroyed while it ran may have opened content it
        read before; fold again what such a key (recorded after ``start``, or not at all)
        sealed."""
        missing = await self._missing(target)
        if not missing:
            return
        erased_at = await target.read(erased_at_sync, missing)
        early = [k for k in missing if (at := erased_at.get(k)) is not None and at <= start]
        late = [key_id for key_id in missing if key_id not in early]
        if early:
            await target.write(forgotten_sync, early)
        if late:
            await self._refold(late, target=target, history=history)

    async def _refold(
        self,
        key_ids: list[str],
        *,
        target: Model | None = None,
        history: History | None = None,
    ) -> None:
        """Fold every context holding content sealed with ``key_ids`` (destroyed) again from
        the log, where it now reads "[erased]", and replace its rows (``shredding``) in the
        read model (or a rebuild's ``target``); then note the keys forgotten there."""
        self.store.keys.forget()
        target, history = target or self.readmodel, history or self.history
        only: set[str] | None = None
        while True:
            found = await target.read(holding_sync, key_ids)
            states = [
                await history.state_at(cid, version, fresh=True)
                for cid, version in found
                if only is None or cid in only
            ]
            tenants = self.tenants if target is self.readmodel else None
            rows, stale = await target.write(refold_sync, states, key_ids, tenants)
            if target is self.readmodel:
                self.headers.put_rows(rows)
            if not stale:
                return
            # Another process sharing the read model applied more to these meanwhile.
            self.headers.clear()
            only = set(stale)

    async def _replay(
        self, target: Model, history: History, progress: Progress | None, batch_size: int
    ) -> tuple[int, int]:
        """Apply the whole log to ``target`` (empty); returns (events applied, checkpoint)."""
        total = await self.store.head()
        await target.write(defer_sync)  # a crash before index_all_sync: start over
        # No syncs, a large cache: for a new file only (the live one keeps its own settings).
        bulk = target is not self.readmodel
        if bulk:
            await target.write(bulk_sync, True)

        def paged(through: int) -> None:
            self.rebuilding = (through, max(total, through))
            if progress is not None:
                progress(through, max(total, through))

        async def apply(events: list[RecordedEvent], tokens: Tokens) -> None:
            await self._apply_to(target, history, events, tokens, search=False)

        try:
            self.rebuilding = (0, total)
            # A log of a few pages is replayed before a second process would have started.
            done, through = await self._pages(0, batch_size, total > COUNT_AWAY, apply, paged)
            await target.write(index_all_sync)
        finally:
            self.rebuilding = None
            if bulk:
                await target.write(bulk_sync, False)
        return done, through

    async def _pages(
        self,
        after: int,
        size: int,
        away: bool,
        apply: Callable[[list[RecordedEvent], Tokens], Awaitable[None]],
        paged: Callable[[int], None] | None = None,
    ) -> tuple[int, int]:
        """Apply the log after ``after`` to its head, ``size`` events at a time; returns
        (events applied, the position read through).

        A pipeline: while ``apply`` (the read model's thread) takes page N, the log's reader
        fetches page N+2, this thread decodes page N+1 and, when ``away``, a second process
        counts its tokens (``counting``; here, where it cannot)."""
        done = 0
        reading = asyncio.ensure_future(self.store.read_all(after, size))
        applying: asyncio.Future[None] | None = None
        counting = Counting(self._counting, worker=away)
        try:
            await counting.start()
            while True:
                events, after = await reading
                if len(events) == size:
                    reading = asyncio.ensure_future(self.store.read_all(after, size))
                tokens = await counting.count(events)
                if applying is not None:
                    await applying
                if events:
                    applying = asyncio.ensure_future(apply(events, tokens))
                    done += len(events)
                if paged is not None:
                    paged(after)
                if len(events) < size:
                    break
            if applying is not None:
                await applying
        finally:
            for pending in (reading, applying):
                if pending is not None and not pending.done():
                    pending.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await pending
            await counting.close()
        return done, after

    async def _catch_up(self) -> None:
        """A projector more than ``COUNT_AWAY`` events behind the log's head (a node that
        was down a while, a follower whose first build was refused) catches up as a replay
        reads and counts, a page at a time with tokens counted in a second process, and
        applies each page as the live loop does (``apply``: erasures, caches, checkpoint).
        The live loop follows on from there."""
        if await self.store.head() - self.checkpoint > COUNT_AWAY:
            await self._pages(self.checkpoint, REPLAY_BATCH, True, self.apply)

    async def apply(
        self, batch: list[RecordedEvent], tokens: Tokens | None = None, *, search: bool = True
    ) -> None:
        """Apply consecutive log events in one transaction with the checkpoint; ``tokens``
        may hold the messages' counts already (``counting``).

        A ``subject.erased`` starts a transaction of its own: once it is applied, every
        context holding content sealed with a key it names, not forgotten yet, is folded
        again from the log (``shredding``), and the caches are emptied."""
        for part in _parts(batch):
            erased = sorted({key_id for rec in part for key_id in _erased_keys(rec)})
            async with self._writing:
                new = await self.readmodel.read(not_forgotten_sync, erased) if erased else []
                applied = await self._apply_to(
                    self.readmodel, self.history, part, tokens, search=search
                )
                self.applied += applied.events
                if applied.shared:  # another process applied part of it: rows moved on unseen
                    self.headers.clear()
                self.headers.put_rows(applied.rows)
                if new:
                    await self._refold(new)
                if any(isinstance(rec.event, SubjectErased) for rec in part):
                    self._forget_content()
            self.checkpoint = part[-1].position
            if self.error is not None:
                self._recovered()
            self._wake()

    async def _apply_to(
        self,
        target: Model,
        history: History,
        batch: list[RecordedEvent],
        tokens: Tokens | None,
        *,
        search: bool,
    ) -> Applied:
        resolved: Resolved = {}
        memo: Resolved = {}  # states resolved on the way, shared by the batch's forks
        for rec in batch:
            match rec.event:
                case ContextForked(parent_id=parent, parent_version=at) if rec.version == 1:
                    resolved[parent, at] = await history.state_at(parent, at, memo)
                case ContextRolledBack(to_version=to) if 1 <= to < rec.version:
                    key = (rec.stream_id, to)
                    resolved[key] = await history.state_at(*key, memo)
        known, tenants = None, None
        if target is self.readmodel:  # a rebuild's fresh target has none of these rows
            cached = self.headers.get
            known = {cid: row for rec in batch if (row := cached(cid := rec.stream_id))}
            tenants = self.tenants
        args = (batch, resolved, self._counting, self.snapshot_every, tokens or {}, search)
        if not search:  # no rowid is needed: appends are inserted together (HeldAppends)
            with contextlib.suppress(DuplicateAppend):  # rolled back: again, a row at a time
                return await target.write(apply_sync, *args, known, tenants, True)
        return await target.write(apply_sync, *args, known, tenants)

    def _wake(self) -> None:
        woken, self._advanced = self._advanced, asyncio.Event()
        woken.set()

    async def _follow(self) -> None:
        """Apply the log as it grows; after an error, try again from the checkpoint."""
        loop = asyncio.get_running_loop()
        while True:
            try:
                await self._follow_once()
            except asyncio.CancelledError:
                raise
            except ReadModelBehind as e:
                self._forget(e.stored)  # follow on from where the read model is
            except Exception as e:
                delay = self.backoff.next()
                self._retry_at = loop.time() + delay
                self._failed(e)
                await asyncio.sleep(delay)

    def _failed(self, error: Exception) -> None:
        before = self.health()
        self.error = error
        now = self.health()
        if (before.status, before.reason) != (now.status, now.reason):
            log.error(
                "the projector is %s at position %d: %s; retrying with backoff (up to %g s)",
                now.status, self.checkpoint, now.reason, self.backoff.cap,
                exc_info=error if now.status == "failed" else None,
            )  # fmt: skip
        self._wake()

    def _recovered(self) -> None:
        log.warning(
            "the projector recovered after %d attempts (%s); at position %d",
            self.backoff.attempts, self.health().reason, self.checkpoint,
        )  # fmt: skip
        self.error = None
        self.backoff.reset()

    async def _follow_once(self) -> None:
        if self.checkpoint == 0 and self._builds_in_place and await self.store.head() > FIRST_BUILD:
            await self._first_build()
        await self._catch_up()
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
        finally:
            pumping.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await pumping
            await events.aclose()

    @property
    def _builds_in_place(self) -> bool:
        """Whether a first build may replay into the read model in place: one no other
        process opens (in memory), or one only the elected projector writes (shared, on
        PostgreSQL). Not a SQLite file: another process opening it meanwhile would take the
        search index left for the end as a rebuild's cut off, and empty the file; a file is
        built beside it instead (``_first_build_beside``)."""
        return not (isinstance(self.readmodel, ReadModel) and self.readmodel.on_file)

    async def _first_build(self) -> None:
        """Build the read model, empty (checkpoint 0: nothing was ever committed to it),
        from a log of many events, as a rebuild in place does; the live loop follows on from
        where it ends. Cut off (an error, or this node losing the duty), what it committed
        stands: the next attempt skips it, or the next projector builds the search index
        left for the end before it follows (``Sharing._lead``)."""
        start = await self.store.head()
        async with self._writing:
            done, through = await self._replay(self.readmodel, self.history, None, REPLAY_BATCH)
            await self._settle_keys(self.readmodel, self.history, start)
        self.applied += done
        self.checkpoint = through
        if self.error is not None:
            self._recovered()
        self._wake()

    async def _first_build_beside(self) -> int:
        """Build a read model file, empty (checkpoint 0) on a log of many events, as a
        rebuild does: in a new file beside it, swapped in at the end (nothing reads it
        meanwhile: ``Contexts.start`` is waiting for the catch-up). Returns the checkpoint
        to follow from: 0 when it could not, and the live loop catches the file up in place
        (``_catch_up``) when another process has it open or builds it, or the replay failed
        (the live loop then meets the failure again and reports it in ``health``)."""
        try:
            self.applied += await self.rebuild()
        except ReadModelInUse as e:
            log.info("first build of the read model in place, following the log: %s", e)
            return 0
        except Exception as e:
            log.warning("first build of the read model in place, following the log: %r", e)
            return 0
        return self.checkpoint

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
        if not getting.done() or getting.cancelled():
            # A cancelled get is done only once the loop has run it: what ended the wait is
            # the subscription, whose own error is the one to report.
            if pumping.done():
                pumping.result()  # re-raises what stopped the subscription
            raise ProjectorFailed("the subscription ended")
        batch = [getting.result()]
        while len(batch) < self.batch_size and not queue.empty():
            batch.append(queue.get_nowait())
        return batch


def _erased_keys(rec: RecordedEvent) -> list[str]:
    return rec.event.key_ids if isinstance(rec.event, SubjectErased) else []


def _parts(batch: list[RecordedEvent]) -> list[list[RecordedEvent]]:
    """``batch`` cut before each run of ``subject.erased`` events and after it: the read
    model a refold starts from is then exactly as of the erasure."""
    parts: list[list[RecordedEvent]] = []
    for rec in batch:
        erasing = isinstance(rec.event, SubjectErased)
        last = parts[-1] if parts else None
        if last is None or erasing != isinstance(last[-1].event, SubjectErased):
            parts.append([rec])
        else:
            last.append(rec)
    return parts
