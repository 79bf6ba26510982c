"""Every request and response body (and query string) of the API, as msgspec Structs.

These are the single source of truth: requests are decoded and validated with them, and the
OpenAPI document (``api/openapi.py``) is generated from them. Request Structs forbid unknown
fields, so a client's typo is a 400, not a silently ignored field. ``api/render.py`` turns
projection states into these response bodies; handlers never build JSON by hand.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from eventstore import Content, Event, EventMetadata, Role, WindowSettings
from projections import Policy, StateDiff, Window

MAX_INT = 2**63 - 1
"""The largest integer a request may carry where the log keeps numbers (SQLite's INTEGER)."""
PositiveInt = Annotated[int, Meta(ge=1, le=MAX_INT)]
Version = Annotated[
    int, Meta(ge=0, le=MAX_INT, description="a context version (0: before it existed)")
]
Limit = Annotated[int, Meta(ge=1, le=1000)]
Position = Annotated[
    int,
    Meta(
        ge=0,
        le=MAX_INT,
        description=(
            "a position in the log as the caller is shown it (0: before the first event). "
            "With API keys it is the event's number among the caller's tenant's events (1, "
            "2, 3, ...), never the log's own position, so other tenants' writes never move "
            "it; on an open server (no keys) it is the log's position"
        ),
    ),
]
Metadata = dict[str, Any]

MCP_DEFAULT_MAX_TOKENS = 4096
MCP_CAPABILITIES = [
    "context_management",
    "message_history",
    "token_counting",
    "context_window_management",
    "time_travel",
    "fork",
    "rollback",
    "summaries",
    "live_updates",
]


class Request(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The base of request bodies and query strings: unknown fields are an error."""


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
    """The audit query: events after a position (``next_after`` of the page before),
    filtered; ``type`` may list several, comma-separated."""

    after: Position = 0
    limit: Limit = 100
    type: str | None = None
    context_id: uuid.UUID | None = None
    actor: str | None = None
    since: datetime | None = None
    until: datetime | None = None


class StreamQuery(Request, kw_only=True):
    """The live tail; ``after`` (or the Last-Event-ID header) resumes after a position (the
    id of the last event received)."""

    after: Position | None = None
    type: str | None = None
    context_id: uuid.UUID | None = None


# -- response bodies --------------------------------------------------------------------------


class Response(msgspec.Struct, frozen=True, kw_only=True):
    """The base of response bodies."""


class MessageOut(Response, kw_only=True):
    """A message as it is now; ``version`` is the version that appended it."""

    id: str
    role: Role
    content: Content
    name: str | None = None
    metadata: Metadata = {}
    version: int
    tokens: int
    edited_version: int | None = None
    redacted: bool = False
    content_hash: str | None = None


class SummaryOut(Response, kw_only=True):
    """A summary standing in for every message through ``through_message_id``."""

    id: str
    text: str
    through_message_id: str
    version: int
    tokens: int


class VersionRef(Response, kw_only=True):
    """A context at a version (a fork's parent, a fork)."""

    context_id: str
    version: int


class ContextOut(Response, kw_only=True):
    """A context: its messages, metadata and window; ``version`` is also the ETag."""

    id: str
    version: int
    messages: list[MessageOut]
    metadata: Metadata
    window: WindowSettings
    summaries: list[SummaryOut] = []
    parent: VersionRef | None = None
    token_encoding: str
    total_tokens: int
    created_at: datetime
    updated_at: datetime


class ContextListItem(Response, kw_only=True):
    """A context in a listing: everything but its messages."""

    id: str
    version: int
    metadata: Metadata
    window: WindowSettings
    message_count: int
    total_tokens: int
    parent: VersionRef | None = None
    created_at: datetime
    updated_at: datetime


class ContextList(Response, kw_only=True):
    """A page of contexts, newest first; pass ``next_cursor`` as ``cursor`` for the next."""

    contexts: list[ContextListItem]
    next_cursor: str | None


class Appended(Response, kw_only=True):
    """The minimal answer to an append (``Prefer: return=minimal``)."""

    version: int
    message_ids: list[str]


class EventOut(Response, kw_only=True):
    """One event of the log: where it is, what happened, who did it, and its chain hash.

    With API keys, ``position`` is the event's number among the tenant's events and
    ``hash`` is empty: the log's chain hash covers the event before it (perhaps another
    tenant's) and the log's position. An open server shows both as the log has them."""

    position: Position
    context_id: str
    version: int
    id: str
    type: str
    data: Event
    actor: str | None
    metadata: EventMetadata
    recorded_at: datetime
    hash: str


class EventPage(Response, kw_only=True):
    """Events of one context; ``next_from_version`` continues (None: no more)."""

    events: list[EventOut]
    next_from_version: int | None


class AuditPage(Response, kw_only=True):
    """Events of the whole log (the caller's tenant); pass ``next_after`` as ``after`` to
    continue (with API keys: the tenant's last event read, never the log's head)."""

    events: list[EventOut]
    next_after: Position


class LineageOut(Response, kw_only=True):
    """Where a context came from (parent first) and its direct forks."""

    id: str
    ancestors: list[VersionRef]
    forks: list[VersionRef]


class Root(Response, kw_only=True):
    """``GET /``: what this server is."""

    name: str
    version: str
    docs_url: str


class Health(Response, kw_only=True):
    """``GET /healthz``: ``ok`` once the projector has caught up, ``starting`` before."""

    status: Literal["ok", "starting", "failed"]
    version: str


class Capabilities(Response, kw_only=True):
    """``GET /mcp/capabilities``."""

    version: str
    capabilities: list[str]


class ErrorDetail(Response, kw_only=True):
    """What went wrong: a stable ``code``, a message for people, and structured details."""

    code: str
    message: str
    details: dict[str, Any]


class ErrorOut(Response, kw_only=True):
    """Every error response."""

    error: ErrorDetail


WindowOut = Window
DiffOut = StateDiff


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


class SubjectErasedOut(Response, kw_only=True):
    """``POST /subjects/{subject}/erase``: the subject's key was destroyed (0 keys when it
    was unknown or already erased), and the contexts whose content of it reads "[erased]"."""

    subject: str
    tenant: str | None
    keys_destroyed: int
    contexts: list[str]
