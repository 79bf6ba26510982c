"""Handshake-era sessions over HTTP: what ``initialize`` opens and ``DELETE`` ends.

A session belongs to the credential that opened it: a request with its id and another key is
answered as if the session did not exist. It holds the negotiated version, the resource
subscriptions, and an outbox of notifications for the GET event stream (bounded: when nobody
reads it, the oldest are dropped).

One key must not take every session, nor make the log's every commit wake a crowd of
followers (one key opened 1,000 sessions in 0.45 s, and their followers slowed every append
about tenfold): each key (``ratelimit.caller_key``) may hold ``per_key`` sessions, each
tenant ``per_tenant`` (all its keys together), the server ``limit``; a session's
subscriptions follow the log through one follower, which takes one of the key's live slots
(``ratelimit.LiveSlots``, shared with WebSockets and event streams) until the session ends
or watches nothing. A session without a request or an open event stream for ``idle`` seconds
ends: ``sweep`` runs in the background (``run_sweeper``), so an abandoned session's follower
stops even when no request comes.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Callable, Hashable
from typing import Any

from projections.service import Caller

from ..ratelimit import LiveSlots, Quota
from .updates import Follower

OUTBOX = 256
IDLE_SECONDS = 300.0
MAX_SESSIONS = 1000
SESSIONS_PER_KEY = 100
SWEEP_SECONDS = 15.0
"""The longest a session may outlive its idle timeout before the sweeper ends it."""


class Session:
    """One client's session."""

    def __init__(self, owner: Caller, version: str, key: Hashable = None) -> None:
        self.id = secrets.token_hex(16)
        self.owner = owner
        self.version = version
        self.key = key
        """Whose sessions and live slots it counts against (``ratelimit.caller_key``)."""
        self.follower: Follower | None = None
        self.outbox: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue(OUTBOX)
        self.streaming = False
        self.closed = False
        self.last_seen = time.monotonic()
        self.subscribing = asyncio.Lock()
        """Held while a subscribe or unsubscribe request runs (``handshake``)."""
        self._slots: LiveSlots | None = None
        """The live slots the follower holds one of (None: no follower, no slot)."""

    def belongs_to(self, caller: Caller) -> bool:
        """Whether ``caller`` is who opened the session."""
        return (self.owner.tenant, self.owner.actor) == (caller.tenant, caller.actor)

    def follow(self, slots: LiveSlots, make: Callable[[], Follower]) -> Follower:
        """The session's follower, made (taking one of its key's live slots) if it has none:
        ApiError 429 past the key's or the tenant's live connections, 503 past the server's."""
        if self.follower is None:
            slots.acquire(self.key, self.owner.tenant)
            self._slots = slots
            self.follower = make()
        return self.follower

    async def unfollow_if_idle(self) -> None:
        """Stop the follower, and give its slot back, when it watches nothing (any more) or
        the session ended while a subscription was being made."""
        follower = self.follower
        if follower is not None and (self.closed or not (follower.uris and follower.running)):
            await self._unfollow()

    async def _unfollow(self) -> None:
        follower, self.follower = self.follower, None
        if follower is not None:
            await follower.close()
        slots, self._slots = self._slots, None
        if slots is not None:
            slots.release(self.key, self.owner.tenant)

    async def post(self, message: dict[str, Any]) -> None:
        """Queue a notification for the event stream, dropping the oldest when full."""
        if self.closed:
            return
        if self.outbox.full():
            self.outbox.get_nowait()
        self.outbox.put_nowait(message)

    async def close(self) -> None:
        """End the session: its subscriptions stop and its event stream ends."""
        if self.closed:
            return
        self.closed = True
        await self._unfollow()
        while not self.outbox.empty():
            self.outbox.get_nowait()
        self.outbox.put_nowait(None)  # wakes the event stream, which then ends


class Sessions:
    """The open sessions of one server."""

    def __init__(
        self,
        *,
        limit: int = MAX_SESSIONS,
        per_key: int = SESSIONS_PER_KEY,
        per_tenant: int | None = None,
        idle: float = IDLE_SECONDS,
    ) -> None:
        self.idle = idle
        self._open: dict[str, Session] = {}
        self._held = Quota(
            "MCP sessions", "too_many_sessions", per_key,
            limit if per_tenant is None else per_tenant, limit,
            hint="; end one (DELETE /mcp) or retry when one has expired",
        )  # fmt: skip

    def __len__(self) -> int:
        return len(self._open)

    def subscriptions(self) -> int:
        """Resources the open sessions are subscribed to, in all."""
        return sum(len(s.follower.uris) for s in self._open.values() if s.follower is not None)

    def _expired(self, session: Session, now: float) -> bool:
        return not session.streaming and now - session.last_seen > self.idle

    async def sweep(self) -> int:
        """End every session idle for longer than ``idle``; how many ended."""
        now = time.monotonic()
        expired = [s.id for s in self._open.values() if self._expired(s, now)]
        for session_id in expired:
            await self.close(session_id)
        return len(expired)

    async def run_sweeper(self) -> None:
        """Sweep now and then, forever (cancel to stop): every ``SWEEP_SECONDS``, or a
        quarter of ``idle`` when that is shorter."""
        interval = max(0.05, min(SWEEP_SECONDS, self.idle / 4))
        while True:
            await asyncio.sleep(interval)
            await self.sweep()

    async def open(self, owner: Caller, version: str, key: Hashable = None) -> Session:
        """A new session of ``key``'s: ApiError 429 when the key holds ``per_key`` sessions
        or its tenant ``per_tenant``, 503 when the server holds ``limit`` (expired ones are
        ended first)."""
        if self._held.full(key, owner.tenant) is not None:
            await self.sweep()
        refusal = self._held.refusal(key, owner.tenant)
        if refusal is not None:
            raise refusal
        session = Session(owner, version, key)
        self._open[session.id] = session
        self._held.take(key, owner.tenant)
        return session

    async def get(self, session_id: str, caller: Caller) -> Session | None:
        """The caller's live session with this id, or None (unknown, ended, expired, or
        another credential's: never told apart)."""
        now = time.monotonic()
        session = self._open.get(session_id)
        if session is None:
            return None
        if self._expired(session, now):
            await self.close(session_id)
            return None
        if not session.belongs_to(caller):
            return None
        session.last_seen = now
        return session

    async def close(self, session_id: str) -> bool:
        """End a session; False if there was none."""
        session = self._open.pop(session_id, None)
        if session is None:
            return False
        self._held.give(session.key, session.owner.tenant)
        await session.close()
        return True

    async def close_all(self) -> None:
        """End every session (at shutdown)."""
        for session_id in list(self._open):
            await self.close(session_id)
