"""What clients send: request bodies, query strings and WebSocket frames. Every one forbids
unknown fields (``Request``), so a client's typo is a 400, not a silently ignored field."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from eventstore import Content, Role, WindowSettings
from projections import Policy

from .base import Limit, Metadata, PositiveInt, Request, Version

# -- request bodies ---------------------------------------------------------------------------


class WindowIn(Request, kw_only=True):
    """A context's default window: token budget, model (or encoding), and selection policy."""

    max_tokens: PositiveInt | None = None
    model: str | None = None
    encoding: str | None = None
    policy: Policy | None = None
    last_n: PositiveInt | None = None

    def settings(self) -> WindowSettings:
        """As the event store's WindowSettings."""
        return WindowSettings(**msgspec.structs.asdict(self))


class CreateContext(Request, kw_only=True):
    """``POST /contexts``: optional metadata and default window."""

    metadata: Metadata = {}
    window: WindowIn | None = None


class MessageIn(Request, kw_only=True):
    """One message to append; ``id`` (a UUID) is generated when missing."""

    role: Role
    content: Content
    name: str | None = None
    metadata: Metadata = {}
    id: uuid.UUID | None = None


class AppendMessages(Request, kw_only=True):
    """``POST /contexts/{id}/messages``: either one message (``role``, ``content``, …) or
    ``messages: [...]``, appended atomically. ``expected_version`` works like If-Match."""

    role: Role | None = None
    content: Content | None = None
    name: str | None = None
    metadata: Metadata | None = None
    id: uuid.UUID | None = None
    messages: Annotated[list[MessageIn], Meta(min_length=1, max_length=1000)] | None = None
    expected_version: Version | None = None


class EditMessage(Request, kw_only=True):
    """``PATCH /contexts/{id}/messages/{message_id}``: the new content."""

    content: Content
    expected_version: Version | None = None


class RedactMessage(Request, kw_only=True):
    """``POST /contexts/{id}/messages/{message_id}/redact``: why (optional)."""

    reason: str | None = None
    expected_version: Version | None = None


class Rollback(Request, kw_only=True):
    """``POST /contexts/{id}/rollback``: the version whose state the context returns to."""

    to_version: PositiveInt
    reason: str | None = None
    expected_version: Version | None = None


class Fork(Request, kw_only=True):
    """``POST /contexts/{id}/fork``: fork point (default: the current version), new metadata."""

    at_version: PositiveInt | None = None
    metadata: Metadata | None = None


class AddSummary(Request, kw_only=True):
    """``POST /contexts/{id}/summaries``: a summary covering messages through one message."""

    text: str
    through_message_id: uuid.UUID
    expected_version: Version | None = None


class DeleteContext(Request, kw_only=True):
    """``DELETE /contexts/{id}`` (optional body): why."""

    reason: str | None = None


# -- query strings ----------------------------------------------------------------------------


class GetContextQuery(Request, kw_only=True):
    """Time travel: the context as of a version, or as it was at an ISO-8601 time."""

    version: PositiveInt | None = None
    at: datetime | None = None


class ListQuery(Request, kw_only=True):
    """A page of contexts (``metadata.<key>=<value>`` filters are taken apart first)."""

    cursor: str | None = None
    limit: Limit = 50


class HistoryQuery(Request, kw_only=True):
    """Raw events of one context, from a version on, in either direction."""

    from_version: Version | None = None
    limit: Limit = 100
    direction: Literal["forward", "backward"] = "forward"


class WindowQuery(Request, kw_only=True):
    """Overrides of the context's window settings; ``record`` appends WindowServed."""

    max_tokens: PositiveInt | None = None
    model: str | None = None
    policy: Policy | None = None
    last_n: PositiveInt | None = None
    record: bool = False


class DiffQuery(Request, kw_only=True):
    """Two versions to compare (``to`` defaults to the current one)."""

    from_: Version = msgspec.field(name="from")
    to: Version | None = None


class AuditQuery(Request, kw_only=True):
    """The audit query: events after a log position, filtered; ``type`` may list several,
    comma-separated."""

    after: Version = 0
    limit: Limit = 100
    type: str | None = None
    context_id: uuid.UUID | None = None
    actor: str | None = None
    since: datetime | None = None
    until: datetime | None = None


class StreamQuery(Request, kw_only=True):
    """The live tail; ``after`` (or the Last-Event-ID header) resumes from a log position."""

    after: Version | None = None
    type: str | None = None
    context_id: uuid.UUID | None = None


# -- WebSocket frames -------------------------------------------------------------------------


class Frame(Request, kw_only=True, tag_field="type"):
    """The base of frames a WebSocket client sends; ``id`` is echoed in the answer."""

    id: str | None = None


class AppendFrame(Frame, kw_only=True, tag="append"):
    """Append one message (or several, atomically) to the socket's context."""

    message: MessageIn | None = None
    messages: Annotated[list[MessageIn], Meta(min_length=1, max_length=1000)] | None = None
    expected_version: Version | None = None


class PingFrame(Frame, tag="ping"):
    """Answered with ``{"type": "pong"}``."""


ClientFrame = AppendFrame | PingFrame
