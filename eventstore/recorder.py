"""The recorder contract: what a storage backend must do, in raw rows.

The store encodes and decodes; a recorder only keeps rows. Every backend passes the same
contract suite (``tests/test_eventstore_recorder_contract.py``).
"""

from __future__ import annotations

import abc
import enum
import re
from collections.abc import Callable
from typing import TYPE_CHECKING

import msgspec

from .errors import EventStoreError, InvalidStreamId

if TYPE_CHECKING:
    from .keystore import SubjectKey


class StreamState(enum.Enum):
    """Expectations about a stream that are not an exact version."""

    ANY = "any"
    NO_STREAM = "no_stream"
    STREAM_EXISTS = "stream_exists"

    def __str__(self) -> str:
        return self.value


ANY = StreamState.ANY
NO_STREAM = StreamState.NO_STREAM
STREAM_EXISTS = StreamState.STREAM_EXISTS

ExpectedVersion = StreamState | int
"""ANY, NO_STREAM, STREAM_EXISTS, or the exact version the stream must be at (0: no stream)."""


class Lane:
    """Appends to one stream that follow each other without reading it in between.

    Each append given the lane takes as its expected version the version the append queued
    before it will leave, at the moment it is queued for the writer (nothing runs in
    between), so several appends join one group commit and take consecutive versions, while
    any other write to the stream still makes them conflict. ``version`` None: not known;
    the first taker starts the lane at the version it validated against.

    Once one of its appends is refused the lane is ``broken``, and the writer refuses every
    later one: their expected versions assumed the refused append's events, so another
    writer's events of the same count would otherwise match them by coincidence, and an
    append validated against a state that never existed would be stored (after a delete, or
    a change of subject)."""

    __slots__ = ("broken", "version")

    def __init__(self) -> None:
        self.version: int | None = None
        self.broken = False

    def take(self, count: int, base: int) -> int:
        """The expected version of an append of ``count`` events (``base``: the version its
        caller read, used when the lane does not know one yet)."""
        expected = base if self.version is None else self.version
        self.version = expected + count
        return expected


def version_matches(expected: ExpectedVersion, actual: int) -> bool:
    """Whether a stream at ``actual`` satisfies ``expected``."""
    if expected is ANY:
        return True
    if expected is NO_STREAM:
        return actual == 0
    if expected is STREAM_EXISTS:
        return actual > 0
    return actual == expected


_STREAM_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}")


def check_stream_id(stream_id: object) -> str:
    """Return ``stream_id`` if it is a well-formed stream id, else raise InvalidStreamId."""
    if not isinstance(stream_id, str) or not _STREAM_ID.fullmatch(stream_id):
        raise InvalidStreamId(
            f"invalid stream id {stream_id!r}: 1-128 characters of A-Z a-z 0-9 . _ : @ -,"
            " starting with a letter or digit"
        )
    return stream_id


class NewEvent(msgspec.Struct, frozen=True):
    """An encoded event on its way into the log."""

    event_id: str
    type: str
    data: bytes
    metadata: bytes
    tenant: str | None
    actor: str | None
    keys: tuple[str, ...] = ()
    """The subject keys ``data`` is sealed with: each must still exist when it commits."""


class PendingAppend(msgspec.Struct, frozen=True):
    """One caller's append: all of its events are stored, or none."""

    stream_id: str
    events: list[NewEvent]
    expected: ExpectedVersion
    minted: bool = False
    """Whether the store minted the event ids just now (``new_id``: 74 random bits after a
    timestamp): such ids cannot be in the log, so a commit does not look them up."""
    lane: Lane | None = None
    """The lane the append follows in, if any (``Lane.broken``)."""


def keys_to_check(batch: list[PendingAppend]) -> list[str]:
    """The subject keys the batch's events are sealed with (``NewEvent.keys``)."""
    return sorted({key for append in batch for event in append.events for key in event.keys})


def ids_to_look_up(batch: list[PendingAppend]) -> list[str]:
    """The event ids of a batch that may be stored already (the ones callers chose): their
    appends are replays, answered with what was stored."""
    return [event.event_id for append in batch if not append.minted for event in append.events]


class StoredEvent(msgspec.Struct, frozen=True):
    """A row of the log as stored: envelope columns and the still-encoded data."""

    position: int
    stream_id: str
    version: int
    event_id: str
    type: str
    data: bytes
    metadata: bytes
    tenant: str | None
    actor: str | None
    recorded_at: int
    """Microseconds since the Unix epoch, UTC; never decreases along the log."""
    hash: bytes


class AppendOutcome(msgspec.Struct, frozen=True):
    """What an append stored; ``duplicate`` when it was a retry of events already stored."""

    stream_id: str
    events: list[StoredEvent]
    duplicate: bool


class LogFilter(msgspec.Struct, frozen=True, kw_only=True):
    """Which events of the global log a reader wants; None means 'any'."""

    types: tuple[str, ...] | None = None
    stream_id: str | None = None
    tenant: str | None = None
    actor: str | None = None
    since: int | None = None
    """Earliest recorded_at, inclusive (µs since the epoch)."""
    until: int | None = None
    """Latest recorded_at, exclusive (µs since the epoch)."""

    def matches(self, row: StoredEvent) -> bool:
        """Whether a row passes the filter (the SQL of each backend says the same)."""
        return (
            (self.types is None or row.type in self.types)
            and (self.stream_id is None or row.stream_id == self.stream_id)
            and (self.tenant is None or row.tenant == self.tenant)
            and (self.actor is None or row.actor == self.actor)
            and (self.since is None or row.recorded_at >= self.since)
            and (self.until is None or row.recorded_at < self.until)
        )


NO_FILTER = LogFilter()


