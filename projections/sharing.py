"""One projector for a read model several nodes share (``pgreadmodel``): election, failover,
and how the other nodes follow it.

Every node runs this loop. It asks the log for the ``projector`` duty (``Recorder.lead``: a
session advisory lock on PostgreSQL, released when the holder's session ends); the node that
holds it applies the log as a lone projector does (``Projector._follow``), from the shared
checkpoint, and asks again every ``LEAD_CHECK`` seconds, stopping if it lost the duty. The
others *trail*: they apply nothing, and wait for the checkpoint to move (a notification from
the projector's checkpoint transaction, or a poll every ``TRAIL_POLL`` seconds), then read
it, drop from their caches the rows of the contexts the events in between touched (the
``Applied.shared`` case of one SQLite file shared by two processes, narrowed to those
contexts), and wake whoever waits for a position (``wait_for``: read-your-writes on every
node). They ask for the duty every ``LEAD_CHECK`` seconds: when the projector's node dies,
its session ends, and another node takes over within about that long, from the checkpoint.

Nothing is applied twice even while two nodes believe they lead (a partition's old leader
for a moment): each batch locks the checkpoint row, and skips what is at or before it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, cast

from eventstore import EventStore, SubjectErased, decode
from eventstore.recorder import LogFilter

from .caches import HeaderCache
from .retry import Backoff
from .search import deferred_sync, index_all_sync
from .shredding import not_forgotten_sync
from .tenants import Known

if TYPE_CHECKING:
    from .pgreadmodel import PgReadModel
    from .readmodel import Model

log = logging.getLogger("ctxlog.projector")

LEAD = "projector"
"""The duty the nodes sharing a read model elect one of them for."""
LEAD_CHECK = 1.0
"""Seconds between asking for (or confirming) the duty: about how long a failover takes."""
TRAIL_POLL = 0.5
"""Seconds a trailing node waits for a notification before it reads the checkpoint anyway."""
TRAIL_READ = 10_000
"""Events between two checkpoints a trailing node reads to know which cached rows changed;
past that it empties its caches instead."""


class Sharing:
    """The loop of a projector over a shared read model (a mixin of ``Projector``)."""

    store: EventStore
    readmodel: Model
    checkpoint: int
    headers: HeaderCache
    tenants: Known
    error: BaseException | None
    backoff: Backoff
    _retry_at: float
    leading: bool = False
    """True while this node is the elected projector."""

    async def _follow(self) -> None: ...  # the lone projector's loop (``Projector``)

    def _wake(self) -> None: ...

    def _forget(self, checkpoint: int) -> None: ...

    def _forget_content(self) -> None: ...

    def _failed(self, error: Exception) -> None: ...

    def _recovered(self) -> None: ...

    async def reconcile(self) -> list[str]:
        raise NotImplementedError  # ``Projector.reconcile``

    @property
    def _model(self) -> PgReadModel:
        return cast("PgReadModel", self.readmodel)

    async def _share(self) -> None:
        """Lead while elected, trail otherwise; for ever (``stop`` cancels it). An error
        (the database unreachable) is reported as the lone projector's are (``health``),
        and the loop tries again after a backoff."""
        loop = asyncio.get_running_loop()
        while True:
            try:
                if await self.store.recorder.lead(LEAD):
                    await self._lead()
                else:
                    await self._trail(LEAD_CHECK)
                    if self.error is not None and not self.leading:
                        self._recovered()
            except asyncio.CancelledError:
                raise
            except Exception as e:
                delay = self.backoff.next()
                self._retry_at = loop.time() + delay
                self._failed(e)
                await asyncio.sleep(delay)

    async def _lead(self) -> None:
        """Apply the log from the shared checkpoint until this node loses the duty."""
        if not self.leading:
            log.info("this node is the projector of the shared read model")
        self.leading = True
        self.tenants.clear()  # slots and runs another projector may have added since
        try:
            await self._caught_up(await self._model.checkpoint())
            await self.reconcile()  # an erasure its predecessor applied but did not refold
            if await self.readmodel.read(deferred_sync):
                # A rebuild was cut off before its search index: finish it.
                await self.readmodel.write(index_all_sync)
            applying = asyncio.create_task(self._follow(), name="ctxlog-projector-lead")
            try:
                while True:
                    await asyncio.wait({applying}, timeout=LEAD_CHECK)
                    if applying.done() or not await self.store.recorder.lead(LEAD):
                        break
            finally:
                applying.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await applying
        finally:
            self.leading = False
        log.warning("this node is no longer the projector of the shared read model")

    async def _trail(self, duration: float) -> None:
        """For about ``duration`` seconds, follow the checkpoint another node moves."""
        loop = asyncio.get_running_loop()
        until = loop.time() + duration
        while (left := until - loop.time()) > 0:
            await self._model.changed(min(TRAIL_POLL, left))
            await self._caught_up(await self._model.checkpoint())

    async def _refolded(self, key_ids: list[str]) -> None:
        """Wait until the projector has forgotten the content of ``key_ids`` (``apply``
        refolds it in a transaction after the erasure's own, so the checkpoint passes the
        erasure first): caches emptied before that could take the old content back in. At
        most ``REFOLD_WAIT`` seconds (a projector that died in between: its successor's
        ``reconcile`` refolds them)."""
        loop = asyncio.get_running_loop()
        until = loop.time() + REFOLD_WAIT
        while await self.readmodel.read(not_forgotten_sync, sorted(set(key_ids))):
            if loop.time() >= until:
                log.warning("the projector has not forgotten erased keys in %g s", REFOLD_WAIT)
                return
            await self._model.changed(TRAIL_POLL)

    async def _caught_up(self, position: int) -> None:
        """The shared checkpoint is at ``position``: forget what changed since ours, then
        take it as ours."""
        before = self.checkpoint
        if position == before:
            return
        if position < before:  # emptied (a rebuild) or replaced: nothing cached holds
            self._forget(position)
            return
        touched: set[str] = set()
        far = position - before > TRAIL_READ  # then only the erasures are read
        keys: list[str] = []
        after = before
        while after < position:
            page = await self.store.recorder.read_all(
                after, min(1000, position - after), ERASURES if far else ALL
            )
            for row in page.events:
                if row.position > position:
                    break
                touched.add(row.stream_id)
                if row.type == ERASED:
                    event = decode(row).event
                    assert isinstance(event, SubjectErased)
                    keys += event.key_ids
            if page.through <= after:
                break
            after = page.through
        if keys:
            await self._refolded(keys)
        if far or keys:  # content went without a new version of every context
            self.headers.clear()
            self._forget_content()
        else:
            for context_id in touched:
                self.headers.discard(context_id)
        self.checkpoint = position
        self._wake()


ERASED = "subject.erased"  # SubjectErased's tag
ALL = LogFilter()
ERASURES = LogFilter(types=(ERASED,))
REFOLD_WAIT = 30.0
"""Seconds a trailing node waits for the projector to refold what an erasure names."""
