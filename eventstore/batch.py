"""Group-commit planning, shared by every backend: which appends of a batch are stored, and how.

A backend opens its write transaction, reads the head of the log, the rows already stored
under the batch's event ids and the versions of its streams, and hands them here. The plan
is pure: positions, versions, timestamps and hashes for the new rows, and one outcome per
append. The backend then inserts the rows and commits.
"""

from __future__ import annotations

from collections.abc import Callable, Set

from .chain import chain_hash
from .errors import DuplicateEventId, EventStoreError, KeyDestroyed, VersionConflict
from .recorder import AppendOutcome, PendingAppend, StoredEvent, version_matches
from .sealing import resealed


class Head:
    """The end of the log as the write transaction sees it, advanced as rows are planned."""

    __slots__ = ("hash", "position", "recorded_at")

    def __init__(self, position: int, hash: bytes, recorded_at: int) -> None:
        self.position = position
        self.hash = hash
        self.recorded_at = recorded_at


def plan_batch(
    batch: list[PendingAppend],
    now_us: int,
    head: Head,
    stored_by_id: dict[str, StoredEvent],
    stream_version: Callable[[str], int],
    gone: Set[str] = frozenset(),
) -> tuple[list[StoredEvent], list[AppendOutcome | EventStoreError]]:
    """Plan the rows to insert for ``batch`` and each append's outcome.

    ``stored_by_id`` holds the rows already in the log for the batch's event ids;
    ``stream_version`` reads a stream's version from the log (called once per stream);
    ``gone``: subject keys no longer in the key table (read in the same transaction): an
    append sealed with one is refused (KeyDestroyed), so no content is ever stored sealed
    with a key destroyed before it (which would erase it unrecorded).
    """
    # recorded_at never decreases along the log, even if the clock steps back, so that a
    # point in time maps to a position by bisection.
    now_us = max(now_us, head.recorded_at)
    versions: dict[str, int] = {}
    rows: list[StoredEvent] = []
    outcomes: list[AppendOutcome | EventStoreError] = []
    for append in batch:
        try:
            destroyed = {k for e in append.events for k in e.keys if k in gone}
            if destroyed and not any(e.event_id in stored_by_id for e in append.events):
                raise KeyDestroyed(destroyed)  # a replay is answered from what is stored
            outcome = _plan_one(append, now_us, head, stored_by_id, versions, stream_version)
        except EventStoreError as e:
            if append.lane is not None:
                append.lane.broken = True
            outcomes.append(e)
            continue
        if not outcome.duplicate:
            rows.extend(outcome.events)
            for row in outcome.events:
                stored_by_id[row.event_id] = row
        outcomes.append(outcome)
    return rows, outcomes


def _plan_one(
    append: PendingAppend,
    now_us: int,
    head: Head,
    stored_by_id: dict[str, StoredEvent],
    versions: dict[str, int],
    stream_version: Callable[[str], int],
) -> AppendOutcome:
    stored = [stored_by_id.get(event.event_id) for event in append.events]
    if any(row is not None for row in stored):
        return _replay(append, stored)

    stream_id = append.stream_id
    current = versions.get(stream_id)
    if current is None:
        current = stream_version(stream_id)
    if not version_matches(append.expected, current) or (
        append.lane is not None and append.lane.broken
    ):
        raise VersionConflict(stream_id, append.expected, current)

    planned: list[StoredEvent] = []
    position, previous = head.position, head.hash
    for version, event in enumerate(append.events, start=current + 1):
        position += 1
        fields = (
            position,
            stream_id,
            version,
            event.event_id,
            event.type,
            event.data,
            event.metadata,
            event.tenant,
            event.actor,
            now_us,
        )
        previous = chain_hash(previous, fields)
        planned.append(StoredEvent(*fields, previous))
    head.position, head.hash, head.recorded_at = position, previous, now_us
    versions[stream_id] = current + len(append.events)
    return AppendOutcome(stream_id, planned, duplicate=False)


def _replay(append: PendingAppend, stored: list[StoredEvent | None]) -> AppendOutcome:
    """A retry of an append already stored: the same events, in the same stream, in order."""
    for event, row in zip(append.events, stored, strict=True):
        if (
            row is None
            or row.stream_id != append.stream_id
            or row.type != event.type
            or (row.data != event.data and not resealed(row.data, event.data))
        ):
            raise DuplicateEventId(event.event_id)
    rows = [row for row in stored if row is not None]
    first = rows[0].version
    if [row.version for row in rows] != list(range(first, first + len(rows))):
        # The ids were stored, but by appends other than this one.
        raise DuplicateEventId(append.events[0].event_id)
    return AppendOutcome(append.stream_id, rows, duplicate=True)
