"""The event store's errors: what callers catch instead of driver exceptions."""

from __future__ import annotations


class EventStoreError(Exception):
    """Base of every error the event store raises."""


class InvalidStreamId(EventStoreError):
    """A stream id that is empty, too long or has characters outside the allowed set."""


class InvalidEvent(EventStoreError):
    """An event that cannot be stored: not an event type, a bad event id, an empty append."""


class UnknownEventType(InvalidEvent):
    """A type tag that no event class carries."""

    def __init__(self, type_: str, position: int | None = None) -> None:
        where = f" at position {position}" if position is not None else ""
        super().__init__(f"unknown event type {type_!r}{where}")
        self.type = type_
        self.position = position


class EventTooLarge(InvalidEvent):
    """An event whose encoded data exceeds the store's size limit."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"event is {size} bytes, over the limit of {limit}")
        self.size = size
        self.limit = limit


class VersionConflict(EventStoreError):
    """The stream was not at the version the append expected."""

    def __init__(self, stream_id: str, expected: object, actual: int) -> None:
        super().__init__(
            f"stream {stream_id!r} is at version {actual}, the append expected {expected}"
        )
        self.stream_id = stream_id
        self.expected = expected
        self.actual = actual


class DuplicateEventId(EventStoreError):
    """An event id already stored with different content (or in another append)."""

    def __init__(self, event_id: str) -> None:
        super().__init__(f"event id {event_id} was already used for a different event")
        self.event_id = event_id


class KeyDestroyed(EventStoreError):
    """An append sealed with a subject key that was destroyed before it could commit (an
    erasure got in between): the store seals it again with the subject's new key."""

    def __init__(self, key_ids: set[str]) -> None:
        super().__init__(f"subject keys destroyed while sealing: {sorted(key_ids)}")
        self.key_ids = key_ids


class CorruptEvent(EventStoreError):
    """A stored row that cannot be decoded."""

    def __init__(self, position: int, reason: str) -> None:
        super().__init__(f"event at position {position} cannot be decoded: {reason}")
        self.position = position


class SchemaTooNew(EventStoreError):
    """The database was written by a newer ctxlog whose schema this version does not know."""

    def __init__(self, found: int, supported: int) -> None:
        super().__init__(
            f"database schema version {found} is newer than this ctxlog supports ({supported});"
            " upgrade ctxlog to open it"
        )
        self.found = found
        self.supported = supported


class StoreClosed(EventStoreError):
    """The store was closed; nothing more can be appended or read."""


class DriverMissing(EventStoreError):
    """A ``postgresql://`` database was named, and the ``postgres`` extra is not installed."""

    def __init__(self, module: str) -> None:
        super().__init__(
            f"a postgresql:// database needs the postgres extra ({module} is not installed):"
            " pip install 'ctxlog[postgres]'"
        )
        self.module = module


class StoreUnavailable(EventStoreError):
    """The database failed (I/O error, locked past the busy timeout, disk full).

    Nothing of the failed operation was written.
    """
