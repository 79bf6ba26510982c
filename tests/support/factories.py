"""Builders for RecordedEvents and states, for the pure projection tests (no store involved),
and stand-ins the storage tests put in a real object's place."""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from eventstore.events import (
    Content,
    ContextCreated,
    Event,
    EventMetadata,
    MessageAppended,
    Role,
    event_type,
)
from eventstore.store import RecordedEvent
from projections import ContextState, TokenCounter, fold

COUNTER = TokenCounter("cl100k_base")
T0 = datetime(2025, 1, 1, tzinfo=UTC)


class Stream:
    """One context's events, recorded with consecutive versions, a second apart."""

    def __init__(self, stream_id: str = "ctx", tenant: str | None = "acme") -> None:
        self.stream_id = stream_id
        self.tenant = tenant
        self.events: list[RecordedEvent] = []

    def add(self, *events: Event, actor: str | None = "tester") -> Stream:
        """Record ``events`` after the ones already here, each naming ``actor``."""
        for event in events:
            version = len(self.events) + 1
            self.events.append(
                RecordedEvent(
                    position=version,
                    stream_id=self.stream_id,
                    version=version,
                    event_id=str(uuid.uuid4()),
                    type=event_type(event),
                    event=event,
                    metadata=EventMetadata(actor=actor, tenant=self.tenant),
                    recorded_at=T0 + timedelta(seconds=version),
                    hash="",
                )
            )
        return self

    def state(self, version: int | None = None, resolve: Any = None) -> ContextState:
        """The fold of the first ``version`` events (all by default)."""
        upto = self.events if version is None else self.events[:version]
        return fold(upto, counter=COUNTER, resolve=resolve)


def msg(
    message_id: str, content: Content, role: Role = "user", name: str | None = None
) -> MessageAppended:
    """A MessageAppended."""
    return MessageAppended(message_id=message_id, role=role, content=content, name=name)


def content_of(rec: RecordedEvent) -> Content:
    """The content of a recorded MessageAppended (any other event fails the test)."""
    assert isinstance(rec.event, MessageAppended), rec.event
    return rec.event.content


def created(**metadata: Any) -> ContextCreated:
    """A ContextCreated with this metadata."""
    return ContextCreated(metadata=metadata)


def resolver(*streams: Stream) -> Callable[[str, int], ContextState]:
    """A Resolver folding these streams' prefixes, resolving recursively (forks of forks)."""
    by_id = {s.stream_id: s for s in streams}

    def resolve(context_id: str, version: int) -> ContextState:
        return by_id[context_id].state(version, resolve)

    return resolve


class FailingConnection:
    """Stands in for a sqlite3 connection on which every statement fails with ``message``
    ("database is locked" for a busy file)."""

    def __init__(self, message: str) -> None:
        self.message = message

    def execute(self, *args: object) -> None:
        raise sqlite3.OperationalError(self.message)

    def close(self) -> None:
        pass
