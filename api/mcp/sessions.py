"""Handshake-era sessions over HTTP: what ``initialize`` opens and ``DELETE`` ends.

A session belongs to the credential that opened it: a request with its id and another key is
answered as if the session did not exist. It holds the negotiated version, the resource
subscriptions, and an outbox of notifications for the GET event stream (bounded: when nobody
reads it, the oldest are dropped). Idle sessions expire; expired ones are found and closed
lazily, while requests come in, so no background task is needed.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from typing import Any

from projections.service import Caller

from .updates import Follower

OUTBOX = 256
IDLE_SECONDS = 30 * 60.0
MAX_SESSIONS = 1000
SWEEP_SECONDS = 60.0


class Session:
    """One client's session."""

    def __init__(self, owner: Caller, version: str) -> None:
        self.id = secrets.token_hex(16)
        self.owner = owner
        self.version = version
        self.follower: Follower | None = None
        self.outbox: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue(OUTBOX)
        self.streaming = False
        self.closed = False
        self.last_seen = time.monotonic()

    def belongs_to(self, caller: Caller) -> bool:
        """Whether ``caller`` is who opened the session."""
        return (self.owner.tenant, self.owner.actor) == (caller.tenant, caller.actor)

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
        if self.follower is not None:
            await self.follower.close()
        while not self.outbox.empty():
            self.outbox.get_nowait()
        self.outbox.put_nowait(None)  # wakes the event stream, which then ends


class Sessions:
    """The open sessions of one server."""

    def __init__(self, *, limit: int = MAX_SESSIONS, idle: float = IDLE_SECONDS) -> None:
        self.limit = limit
        self.idle = idle
        self._open: dict[str, Session] = {}
        self._swept = time.monotonic()

    def __len__(self) -> int:
        return len(self._open)

    def subscriptions(self) -> int:
        """Resources the open sessions are subscribed to, in all."""
        return sum(len(s.follower.uris) for s in self._open.values() if s.follower is not None)

    def _expired(self, session: Session, now: float) -> bool:
        return not session.streaming and now - session.last_seen > self.idle

    async def _sweep(self, now: float, *, force: bool = False) -> None:
        # An abandoned session's subscriptions follow the log until it is closed: look for
        # them now and then (at most once per SWEEP_SECONDS unless a new one needs room).
        if not force and now - self._swept < SWEEP_SECONDS:
            return
        self._swept = now
        for session in [s for s in self._open.values() if self._expired(s, now)]:
            await self.close(session.id)

    async def open(self, owner: Caller, version: str) -> Session | None:
        """A new session, or None when the limit is reached (after closing expired ones)."""
        await self._sweep(time.monotonic(), force=len(self._open) >= self.limit)
        if len(self._open) >= self.limit:
            return None
        session = Session(owner, version)
        self._open[session.id] = session
        return session

    async def get(self, session_id: str, caller: Caller) -> Session | None:
        """The caller's live session with this id, or None (unknown, ended, expired, or
        another credential's: never told apart)."""
        now = time.monotonic()
        await self._sweep(now)
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
        await session.close()
        return True

    async def close_all(self) -> None:
        """End every session (at shutdown)."""
        for session_id in list(self._open):
            await self.close(session_id)
