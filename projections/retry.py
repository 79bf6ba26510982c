"""How the projector lives through errors: bounded exponential backoff, which errors are
transient, and the health it reports meanwhile.

The read model is derived data and the log holds every acknowledged write, so an error
while applying a batch loses nothing: the batch's transaction rolls back, the checkpoint
stays, and the projector tries again from it after a pause that doubles up to a cap. A full
disk, an I/O error or a lock held too long clear by themselves (``behind``); anything else is
a bug or damaged data (``failed``), retried all the same at the cap, since a retry is cheap
and a restart would do nothing more.
"""

from __future__ import annotations

import math
import sqlite3
from typing import Literal

import msgspec

from eventstore import StoreUnavailable

Status = Literal["ok", "starting", "behind", "failed"]
"""``starting`` is a server's, while its projector catches up at start."""

# SQLite's primary result codes that a later attempt can get past.
_TRANSIENT_SQLITE = frozenset({
    5,  # SQLITE_BUSY
    6,  # SQLITE_LOCKED
    7,  # SQLITE_NOMEM
    10,  # SQLITE_IOERR
    13,  # SQLITE_FULL
    14,  # SQLITE_CANTOPEN
})  # fmt: skip


def transient(exc: BaseException) -> bool:
    """Whether ``exc`` is of the kind that clears by itself (disk full, I/O, busy)."""
    if isinstance(exc, sqlite3.Error):
        code = getattr(exc, "sqlite_errorcode", None)
        return code is not None and code & 0xFF in _TRANSIENT_SQLITE
    return isinstance(exc, OSError | MemoryError | StoreUnavailable)


class Health(msgspec.Struct, frozen=True, kw_only=True):
    """How the projector is doing: ``ok``, or ``behind``/``failed`` with the error as
    ``reason`` and the seconds until its next attempt as ``retry_after`` (at least 1)."""

    status: Status = "ok"
    reason: str | None = None
    retry_after: int = 0


OK = Health()


class Backoff:
    """Delays that double from ``initial`` up to ``cap`` seconds; ``reset`` after a success."""

    def __init__(self, initial: float, cap: float) -> None:
        self.initial = initial
        self.cap = cap
        self.attempts = 0

    def next(self) -> float:
        """The pause before the next attempt."""
        delay = min(self.cap, self.initial * 2.0 ** min(self.attempts, 60))
        self.attempts += 1
        return delay

    def reset(self) -> None:
        """Start again from ``initial``."""
        self.attempts = 0


def health(error: BaseException, retry_in: float) -> Health:
    """The health while retrying after ``error``, next attempt in ``retry_in`` seconds."""
    status: Status = "behind" if transient(error) else "failed"
    reason = f"{type(error).__name__}: {error}"[:500]
    return Health(status=status, reason=reason, retry_after=max(1, math.ceil(retry_in)))
