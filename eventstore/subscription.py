"""Catch-up subscriptions: read the log from a position, then follow it live, without gaps or
duplicates.

Live events come from the writer of this process through a bounded feed; a consumer that
falls behind loses its feed's contents (bounded memory) and reads the log instead. Events
written by another process on the same database show up when the backend announces a commit
past what the feed holds (PostgreSQL's LISTEN/NOTIFY: ``nudge``), which makes the follower
read the log; a periodic log read catches whatever an announcement missed.

Every follower holds at most about ``max_bytes`` of rows: its feed drops its oldest rows
beyond that, and a page read from the log is cut to that size (the rest is read again
later). A consumer that stops reading (a client that no longer reads its event stream)
therefore pins a bounded amount, not the last 10,000 rows of whatever size: with 3 KB events
90 such streams held about 150 MB before the budget.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import AsyncGenerator, Awaitable, Callable

from .recorder import LogFilter, LogPage, StoredEvent

ROW_OVERHEAD = 400
"""Bytes a stored row costs beyond its data and metadata (its Struct, ids, type, hash)."""
DEFAULT_MAX_BYTES = 1 << 20
"""A follower's byte budget unless its caller gives one."""


def row_bytes(row: StoredEvent) -> int:
    """About how much memory a stored row holds."""
    return len(row.data) + len(row.metadata) + ROW_OVERHEAD


class LiveFeed:
    """A bounded buffer of freshly committed rows for one subscriber: at most ``capacity``
    rows and ``max_bytes`` bytes (``row_bytes``).

    When full it drops its oldest rows and says so (``overflowed``); the subscriber reads the
    log instead, so a slow consumer costs bounded memory and loses nothing. Rows are shared
    between feeds (the writer pushes the same objects to every one), so the sum over feeds
    bounds their memory from above.
    """

    def __init__(self, capacity: int, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self._rows: collections.deque[StoredEvent] = collections.deque()
        self._capacity = capacity
        self._max_bytes = max_bytes
        self._bytes = 0
        self._overflowed = False
        self._stale = False
        self._pushed = 0
        self._wake = asyncio.Event()

    @property
    def bytes(self) -> int:
        """What the buffered rows hold (``row_bytes``)."""
        return self._bytes

    def push(self, rows: list[StoredEvent]) -> None:
        """Called by the writer after each commit; never blocks."""
        for row in rows:
            self._rows.append(row)
            self._bytes += row_bytes(row)
        if rows:
            self._pushed = max(self._pushed, rows[-1].position)
        while self._rows and (len(self._rows) > self._capacity or self._bytes > self._max_bytes):
            self._bytes -= row_bytes(self._rows.popleft())
            self._overflowed = True
        self._wake.set()

    def nudge(self, position: int) -> None:
        """The log has rows through ``position`` (another process committed them): unless
        this feed was pushed that far (its own writer's commit), the subscriber reads the log.
        Never blocks."""
        if position > self._pushed:
            self._stale = True
            self._wake.set()

    def stale(self) -> bool:
        """Whether a nudge said the log holds rows this feed was not given (since the last
        call)."""
        stale, self._stale = self._stale, False
        return stale

    def pop(self) -> StoredEvent | None:
        """The oldest buffered row, if any."""
        if not self._rows:
            return None
        row = self._rows.popleft()
        self._bytes -= row_bytes(row)
        return row

    def overflowed(self) -> bool:
        """Whether rows were dropped since the last call (then the log must be read)."""
        dropped, self._overflowed = self._overflowed, False
        return dropped

    async def wait(self, seconds: float) -> bool:
        """Until something is pushed (True), or ``seconds`` pass (False)."""
        if self._rows or self._overflowed or self._stale:
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


def _bounded(
    page: LogPage, asked: int, max_bytes: int, chunk: int
) -> tuple[collections.deque[StoredEvent], int, bool, int]:
    """The rows of ``page`` (``asked`` rows at most) that fit ``max_bytes`` (at least one),
    the position read through, whether more may follow at once, and how many rows to ask
    for next (as many of this page's size as fit, at most ``chunk``)."""
    kept: collections.deque[StoredEvent] = collections.deque()
    size = 0
    for row in page.events:
        cost = row_bytes(row)
        if kept and size + cost > max_bytes:
            break
        kept.append(row)
        size += cost
    cut = len(kept) < len(page.events)
    through = kept[-1].position if cut else page.through
    per_row = size // len(kept) if kept else ROW_OVERHEAD
    following = max(1, min(chunk, max_bytes // per_row))
    return kept, through, cut or len(page.events) == asked, following


async def follow(
    read: Callable[[int, int, LogFilter], Awaitable[LogPage]],
    feeds: set[LiveFeed],
    after: int,
    filter: LogFilter,
    *,
    chunk: int = 1000,
    capacity: int = 10_000,
    max_bytes: int = DEFAULT_MAX_BYTES,
    poll_interval: float = 1.0,
) -> AsyncGenerator[StoredEvent, None]:
    """Every row after position ``after`` that passes ``filter``, in order, then live, forever.

    ``cursor`` is the last position examined (matching or not). The feed is registered
    before the first read, so everything committed after that read is in the feed, and rows
    already read are dropped from it by position. A row that does not directly follow the
    cursor means the feed missed something (another process wrote it, or it overflowed), so
    the log is read. Rows are handed out one at a time and forgotten here once handed out:
    a consumer that stops pins at most the budget (``max_bytes``), from the feed or a page.
    """
    feed = LiveFeed(capacity, max_bytes)
    feeds.add(feed)
    cursor = after
    rows = chunk
    try:
        while True:
            page = await read(cursor, rows, filter)
            pending, through, more, rows = _bounded(page, rows, max_bytes, chunk)
            del page  # only what fits the budget is held while the consumer takes it
            while pending:
                yield pending.popleft()
            cursor = max(cursor, through)
            if more:
                continue
            # Rows committed while the page was read are both in the page and in the feed;
            # the position check drops them.
            while True:
                row = feed.pop()
                if row is None:
                    if feed.overflowed() or feed.stale() or not await feed.wait(poll_interval):
                        break  # dropped rows (slow consumer), another's commit, or quiet
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
