"""Per-key turns: at most one holder per key at a time, first come first served, and no
memory kept for keys nobody is waiting on."""

from __future__ import annotations

import asyncio
from types import TracebackType


class Turns:
    """An asyncio.Lock per key, created on first use and dropped when its last user leaves."""

    def __init__(self) -> None:
        self._turns: dict[str, _Turn] = {}

    def turn(self, key: str) -> _Turn:
        """``key``'s turn, to hold for the body of an ``async with``."""
        turn = self._turns.get(key)
        if turn is None:
            turn = self._turns[key] = _Turn(self._turns, key)
        return turn

    def __len__(self) -> int:
        return len(self._turns)


class _Turn:
    """One key's lock and how many hold or wait for it. A class rather than an
    ``asynccontextmanager``: every command enters one, and the generator machinery cost
    more than the lock."""

    __slots__ = ("_key", "_lock", "_turns", "_users")

    def __init__(self, turns: dict[str, _Turn], key: str) -> None:
        self._turns = turns
        self._key = key
        self._lock = asyncio.Lock()
        self._users = 0

    async def __aenter__(self) -> None:
        self._users += 1
        try:
            await self._lock.acquire()
        except BaseException:
            self._leave()
            raise

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._lock.release()
        self._leave()

    def _leave(self) -> None:
        self._users -= 1
        if not self._users:
            del self._turns[self._key]
