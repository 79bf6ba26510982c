"""ctxlog's event log: an append-only, concurrent, verifiable store of context events.

The package's names are imported when first used (PEP 562), not when the package is: a client
that only needs the event Structs (``eventstore.events``, through ``api.rest.schemas``) then
imports msgspec and nothing of the store (SQLite, keys, cryptography).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .errors import (
        CorruptEvent,
        DriverMissing,
        DuplicateEventId,
        EventStoreError,
        EventTooLarge,
        InvalidEvent,
        InvalidStreamId,
        KeyDestroyed,
        SchemaTooNew,
        StoreClosed,
        StoreUnavailable,
        UnknownEventType,
        VersionConflict,
    )
    from .events import (
        EVENT_TYPES,
        PINNED_ROLES,
        Blob,
        CheckpointContent,
        CheckpointRef,
        CheckpointSaved,
        CheckpointsRemoved,
        CheckpointWritesRecorded,
        Content,
        ContextCreated,
        ContextDeleted,
        ContextForked,
        ContextRolledBack,
        Event,
        EventBase,
        EventMetadata,
        Extra,
        FilePart,
        ImagePart,
        MessageAppended,
        MessageEdited,
        MessageRedacted,
        MetadataUpdated,
        OpaquePart,
        Part,
        RefusalPart,
        Role,
        Sealed,
        SealLayer,
        SubjectErased,
        SummaryAdded,
        TextPart,
        ToolCallPart,
        ToolResultPart,
        Typed,
        WindowConfigured,
        WindowServed,
        WindowSettings,
        Write,
        WritesContent,
        event_type,
    )
    from .ids import new_id
    from .integrity import VerifyReport
    from .observe import Observers, StoreObserver
    from .recorder import (
        ANY,
        NO_FILTER,
        NO_STREAM,
        STREAM_EXISTS,
        ChainBreak,
        ExpectedVersion,
        Lane,
        LogFilter,
        Recorder,
        StoredEvent,
        StreamInfo,
        StreamState,
    )
    from .sealing import ERASED
    from .sqlite import SQLiteRecorder
    from .store import (
        AppendResult,
        EventStore,
        RecordedEvent,
        decode,
        to_datetime,
        to_micros,
    )

__all__ = [
    "ANY",
    "ERASED",
    "EVENT_TYPES",
    "NO_FILTER",
    "NO_STREAM",
    "PINNED_ROLES",
    "STREAM_EXISTS",
    "AppendResult",
    "Blob",
    "ChainBreak",
    "CheckpointContent",
    "CheckpointRef",
    "CheckpointSaved",
    "CheckpointWritesRecorded",
    "CheckpointsRemoved",
    "Content",
    "ContextCreated",
    "ContextDeleted",
    "ContextForked",
    "ContextRolledBack",
    "CorruptEvent",
    "DriverMissing",
    "DuplicateEventId",
    "Event",
    "EventBase",
    "EventMetadata",
    "EventStore",
    "EventStoreError",
    "EventTooLarge",
    "ExpectedVersion",
    "Extra",
    "FilePart",
    "ImagePart",
    "InvalidEvent",
    "InvalidStreamId",
    "KeyDestroyed",
    "Lane",
    "LogFilter",
    "MessageAppended",
    "MessageEdited",
    "MessageRedacted",
    "MetadataUpdated",
    "Observers",
    "OpaquePart",
    "Part",
    "RecordedEvent",
    "Recorder",
    "RefusalPart",
    "Role",
    "SQLiteRecorder",
    "SchemaTooNew",
    "SealLayer",
    "Sealed",
    "StoreClosed",
    "StoreObserver",
    "StoreUnavailable",
    "StoredEvent",
    "StreamInfo",
    "StreamState",
    "SubjectErased",
    "SummaryAdded",
    "TextPart",
    "ToolCallPart",
    "ToolResultPart",
    "Typed",
    "UnknownEventType",
    "VerifyReport",
    "VersionConflict",
    "WindowConfigured",
    "WindowServed",
    "WindowSettings",
    "Write",
    "WritesContent",
    "decode",
    "event_type",
    "new_id",
    "to_datetime",
    "to_micros",
]


_MODULES = ("errors", "events", "ids", "observe", "recorder", "sealing", "sqlite", "store")
"""Where the names of ``__all__`` are defined, searched in this order on first use."""


def __getattr__(name: str) -> Any:
    """A name of ``__all__``, imported from its module on first use and kept."""
    if name in __all__:
        for module_name in _MODULES:
            module = importlib.import_module(f".{module_name}", __name__)
            if name in vars(module):
                value = vars(module)[name]
                globals()[name] = value
                return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
