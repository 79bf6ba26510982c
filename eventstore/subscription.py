"""Catch-up subscriptions: read the log from a position, then follow it live, without gaps or
duplicates.

Live events come from the writer of this process through a bounded feed; a consumer that
falls behind loses its feed's contents (bounded memory) and reads the log instead. Events
written by another process on the same database show up through a periodic log read.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import AsyncIterator, Awaitable, Callable

from .recorder import LogFilter, LogPage, StoredEvent


class LiveFeed:
    """A bounded buffer of freshly committed rows for one subscriber.

    When full it drops its oldest rows; the subscriber notices the jump in positions and
    reads the log instead, so a slow consumer costs bounded memory and loses nothing.
    """

    def __init__(self, capacity: int) -> None:
        self._rows: collections.deque[StoredEvent] = collections.deque(maxlen=capacity)
        self._wake = asyncio.Event()

    def push(self, rows: list[StoredEvent]) -> None:
        """Called by the writer after each commit; never blocks."""
        self._rows.extend(rows)
        self._wake.set()

    def pop(self) -> StoredEvent | None:
        """The oldest buffered row, if any."""
        return self._rows.popleft() if self._rows else None

    async def wait(self, seconds: float) -> bool:
        """Until something is pushed (True), or ``seconds`` pass (False)."""
        if self._rows:
            return True
        self._wake.clear()
        # asyncio.timeout, not wait_for: on Python 3.11, wait_for swallows a cancellation that
        # arrives as the wait completes, and a cancelled follower would then never stop.
        try:
            async with asyncio.timeout(seconds):
                await self._wake.wait()
        except TimeoutError:
            return False
        return True


async def follow(
    read: Callable[[int, int, LogFilter], Awaitable[LogPage]],
    feeds: set[LiveFeed],
    after: int,
    filter: LogFilter,
    *,
    chunk: int = 1000,
    capacity: int = 10_000,
    poll_interval: float = 1.0,
) -> AsyncIterator[StoredEvent]:
    """Every row after position ``after`` that passes ``filter``, in order, then live, forever.

    ``cursor`` is the last position examined (matching or not). The feed is registered
    before the first read, so everything committed after that read is in the feed, and rows
    already read are dropped from it by position. A row that does not directly follow the
    cursor means the feed missed something (another process wrote it), so the log is read.
    """
    feed = LiveFeed(capacity)
    feeds.add(feed)
    cursor = after
    try:
        while True:
            page = await read(cursor, chunk, filter)
            for row in page.events:
                yield row
            cursor = max(cursor, page.through)
            if len(page.events) == chunk:
                continue
            # Rows committed while the page was read are both in the page and in the feed;
            # the position check drops them.
            while True:
                row = feed.pop()
                if row is None:
                    if not await feed.wait(poll_interval):
                        break  # quiet for a while: read the log, another process may write
                    continue
                if row.position <= cursor:
                    continue
                if row.position != cursor + 1:
                    break  # the feed dropped rows (slow consumer) or missed another process's
                cursor = row.position
                if filter.matches(row):
                    yield row
    finally:
        feeds.discard(feed)