class LogPage(msgspec.Struct, frozen=True):
    """A page of the global log and the position it was read through.

    ``through`` is where the next page starts: the last event's position when the page is
    full, else the head of the log at the time of the read (so a filtered reader skips what
    it has already scanned).
    """

    events: list[StoredEvent]
    through: int


class StreamInfo(msgspec.Struct, frozen=True):
    """A stream as listed: its id, where and when it began, and its tenant."""

    stream_id: str
    position: int
    tenant: str | None
    created_at: int


class ChainBreak(msgspec.Struct, frozen=True):
    """The first place where the log is not what its hash chain says."""

    position: int
    reason: str


Progress = Callable[[int, int], None]
"""Called with (done, total) during long operations."""


class Recorder(abc.ABC):
    """A storage backend for the log. Every method translates driver errors to EventStoreError."""

    supports_concurrent_reads: bool = True
    last_sync: float | None = None
    """Seconds the last commit's COMMIT took (mostly its fsync), for backends that time it."""

    async def listen(self, on_head: Callable[[int], None]) -> bool:
        """Call ``on_head(position)`` whenever any process commits up to ``position``, until
        ``close``; False when the backend cannot tell (followers then poll the log).

        A hint, never the truth: a notification may be late, repeated or lost (``on_head``
        is also called, with a position past any head, when notifications may have been
        missed), and whoever is woken reads the log."""
        del on_head
        return False

    async def lead(self, duty: str) -> bool:
        """Whether this process holds ``duty`` for every process on this log (one at a time),
        taking it when free. Held until this process (or its connection) goes: then another
        one's next call takes it. Backends without several processes always hold it."""
        del duty
        return True

    @abc.abstractmethod
    async def open(self) -> None:
        """Connect, create the schema when missing, refuse a newer schema."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release every connection."""

    @abc.abstractmethod
    async def commit(
        self, batch: list[PendingAppend], now_us: int
    ) -> list[AppendOutcome | EventStoreError]:
        """Store a batch in one transaction; one outcome (or error) per append, in order.

        Each append is checked against the log as left by the appends before it in the
        batch: an idempotent retry returns the stored events, a conflict fails only that
        append. Raises (and stores nothing) only when the transaction itself fails.
        """

    @abc.abstractmethod
    async def import_rows(self, rows: list[StoredEvent]) -> None:
        """Store rows exactly as given (positions, versions, ids, timestamps, hashes), in one
        transaction, if they continue the log (``continuity.Continuity``); otherwise raise
        ``continuity.ChainBroken`` and store nothing. How an export is imported."""

    @abc.abstractmethod
    async def read_stream(
        self, stream_id: str, from_version: int | None, backward: bool, limit: int
    ) -> list[StoredEvent]:
        """Events of one stream from ``from_version`` (inclusive) on, in version order."""

    @abc.abstractmethod
    async def read_all(self, after: int, limit: int, filter: LogFilter) -> LogPage:
        """Events of the global log after position ``after`` that pass ``filter``."""

    @abc.abstractmethod
    async def stream_version(self, stream_id: str) -> int:
        """The stream's current version; 0 when it has no events."""

    @abc.abstractmethod
    async def stream_version_at(self, stream_id: str, at_us: int) -> int:
        """The stream's version as of ``at_us`` (its last event recorded at or before)."""

    @abc.abstractmethod
    async def streams_starting_with(self, prefix: str, limit: int) -> list[str]:
        """Up to ``limit`` ids of streams that start with ``prefix``, in id order (byte
        order: ``prefix_range``)."""

    @abc.abstractmethod
    async def head(self) -> tuple[int, bytes]:
        """The last position and its hash; (0, GENESIS) for an empty log."""

    @abc.abstractmethod
    async def list_streams(
        self, tenant: str | None, before: int | None, after: int | None, limit: int
    ) -> list[StreamInfo]:
        """Streams by creation; newest first with ``before``, oldest first with ``after``."""

    @abc.abstractmethod
    async def stored_bytes(self) -> int | None:
        """The bytes the log takes where it is stored, indexes included (None in memory)."""

    @abc.abstractmethod
    async def has_tenants(self) -> bool:
        """Whether any stream belongs to a tenant: one probe of the partial index of stream
        starts (cheap on any log), for a server that would serve the log without keys."""

    @abc.abstractmethod
    async def subject_key(
        self, tenant: str, subject: str, candidate: tuple[str, bytes], now_us: int
    ) -> tuple[str, bytes]:
        """The (key id, key) of a subject in a tenant, storing ``candidate`` when it has none."""

    @abc.abstractmethod
    async def keys_by_id(self, key_ids: list[str]) -> dict[str, bytes]:
        """The keys of ``key_ids`` that still exist (a destroyed key is simply absent)."""

    @abc.abstractmethod
    async def destroy_subject_key(self, tenant: str, subject: str) -> list[str]:
        """Destroy the subject's key so that no copy stays in the database; the ids of the
        keys destroyed (none for an unknown or already erased subject)."""

    @abc.abstractmethod
    async def read_keys(self, after: str, limit: int) -> list[SubjectKey]:
        """Up to ``limit`` subject keys in key id order, after key id ``after`` ("" for the
        first): how an export pages through the key table."""

    @abc.abstractmethod
    async def import_keys(self, keys: list[SubjectKey]) -> None:
        """Store key rows exactly as given, in one transaction; ``keystore.KeyConflict``, and
        nothing stored, if a key id or (tenant, subject) is already stored. How an import
        restores the keys of an export."""


def prefix_range(prefix: str) -> tuple[str, str]:
    """``[low, high)`` holding every id that starts with ``prefix`` and no other, in byte
    order (SQLite's BINARY collation, PostgreSQL's "C"): UTF-8 sorts as code points do, and
    no character sorts after U+10FFFF."""
    return prefix, prefix + "\U0010ffff"
