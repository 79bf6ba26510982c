"""Where the SQLite recorder's group commits run: on the event loop's thread, and when not.

Why on the loop's thread: under load that thread holds the GIL most of the time, and a
transaction on the writer's thread must take the GIL back after every SQLite call (each one
lets go of it), each time waiting for the loop to let go. Measured with 64 concurrent HTTP
appenders: a group commit of about 30 appends took 3.1 ms (median) on the writer's thread and
1.0 ms inline, against 0.56 ms with nothing else running; the mixed load's append p99 went
from 52 to 43 ms.

When not (the commit then goes to the writer's thread, as before):

- another connection holds the file's write lock (another process, or this recorder's own
  threaded writer doing key work): the inline connection does not wait (busy_timeout 0), the
  writer's thread does;
- fsync is slow (a network or spinning disk): a slow COMMIT would stall every request on the
  loop, so while COMMIT statements average over ``slow`` seconds the commits move to the
  writer's thread, coming back for one commit every ``probe_every`` to measure again;
- WAL checkpoints: SQLite runs them inside a COMMIT once the WAL passes 1,000 pages, with an
  fsync of the database file; the inline connection has them off, and every
  ``checkpoint_every`` inline commits a passive checkpoint runs on the writer's thread.
"""

from __future__ import annotations

import sqlite3
import time


def busy(e: sqlite3.OperationalError) -> bool:
    """Whether ``e`` says another connection holds a lock (nothing was done)."""
    return "locked" in str(e) or "busy" in str(e)


class CommitPlacement:
    """Decides, commit by commit, whether the next one runs inline; times those that do."""

    def __init__(
        self, *, slow: float = 0.002, probe_every: int = 256, checkpoint_every: int = 64
    ) -> None:
        self.slow = slow
        self.probe_every = probe_every
        self.checkpoint_every = checkpoint_every
        self.sync_time = 0.0
        """Moving average of an inline COMMIT's duration (s): mostly the WAL's fsync."""
        self.last = 0.0
        """The last COMMIT's duration (s), inline or on the writer's thread (``timed``)."""
        self._threaded = 0  # commits sent to the writer's thread since the last inline one
        self._since_checkpoint = 0

    def inline(self) -> bool:
        """Whether the next commit should run on the loop's thread."""
        if self.sync_time <= self.slow or self._threaded >= self.probe_every:
            return True
        self._threaded += 1
        return False

    def commit(self, conn: sqlite3.Connection) -> None:
        """COMMIT on the inline connection, timed."""
        start = time.perf_counter()
        conn.execute("COMMIT")
        took = self.last = time.perf_counter() - start
        # A probe after a slow spell replaces the average: the disk may have recovered.
        weight = 1.0 if self._threaded else 0.1
        self.sync_time += weight * (took - self.sync_time)
        self._threaded = 0
        self._since_checkpoint += 1

    def timed(self, conn: sqlite3.Connection) -> None:
        """COMMIT on the writer's thread, timed but kept out of the inline average."""
        start = time.perf_counter()
        conn.execute("COMMIT")
        self.last = time.perf_counter() - start

    def checkpoint_due(self) -> bool:
        """True once every ``checkpoint_every`` inline commits (and resets the count)."""
        if self._since_checkpoint < self.checkpoint_every:
            return False
        self._since_checkpoint = 0
        return True
