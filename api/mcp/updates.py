"""Resource subscriptions: follow the log and tell a client when what it watches changes.

A ``Follower`` reads the event store's catch-up subscription (as the WebSocket and SSE
endpoints do), so a change made through REST, a WebSocket, MCP or another process on the same
database reaches it, in log order and without polling the read model. It starts at the log's
head when the first subscription is made: nothing in between is missed. Before it announces a
change it waits until the read model has applied it, so a client that reads the resource on
the notification sees the change.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import projections as pj
from eventstore import NO_FILTER, LogFilter
from projections.service import Caller, Contexts

from .protocol import notification
from .resources import Target

log = logging.getLogger("ctxlog.mcp")

Send = Callable[[dict[str, Any]], Awaitable[None]]

LISTING = frozenset({"context.created", "context.forked", "context.deleted"})
"""Events that change what ``resources/list`` returns."""


class Follower:
    """The subscriptions of one client (a session, a listen stream, a stdio process)."""

    def __init__(
        self, contexts: Contexts, caller: Caller, send: Send, meta: dict[str, Any] | None = None
    ) -> None:
        self.contexts = contexts
        self.caller = caller
        self.send = send
        self.meta = meta
        self.uris: dict[str, str] = {}
        """Subscribed URI → its context id (past versions never change: not kept)."""
        self.list_changed = False
        self._task: asyncio.Task[None] | None = None

    def add(self, target: Target) -> None:
        """Watch a resource (already checked to be readable by the caller)."""
        if not target.immutable:
            self.uris[target.uri] = target.context_id

    def remove(self, uri: str) -> None:
        """Stop watching a resource."""
        self.uris.pop(uri, None)

    async def start(self) -> None:
        """Follow the log from its head now (idempotent)."""
        if self._task is None:
            head = await self.contexts.store.head()
            self._task = asyncio.create_task(self._follow(head), name="ctxlog-mcp-follower")

    @property
    def running(self) -> bool:
        """Whether the follower still follows (it ends when the store closes or sends fail)."""
        return self._task is not None and not self._task.done()

    async def close(self) -> None:
        """Stop following."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    def _params(self, **params: Any) -> dict[str, Any]:
        if self.meta is not None:
            params["_meta"] = dict(self.meta)
        return params

    async def _follow(self, after: int) -> None:
        tenant = self.caller.tenant
        flt = NO_FILTER if tenant is None else LogFilter(tenant=tenant)
        try:
            events = self.contexts.store.subscribe(after, flt)
            async with contextlib.aclosing(events):
                async for rec in events:
                    if tenant is None and rec.metadata.tenant is not None:
                        continue  # an open server's caller sees only contexts without a tenant
                    uris = [uri for uri, cid in self.uris.items() if cid == rec.stream_id]
                    listing = self.list_changed and rec.type in LISTING
                    if not uris and not listing:
                        continue
                    await self._applied(rec.position)
                    for uri in uris:
                        await self.send(
                            notification("notifications/resources/updated", self._params(uri=uri))
                        )
                    if listing:
                        await self.send(
                            notification("notifications/resources/list_changed", self._params())
                        )
        except asyncio.CancelledError:
            raise
        except Exception as e:  # the store closed, or the client went away
            log.debug("resource follower ended: %r", e)

    async def _applied(self, position: int) -> None:
        # Announce a change only once a read shows it; a stuck projector must not hold the
        # notification back for good, though.
        with contextlib.suppress(TimeoutError, pj.ProjectorFailed):
            await self.contexts.projector.wait_for(position)
