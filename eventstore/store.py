"""The event store: what the rest of ctxlog calls. It encodes, validates and decodes;
the writer commits; the recorder keeps rows."""

from __future__ import annotations

import functools
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Self
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import msgspec

from .codec import encoder, event_decoder, metadata_decoder
from .errors import (
    CorruptEvent,
    DriverMissing,
    EventTooLarge,
    InvalidEvent,
    KeyDestroyed,
    UnknownEventType,
)
from .events import EVENT_TYPES, Event, EventBase, EventMetadata, SubjectErased, event_type
from .ids import new_id
from .integrity import VerifyReport, walk_chain
from .observe import StoreObserver
from .recorder import (
    ANY,
    NO_FILTER,
    ExpectedVersion,
    Lane,
    LogFilter,
    NewEvent,
    PendingAppend,
    Progress,
    Recorder,
    StoredEvent,
    StreamInfo,
    check_stream_id,
)
from .sealing import KeyRef, Keyring, SealBroken, key_refs, seal, subjects_for, unseal
from .sqlite import SQLiteRecorder, Synchronous
from .subscription import DEFAULT_MAX_BYTES, LiveFeed, follow
from .writer import Writer

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
BACKSTOP_POLL = 5.0
"""Seconds between a quiet follower's log reads when the backend announces other processes'
commits (``Recorder.listen``): only what a lost announcement missed waits that long."""
_SEAL_ATTEMPTS = 3
"""Appends sealed again after an erasure destroyed their key mid-append, before giving up."""
DEFAULT_MAX_EVENT_BYTES = 1 << 20


@functools.lru_cache(maxsize=4096)
def to_datetime(us: int) -> datetime:
    """Microseconds since the epoch as an aware UTC datetime (exact, no float rounding).

    Cached: a batch's events share one timestamp, and decoding is the read path's cost.
    """
    return EPOCH + timedelta(microseconds=us)


@functools.lru_cache(maxsize=4096)
def _decode_metadata(raw: bytes) -> EventMetadata:
    # Few distinct metadata values (one per actor and request) recur across many events.
    return metadata_decoder.decode(raw)


def to_micros(at: datetime) -> int:
    """An aware datetime as microseconds since the epoch; naive datetimes are taken as UTC."""
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return (at - EPOCH) // timedelta(microseconds=1)


class RecordedEvent(msgspec.Struct, frozen=True):
    """An event as the log recorded it: where, when, by whom, and its place in the hash chain."""

    position: int
    stream_id: str
    version: int
    event_id: str
    type: str
    event: Event
    metadata: EventMetadata
    recorded_at: datetime
    hash: str
    sealed_by: tuple[KeyRef, ...] = ()
    """The keys the event's content is sealed with in the log, innermost first (none when
    it is not sealed); the content itself is already decrypted, or reads ``ERASED``."""


class AppendResult(msgspec.Struct, frozen=True):
    """What an append stored (or, for a retry, had stored the first time)."""

    stream_id: str
    version: int
    positions: list[int]
    event_ids: list[str]
    recorded_at: datetime
    duplicate: bool


def decode(row: StoredEvent) -> RecordedEvent:
    """A stored row as a RecordedEvent; CorruptEvent/UnknownEventType if it cannot be read.

    Sealed content stays sealed here (``EventStore`` reads unseal it with the subject keys).
    """
    try:
        event = event_decoder.decode(row.data)
        metadata = _decode_metadata(row.metadata)
    except msgspec.DecodeError as e:
        if row.type not in EVENT_TYPES:
            raise UnknownEventType(row.type, row.position) from e
        raise CorruptEvent(row.position, str(e)) from e
    return RecordedEvent(
        row.position,
        row.stream_id,
        row.version,
        row.event_id,
        row.type,
        event,
        metadata,
        to_datetime(row.recorded_at),
        row.hash.hex(),
    )


