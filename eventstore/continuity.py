"""Whether raw rows continue a log: the checks behind importing rows exactly as exported.

An import keeps every column of every row (positions, versions, ids, timestamps, hashes), so
nothing is recomputed; instead each row must be what the log's own writer would have
written next. The recorders run these checks inside their write transaction, and the export
reader runs them over a whole file before anything is written.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable

from msgspec.structs import astuple

from .chain import GENESIS, chain_hash
from .errors import EventStoreError
from .recorder import StoredEvent, check_stream_id


class ChainBroken(EventStoreError):
    """Rows that do not continue the log at ``position``: a gap, a reused id or version, a
    timestamp going back, or a hash that does not cover the event and its predecessor."""

    def __init__(self, position: int, reason: str) -> None:
        super().__init__(f"position {position}: {reason}")
        self.position = position
        self.reason = reason


class Continuity:
    """The end of a log as rows are checked against it, advanced by each row that passes."""

    def __init__(self, position: int = 0, hash: bytes = GENESIS, recorded_at: int = 0) -> None:
        self.position = position
        self.hash = hash
        self.recorded_at = recorded_at
        self._versions: dict[str, int] = {}

    def check(
        self,
        rows: Iterable[StoredEvent],
        stored_ids: Collection[str] = (),
        stream_version: Callable[[str], int] = lambda _: 0,
    ) -> None:
        """Raise ChainBroken at the first row that does not follow; advance past the others.

        ``stored_ids`` are the rows' event ids already in the log; ``stream_version`` reads a
        stream's version from the log (called once per stream not seen before).
        """
        seen: set[str] = set()
        for row in rows:
            expected = self.position + 1
            if row.position != expected:
                raise ChainBroken(expected, f"expected position {expected}, found {row.position}")
            if row.event_id in stored_ids or row.event_id in seen:
                raise ChainBroken(row.position, f"event id {row.event_id} is already in the log")
            try:
                check_stream_id(row.stream_id)
            except EventStoreError as e:
                raise ChainBroken(row.position, str(e)) from None
            current = self._versions.get(row.stream_id)
            if current is None:
                current = stream_version(row.stream_id)
            if row.version != current + 1:
                raise ChainBroken(
                    row.position,
                    f"stream {row.stream_id!r} is at version {current}, the row has {row.version}",
                )
            if row.recorded_at < self.recorded_at:
                raise ChainBroken(row.position, "recorded_at is earlier than the row before")
            if chain_hash(self.hash, astuple(row)[:-1]) != row.hash:
                raise ChainBroken(row.position, "hash does not match the event and its predecessor")
            seen.add(row.event_id)
            self._versions[row.stream_id] = row.version
            self.position, self.hash, self.recorded_at = row.position, row.hash, row.recorded_at
