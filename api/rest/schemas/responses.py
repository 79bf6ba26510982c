"""What the API answers with: one Struct per response body, built from the layers' results by
``api/rest/render.py`` (handlers never build JSON by hand)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from eventstore import Content, Event, EventMetadata, Role, WindowSettings

from .base import Metadata, Position, Response


class MessageOut(Response, frozen=True, kw_only=True):
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


class SummaryOut(Response, frozen=True, kw_only=True):
    """A summary standing in for every message through ``through_message_id``."""

    id: str
    text: str
    through_message_id: str
    version: int
    tokens: int


class VersionRef(Response, frozen=True, kw_only=True):
    """A context at a version (a fork's parent, a fork)."""

    context_id: str
    version: int


class ContextOut(Response, frozen=True, kw_only=True):
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
    updated_by: str | None = None
    """The actor the latest event named (None: it named none)."""
    next: str | None = None
    """When not every message is in ``messages`` (past the server's response budget, or a
    fork's answer, which holds none): the page of messages that follows, at this version."""


class ContextListItem(Response, frozen=True, kw_only=True):
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
    updated_by: str | None = None
    """The actor the latest event named (None: it named none)."""


class ContextList(Response, frozen=True, kw_only=True):
    """A page of contexts, newest first; pass ``next_cursor`` as ``cursor`` for the next."""

    contexts: list[ContextListItem]
    next_cursor: str | None


class MessagePageOut(Response, frozen=True, kw_only=True):
    """A page of a context's messages at ``version``: ``seqs`` are their places (0-based),
    ``total`` how many it holds; pass ``next_after`` as ``after`` to continue (None: no
    more)."""

    context_id: str
    version: int
    total: int
    messages: list[MessageOut]
    seqs: list[int]
    next_after: int | None


class Appended(Response, frozen=True, kw_only=True):
    """The minimal answer to an append (``Prefer: return=minimal``)."""

    version: int
    message_ids: list[str]


class EventOut(Response, frozen=True, kw_only=True):
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


class EventPage(Response, frozen=True, kw_only=True):
    """Events of one context; ``next_from_version`` continues (None: no more)."""

    events: list[EventOut]
    next_from_version: int | None


class AuditPage(Response, frozen=True, kw_only=True):
    """Events of the whole log (the caller's tenant); pass ``next_after`` as ``after`` to
    continue (with API keys: the tenant's last event read, never the log's head)."""

    events: list[EventOut]
    next_after: Position


class LineageOut(Response, frozen=True, kw_only=True):
    """Where a context came from (parent first) and its direct forks."""

    id: str
    ancestors: list[VersionRef]
    forks: list[VersionRef]


class Root(Response, frozen=True, kw_only=True):
    """``GET /``: what this server is."""

    name: str
    version: str
    docs_url: str


class Health(Response, frozen=True, kw_only=True):
    """``GET /healthz`` and ``GET /readyz``: ``ok`` once the projector has caught up and
    applies the log; ``starting`` while it catches up at start; ``behind`` while it retries
    after a transient error (a full disk); ``failed`` while it retries after any other
    error, or when the server could not start. ``reason`` says why when not ``ok``, and
    ``retry_after`` (seconds) when a retry is due."""

    status: Literal["ok", "starting", "behind", "failed"]
    version: str
    reason: str | None = None
    retry_after: int | None = None


class Capabilities(Response, frozen=True, kw_only=True):
    """``GET /mcp/capabilities``."""

    version: str
    capabilities: list[str]


class ErrorDetail(Response, frozen=True, kw_only=True):
    """What went wrong: a stable ``code``, a message for people, and structured details."""

    code: str
    message: str
    details: dict[str, Any]


class ErrorOut(Response, frozen=True, kw_only=True):
    """Every error response."""

    error: ErrorDetail


class SubjectErasedOut(Response, frozen=True, kw_only=True):
    """``POST /subjects/{subject}/erase``: the subject's key was destroyed (0 keys when it
    was unknown or already erased), and the contexts whose content of it reads "[erased]"."""

    subject: str
    tenant: str | None
    keys_destroyed: int
    contexts: list[str]
