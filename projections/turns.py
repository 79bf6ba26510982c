"""Per-key turns: at most one holder per key at a time, first come first served, and no
memory kept for keys nobody is waiting on; or, for holders that may overlap (``shared``),
any number of them together, between the exclusive holders."""

from __future__ import annotations

import asyncio
from types import TracebackType

from eventstore import Lane


class Turns:
    """An asyncio.Lock per key, created on first use and dropped when its last user leaves."""

    def __init__(self) -> None:
        self._turns: dict[str, _Turn] = {}

    def turn(self, key: str) -> _Turn:
        """``key``'s turn, to hold for the body of an ``async with`` (exclusive), or with
        ``async with turn.shared()``."""
        turn = self._turns.get(key)
        if turn is None:
            turn = self._turns[key] = _Turn(self._turns, key)
        return turn

    def __len__(self) -> int:
        return len(self._turns)


class _Turn:
    """One key's lock, how many hold or wait for it, and how many share it. A class rather
    than an ``asynccontextmanager``: every command enters one, and the generator machinery
    cost more than the lock.

    Shared holders pass through the lock (behind any exclusive holder or waiter before them,
    the lock being first come first served) without keeping it; an exclusive holder takes
    the lock, then waits for the shared holders already inside to leave. ``lane``: the
    shared holders' appends, in the order they are queued (``eventstore.Lane``); it starts
    again after each exclusive holder."""

    __slots__ = ("_idle", "_key", "_lock", "_sharing", "_turns", "_users", "lane")

    def __init__(self, turns: dict[str, _Turn], key: str) -> None:
        self._turns = turns
        self._key = key
        self._lock = asyncio.Lock()
        self._users = 0
        self._sharing = 0
        self._idle: asyncio.Future[None] | None = None
        self.lane = Lane()

    async def __aenter__(self) -> None:
        self._users += 1
        try:
            await self._lock.acquire()
        except BaseException:
            self._leave()
            raise
        try:
            while self._sharing:
                self._idle = asyncio.get_running_loop().create_future()
                await self._idle
        except BaseException:
            self._lock.release()
            self._leave()
            raise
        self.lane = Lane()  # what was shared before is all applied or refused now

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._lock.release()
        self._leave()

    def shared(self) -> _Shared:
        """The turn, held together with other shared holders."""
        return _Shared(self)

    def _enter_shared(self) -> None:
        self._sharing += 1

    def _leave_shared(self) -> None:
        self._sharing -= 1
        if not self._sharing and self._idle is not None:
            if not self._idle.done():
                self._idle.set_result(None)
            self._idle = None
        self._leave()

    def _leave(self) -> None:
        self._users -= 1
        if not self._users:
            del self._turns[self._key]


class _Shared:
    __slots__ = ("_turn",)

    def __init__(self, turn: _Turn) -> None:
        self._turn = turn

    async def __aenter__(self) -> Lane:
        turn = self._turn
        turn._users += 1
        if turn._lock.locked():  # an exclusive holder, or one waiting: after them
            try:
                await turn._lock.acquire()
            except BaseException:
                turn._leave()
                raise
            turn._lock.release()
        turn._enter_shared()
        return turn.lane

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._turn._leave_shared()