class EventStore:
    """Append-only, concurrent, verifiable storage of context events."""

    def __init__(
        self,
        recorder: Recorder,
        *,
        max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES,
        follower_bytes: int = DEFAULT_MAX_BYTES,
    ) -> None:
        self.recorder = recorder
        self.max_event_bytes = max_event_bytes
        self.follower_bytes = follower_bytes
        """What a subscription may hold unread (``subscription``) unless it says otherwise."""
        self._feeds: set[LiveFeed] = set()
        self.listening = False
        """Whether other processes' commits are announced (else followers poll the log)."""
        self._writer = Writer(recorder, self._publish)
        self.keys = Keyring(recorder)
        """Subject keys: content of a subject is sealed with its key (``sealing``)."""

    @classmethod
    async def open_sqlite(
        cls,
        path: str,
        *,
        synchronous: Synchronous = "FULL",
        busy_timeout_ms: int = 5000,
        max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES,
        follower_bytes: int = DEFAULT_MAX_BYTES,
    ) -> Self:
        """Open (creating when missing) the log in a SQLite file, or ``:memory:``."""
        recorder = SQLiteRecorder(path, synchronous=synchronous, busy_timeout_ms=busy_timeout_ms)
        store = cls(recorder, max_event_bytes=max_event_bytes, follower_bytes=follower_bytes)
        await store.open()
        return store

    @classmethod
    async def open_url(
        cls,
        url: str,
        *,
        max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES,
        follower_bytes: int = DEFAULT_MAX_BYTES,
    ) -> Self:
        """Open the store a ``--db`` value names: a SQLite path, or a ``postgresql://`` DSN
        (with the ``postgres`` extra installed; ``?schema=NAME`` picks the schema)."""
        sizes = {"max_event_bytes": max_event_bytes, "follower_bytes": follower_bytes}
        if not url.startswith(("postgres://", "postgresql://")):
            return await cls.open_sqlite(
                url, max_event_bytes=max_event_bytes, follower_bytes=follower_bytes
            )
        # asyncpg is an optional extra: import it only when a DSN asks for it.
        try:
            from .postgres import PostgresRecorder  # noqa: PLC0415
        except ModuleNotFoundError as e:
            raise DriverMissing(e.name or "asyncpg") from e

        parts = urlsplit(url)
        query = dict(parse_qsl(parts.query))
        schema = query.pop("schema", "ctxlog")
        dsn = urlunsplit(parts._replace(query=urlencode(query)))
        store = cls(PostgresRecorder(dsn, schema=schema), **sizes)
        await store.open()
        return store

    async def open(self) -> None:
        """Open the recorder, listen for other processes' commits, and start the writer."""
        await self.recorder.open()
        try:
            self.listening = await self.recorder.listen(self._nudge)
        except BaseException:
            await self.recorder.close()
            raise
        self._writer.start()

    async def close(self) -> None:
        """Commit what is queued, then close the recorder."""
        await self._writer.close()
        await self.recorder.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def observe(self, observer: StoreObserver) -> None:
        """Tell ``observer`` about every commit and erasure from now on."""
        self._writer.observer = observer

    @property
    def batches(self) -> int:
        """Transactions committed by this store's writer so far."""
        return self._writer.batches

    # -- writing ----------------------------------------------------------------------------

    async def append(
        self,
        stream_id: str,
        events: Sequence[EventBase],
        expected_version: ExpectedVersion = ANY,
        *,
        metadata: EventMetadata | None = None,
        event_ids: Sequence[str | uuid.UUID] | None = None,
        subject: str | None = None,
        subjects: Sequence[Sequence[str]] | None = None,
        lane: Lane | None = None,
    ) -> AppendResult:
        """Append ``events`` to a stream atomically, if it is at ``expected_version`` (with a
        ``lane``: at the version the lane's previous append leaves, ``expected_version``
        being the version to start the lane at, see ``Lane``).

        Event ids are generated unless given. An append whose event ids are already stored
        returns what was stored then and writes nothing, whatever ``expected_version`` says.
        Content of data subjects is stored sealed with their keys in the metadata's tenant:
        ``subjects`` names them for each event (one list per event; with several, every one
        of their keys is needed to read it); without it, a message's own
        ``metadata.subject``, else ``subject``.
        """
        names = subjects_for(events, subject, subjects)
        tenant = metadata.tenant if metadata is not None else None
        for attempt in range(_SEAL_ATTEMPTS):
            keys: dict[str, tuple[str, bytes]] = {}
            for name in sorted({name for each in names for name in each}):
                keys[name] = await self.keys.for_subject(tenant, name, time.time_ns() // 1000)
            pending = self._prepare(
                stream_id, events, expected_version, metadata, event_ids, names, keys
            )
            if lane is not None and isinstance(expected_version, int):
                # Taken here, with no await before the append is queued: the order of the
                # lane's versions is the order of the writer's queue.
                expected = lane.take(len(pending.events), expected_version)
                pending = msgspec.structs.replace(pending, expected=expected, lane=lane)
            try:
                outcome = await self._writer.submit(pending)
                break
            except KeyDestroyed:
                # An erasure destroyed a key this append was sealed with (here or in another
                # process) before it committed: seal it again, with the subject's new key.
                self.keys.forget()
                if attempt == _SEAL_ATTEMPTS - 1:
                    raise
        rows = outcome.events
        return AppendResult(
            stream_id,
            rows[-1].version,
            [row.position for row in rows],
            [row.event_id for row in rows],
            to_datetime(rows[-1].recorded_at),
            outcome.duplicate,
        )

    def _prepare(
        self,
        stream_id: str,
        events: Sequence[EventBase],
        expected_version: ExpectedVersion,
        metadata: EventMetadata | None,
        event_ids: Sequence[str | uuid.UUID] | None,
        names: list[tuple[str, ...]],
        keys: dict[str, tuple[str, bytes]],
    ) -> PendingAppend:
        check_stream_id(stream_id)
        if isinstance(expected_version, int) and (
            isinstance(expected_version, bool) or expected_version < 0
        ):
            raise InvalidEvent(f"expected version must be >= 0, not {expected_version!r}")
        if not events:
            raise InvalidEvent("an append needs at least one event")
        if event_ids is None:
            ids = [new_id() for _ in events]
        elif len(event_ids) != len(events):
            raise InvalidEvent("one event id per event")
        else:
            ids = [_check_event_id(event_id) for event_id in event_ids]
        if len(set(ids)) != len(ids):
            raise InvalidEvent("event ids repeat within one append")
        meta = metadata or EventMetadata()
        # Text columns cannot hold NUL on every backend; refusing it here keeps one caller's
        # bad metadata from failing the whole group commit it would have joined.
        if any("\x00" in value for value in msgspec.structs.astuple(meta) if value):
            raise InvalidEvent("event metadata cannot contain NUL characters")
        meta_bytes = encoder.encode(meta)
        encoded = []
        for event_id, event, subjects in zip(ids, events, names, strict=True):
            if not isinstance(event, EventBase) or type(event) not in EVENT_TYPES.values():
                raise UnknownEventType(type(event).__name__)
            data = encoder.encode(event)
            # A Struct built in code is not checked against its types (msgspec checks when it
            # decodes): an event that would not decode must not reach the log, where every
            # reader, the projector first, would fail on it for good. Checked before sealing,
            # which would hide the content from the check. About 1 µs an event.
            try:
                event_decoder.decode(data)
            except msgspec.ValidationError as e:
                raise InvalidEvent(f"{event_type(event)} does not decode: {e}") from None
            sealing = [(name, *keys[name]) for name in subjects]
            if sealing:
                event = seal(event, event_id, sealing)  # noqa: PLW2901
                data = encoder.encode(event)
            if len(data) > self.max_event_bytes:
                raise EventTooLarge(len(data), self.max_event_bytes)
            encoded.append(NewEvent(
                event_id, event_type(event), data, meta_bytes, meta.tenant, meta.actor,
                tuple(key_id for _, key_id, _ in sealing),
            ))  # fmt: skip
        return PendingAppend(stream_id, encoded, expected_version, minted=event_ids is None)

    def _publish(self, rows: list[StoredEvent]) -> None:
        for feed in self._feeds:
            feed.push(rows)

    def _nudge(self, position: int) -> None:
        # Another process (or this one: each feed ignores what it was pushed) committed.
        for feed in self._feeds:
            feed.nudge(position)

    def notice(self, position: int) -> None:
        """The caller saw the log hold rows through ``position`` (``head``): followers that
        were not given them read the log now, instead of at their next poll (rows another
        process wrote, where no notification carries them)."""
        self._nudge(position)

    # -- reading ----------------------------------------------------------------------------

    async def read_stream(
        self,
        stream_id: str,
        from_version: int | None = None,
        *,
        backward: bool = False,
        limit: int = 1000,
    ) -> list[RecordedEvent]:
        """Up to ``limit`` events of a stream, forward from ``from_version`` (default: the
        first) or backward from it (default: the last)."""
        check_stream_id(stream_id)
        rows = await self.recorder.read_stream(
            stream_id, from_version, backward, _check_limit(limit)
        )
        return await self._unsealed([decode(row) for row in rows])

    async def _unsealed(self, recs: list[RecordedEvent]) -> list[RecordedEvent]:
        """``recs`` with sealed content decrypted (one key lookup per unknown key, not per
        event), or ``ERASED`` where a key was destroyed; each keeps the keys it was sealed
        with in ``sealed_by``.

        A ``subject.erased`` among them means a key was destroyed, perhaps by another
        process: the key cache is emptied before anything here is decrypted, so nothing read
        after the erasure was recorded decrypts under a key this process still remembers."""
        if any(isinstance(rec.event, SubjectErased) for rec in recs):
            self.keys.forget()
        refs = {rec.position: kr for rec in recs if (kr := key_refs(rec.event))}
        if not refs:
            return recs
        keys = await self.keys.by_ids({ref.key_id for found in refs.values() for ref in found})
        opened = []
        for rec in recs:
            found = refs.get(rec.position)
            if found:
                try:
                    event = unseal(rec.event, rec.event_id, keys)
                except SealBroken as e:
                    raise CorruptEvent(rec.position, str(e)) from e
                rec = msgspec.structs.replace(rec, event=event, sealed_by=found)  # noqa: PLW2901
            opened.append(rec)
        return opened

    async def erase_subject(self, tenant: str | None, subject: str) -> int:
        """Destroy the key of ``subject`` in ``tenant``: its sealed content reads as
        ``ERASED`` from now on, everywhere it is read from the log. Idempotent; returns how
        many keys were destroyed (0 for an unknown or already erased subject)."""
        return len(await self.destroy_subject_key(tenant, subject))

    async def destroy_subject_key(self, tenant: str | None, subject: str) -> list[str]:
        """``erase_subject``, returning the ids of the keys destroyed."""
        destroyed = await self.keys.destroy(tenant, subject)
        self._writer.observer.erased(len(destroyed))
        return destroyed

    async def iter_stream(
        self, stream_id: str, from_version: int = 1, to_version: int | None = None
    ) -> AsyncIterator[RecordedEvent]:
        """Every event of a stream from ``from_version`` through ``to_version``, in chunks."""
        check_stream_id(stream_id)
        version = from_version
        while to_version is None or version <= to_version:
            limit = 1000 if to_version is None else min(1000, to_version - version + 1)
            rows = await self.recorder.read_stream(stream_id, version, False, limit)
            for rec in await self._unsealed([decode(row) for row in rows]):
                yield rec
            if len(rows) < limit:
                return
            version = rows[-1].version + 1

    async def read_all(
        self, after: int = 0, limit: int = 1000, filter: LogFilter = NO_FILTER
    ) -> tuple[list[RecordedEvent], int]:
        """Events of the global log after ``after`` that pass ``filter``, and the position to
        continue from."""
        page = await self.recorder.read_all(after, _check_limit(limit), filter)
        return await self._unsealed([decode(row) for row in page.events]), page.through

    async def stream_version(self, stream_id: str) -> int:
        """A stream's current version; 0 when it does not exist."""
        return await self.recorder.stream_version(check_stream_id(stream_id))

    async def stream_version_at(self, stream_id: str, at: datetime) -> int:
        """A stream's version as of ``at``; 0 when it did not exist yet."""
        return await self.recorder.stream_version_at(check_stream_id(stream_id), to_micros(at))

    async def streams_starting_with(self, prefix: str, limit: int = 10) -> list[str]:
        """Up to ``limit`` ids of streams that start with ``prefix`` (itself a well-formed
        stream id), in id order: to find a stream from the first characters of its id."""
        return await self.recorder.streams_starting_with(
            check_stream_id(prefix), _check_limit(limit)
        )

    async def head(self) -> int:
        """The position of the last event; 0 for an empty log."""
        return (await self.recorder.head())[0]

    async def list_streams(
        self,
        *,
        tenant: str | None = None,
        before: int | None = None,
        after: int | None = None,
        limit: int = 100,
    ) -> list[StreamInfo]:
        """Streams by the position of their first event: newest first when ``before`` is
        given (use a huge value for 'from the newest'), oldest first otherwise."""
        return await self.recorder.list_streams(tenant, before, after, _check_limit(limit))

    async def stored_bytes(self) -> int | None:
        """The bytes the log takes where it is stored, indexes included (None in memory)."""
        return await self.recorder.stored_bytes()

    async def has_tenants(self) -> bool:
        """Whether any stream belongs to a tenant (cheap: one index probe). A server without
        API keys would serve such streams to every caller."""
        return await self.recorder.has_tenants()

    async def subscribe(
        self,
        after: int = 0,
        filter: LogFilter = NO_FILTER,
        *,
        poll_interval: float = 1.0,
        capacity: int = 10_000,
        max_bytes: int | None = None,
    ) -> AsyncGenerator[RecordedEvent, None]:
        """Every event after position ``after`` that passes ``filter``, then live, forever.

        It holds at most about ``max_bytes`` (default: ``follower_bytes``) of rows its
        consumer has not taken yet; past that it reads the log again. Close it with
        ``aclose()`` (or ``contextlib.aclosing``) when done. Commits of other processes arrive
        as soon as they are announced when the store is ``listening``; otherwise with the next
        poll, every ``poll_interval`` seconds.
        """
        rows = follow(
            self.recorder.read_all,
            self._feeds,
            after,
            filter,
            poll_interval=max(poll_interval, BACKSTOP_POLL) if self.listening else poll_interval,
            capacity=capacity,
            max_bytes=self.follower_bytes if max_bytes is None else max_bytes,
        )
        try:
            async for row in rows:
                for rec in await self._unsealed([decode(row)]):
                    yield rec
        finally:
            await rows.aclose()

    # -- integrity --------------------------------------------------------------------------

    async def verify(
        self, progress: Progress | None = None, chunk: int = 10_000, *, keys: bool = False
    ) -> VerifyReport:
        """Walk the whole log, recomputing the hash chain; report the first break. With
        ``keys``, also the subject keys that sealed content and are gone with no
        ``subject.erased`` accounting for them (``integrity``)."""
        return await walk_chain(self.recorder, progress, chunk, keys=keys)


def _check_event_id(event_id: str | uuid.UUID) -> str:
    if isinstance(event_id, uuid.UUID):
        return str(event_id)
    try:
        return str(uuid.UUID(event_id))
    except (ValueError, TypeError, AttributeError) as e:
        raise InvalidEvent(f"event id {event_id!r} is not a UUID") from e


def _check_limit(limit: int) -> int:
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise InvalidEvent(f"limit must be a positive integer, not {limit!r}")
    return limit
