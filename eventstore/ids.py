"""Time-ordered (version 7) UUIDs as strings, fast: event and message ids are minted per event.

Why version 7 (RFC 9562: a millisecond timestamp, then random bits) and not random version
4: ids are keys of unique indexes (the log's ``event_id``, the read model's message and
context ids). A random key lands on a random leaf page of its index, so once the index
outgrows memory each group commit dirties (and fsyncs through the WAL) about one page per
event; ids minted in time order all land on the last few pages.
"""

from __future__ import annotations

import os
import threading
import time

_BATCH = 1024
"""Ids' random parts drawn from the OS at once (one getrandom() call of 10 KiB)."""
_VARIANT = str.maketrans({c: "89ab"[int(c, 16) & 3] for c in "0123456789abcdef"})
"""A random hex digit to the RFC 9562 variant's (8 to b), keeping two of its random bits."""


class _Pool:
    """The random part of ids (74 bits, with the version and variant around them) made in
    bulk, and the timestamp part remade once per millisecond: an id is one concatenation.

    ``uuid.uuid4()`` makes one system call per id, which costs several microseconds on a
    virtual machine, and formatting each id alone about a microsecond: a request mints
    three (its request id, a message's, an event's).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tails: list[str] = []
        self._ms = -1
        self._head = ""

    def take(self) -> str:
        ms = time.time_ns() // 1_000_000
        with self._lock:
            if ms != self._ms:
                stamp = f"{ms & 0xFFFF_FFFF_FFFF:012x}"
                self._ms, self._head = ms, f"{stamp[:8]}-{stamp[8:]}-7"
            if not self._tails:
                self._tails = _tails()
            return self._head + self._tails.pop()


def _tails(count: int = _BATCH) -> list[str]:
    """``count`` random ``xxx-Vxxx-xxxxxxxxxxxx`` (V: the RFC 9562 variant, 8 to b)."""
    h = os.urandom(10 * count).hex()
    variants = h[4::20].translate(_VARIANT)
    return [
        f"{h[i + 1 : i + 4]}-{variants[n]}{h[i + 5 : i + 8]}-{h[i + 8 : i + 20]}"
        for n, i in enumerate(range(0, 20 * count, 20))
    ]


_pool = _Pool()


def new_id() -> str:
    """A time-ordered UUID (version 7) in its canonical 36-character form."""
    return _pool.take()
