"""What clients send: request bodies, query strings and WebSocket frames. Every one forbids
unknown fields (``Request``), so a client's typo is a 400, not a silently ignored field."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from eventstore import Content, Role, WindowSettings

from .base import MAX_INT, Format, Limit, Metadata, Policy, Position, PositiveInt, Request, Version

# -- request bodies ---------------------------------------------------------------------------


class WindowIn(Request, frozen=True, kw_only=True):
    """A context's default window: token budget, model (or encoding), and selection policy."""

    max_tokens: PositiveInt | None = None
    """Token budget of the window (none: no budget)."""
    model: str | None = None
    """Model the window is for; picks the tokenizer (e.g. gpt-4o)."""
    encoding: str | None = None
    """tiktoken encoding to count with when no model is given (e.g. o200k_base)."""
    policy: Policy | None = None
    """How messages are chosen: by token budget, or the last N."""
    last_n: PositiveInt | None = None
    """How many of the newest messages the last_n policy keeps."""

    def settings(self) -> WindowSettings:
        """As the event store's WindowSettings."""
        return WindowSettings(**msgspec.structs.asdict(self))


class CreateContext(Request, frozen=True, kw_only=True):
    """``POST /contexts``: optional metadata and default window."""

    metadata: Metadata = {}
    """Free-form JSON metadata; metadata.subject names a data subject for erasure."""
    window: WindowIn | None = None
    """The context's default window settings."""


class MessageIn(Request, frozen=True, kw_only=True):
    """One message to append; ``id`` (a UUID) is generated when missing."""

    role: Role
    """Who the message is from."""
    content: Content
    """Text, or a list of content parts (text, image, file, tool call, tool result)."""
    name: str | None = None
    """Optional name of the participant."""
    metadata: Metadata = {}
    """Free-form JSON metadata; metadata.subject names a data subject for erasure."""
    id: uuid.UUID | None = None
    """The message's id (a UUID); generated when missing."""


class AppendMessages(Request, frozen=True, kw_only=True):
    """``POST /contexts/{id}/messages``: either one message (``role``, ``content``, …) or
    ``messages: [...]``, appended atomically. ``expected_version`` works like If-Match."""

    role: Role | None = None
    """One message: who it is from (or use messages)."""
    content: Content | None = None
    """One message: its content (or use messages)."""
    name: str | None = None
    """One message: optional name of the participant."""
    metadata: Metadata | None = None
    """One message: free-form JSON metadata."""
    id: uuid.UUID | None = None
    """One message: its id (a UUID); generated when missing."""
    messages: Annotated[list[MessageIn], Meta(min_length=1, max_length=1000)] | None = None
    """Several messages, appended atomically in order."""
    expected_version: Version | None = None
    """Write only if nothing but recorded windows came after this version (like If-Match)."""


class OpenAIMessages(Request, frozen=True, kw_only=True):
    """``POST /contexts/{id}/messages?format=openai``: Chat Completions message params, as
    ``chat.completions.create(messages=...)`` takes them, appended atomically."""

    messages: Annotated[list[dict[str, Any]], Meta(min_length=1, max_length=1000)]
    """OpenAI ChatCompletionMessageParam objects (developer, system, user, assistant, tool)."""
    expected_version: Version | None = None
    """Write only if nothing but recorded windows came after this version (like If-Match)."""


class ResponsesItems(Request, frozen=True, kw_only=True):
    """``POST /contexts/{id}/messages?format=responses``: OpenAI Responses input items, as
    ``responses.create(input=...)`` takes them (``response.output`` too), appended atomically."""

    items: Annotated[list[dict[str, Any]], Meta(min_length=1, max_length=1000)]
    """Messages, function_call, function_call_output and reasoning items."""
    expected_version: Version | None = None
    """Write only if nothing but recorded windows came after this version (like If-Match)."""


class AnthropicMessages(Request, frozen=True, kw_only=True):
    """``POST /contexts/{id}/messages?format=anthropic``: an Anthropic Messages request's
    ``system`` and ``messages``, as ``messages.create(...)`` takes them, appended atomically."""

    system: str | list[dict[str, Any]] | None = None
    """The system prompt: a string or text blocks (stored as one system message)."""
    messages: Annotated[list[dict[str, Any]], Meta(max_length=1000)] = []
    """Anthropic MessageParam objects (user and assistant turns)."""
    expected_version: Version | None = None
    """Write only if nothing but recorded windows came after this version (like If-Match)."""


class AppendQuery(Request, frozen=True, kw_only=True):
    """The format of an append's body (default: ctxlog's own)."""

    format: Format | None = None
    """The body's format: openai, responses or anthropic (default: ctxlog's own messages)."""


class EditMessage(Request, frozen=True, kw_only=True):
    """``PATCH /contexts/{id}/messages/{message_id}``: the new content."""

    content: Content
    """The message's new content."""
    expected_version: Version | None = None
    """Write only if nothing but recorded windows came after this version (like If-Match)."""


class RedactMessage(Request, frozen=True, kw_only=True):
    """``POST /contexts/{id}/messages/{message_id}/redact``: why (optional)."""

    reason: str | None = None
    """Why the content was redacted (kept in the log)."""
    expected_version: Version | None = None
    """Write only if nothing but recorded windows came after this version (like If-Match)."""


class Rollback(Request, frozen=True, kw_only=True):
    """``POST /contexts/{id}/rollback``: the version whose state the context returns to."""

    to_version: PositiveInt
    """The version whose state the context returns to."""
    reason: str | None = None
    """Why (kept in the log)."""
    expected_version: Version | None = None
    """Write only if nothing but recorded windows came after this version (like If-Match)."""


class Fork(Request, frozen=True, kw_only=True):
    """``POST /contexts/{id}/fork``: fork point (default: the current version), new metadata."""

    at_version: PositiveInt | None = None
    """The version to fork from (default: the current one)."""
    metadata: Metadata | None = None
    """The fork's metadata (default: the parent's at the fork point)."""


class AddSummary(Request, frozen=True, kw_only=True):
    """``POST /contexts/{id}/summaries``: a summary covering messages through one message."""

    text: str
    """The summary that stands in for the messages it covers."""
    through_message_id: uuid.UUID
    """The last message the summary covers."""
    expected_version: Version | None = None
    """Write only if nothing but recorded windows came after this version (like If-Match)."""


class DeleteContext(Request, frozen=True, kw_only=True):
    """``DELETE /contexts/{id}`` (optional body): why."""

    reason: str | None = None
    """Why the context was deleted (kept in the log)."""


# -- query strings ----------------------------------------------------------------------------


class ReadAfter(Request, frozen=True, kw_only=True):
    """What every read of one context takes: the version the caller must find there."""

    min_version: PositiveInt | None = None
    """Answer only once this server holds at least this version of the context (the newest
    one the caller saw, perhaps from another server on the same database); 503 with
    Retry-After if it does not within ``min_version_wait`` seconds, 404 if the context has
    no such version."""


class GetContextQuery(ReadAfter, frozen=True, kw_only=True):
    """Time travel: the context as of a version, or as it was at an ISO-8601 time."""

    version: PositiveInt | None = None
    """Read the context as it was at this version."""
    at: datetime | None = None
    """Read the context as it was at this time (ISO 8601)."""
    messages: bool = True
    """false: leave the messages out (the rest of the context only; page them with GET
    /contexts/{id}/messages)."""


class ListQuery(Request, frozen=True, kw_only=True):
    """A page of contexts (``metadata.<key>=<value>`` filters, at most 20, each naming a
    top-level key as written, are taken apart first)."""

    cursor: str | None = None
    """next_cursor of the previous page."""
    limit: Limit = 50
    """Contexts per page."""


class MessagesQuery(ReadAfter, frozen=True, kw_only=True):
    """A page of a context's messages, now or at a version, in either direction."""

    version: PositiveInt | None = None
    """Page the messages as they were at this version (default: now)."""
    after: Annotated[int, Meta(ge=0, le=MAX_INT)] | None = None
    """Forward: messages after this place (0-based); backward: before it (default: from
    the start, or from the end going backward)."""
    limit: Limit = 100
    """Messages per page."""
    direction: Literal["forward", "backward"] = "forward"
    """Oldest first (forward) or newest first (backward)."""


class HistoryQuery(ReadAfter, frozen=True, kw_only=True):
    """Raw events of one context, from a version on, in either direction."""

    from_version: Version | None = None
    """First version to return (default: the first, or the last going backward)."""
    limit: Limit = 100
    """Events per page."""
    direction: Literal["forward", "backward"] = "forward"
    """Oldest first (forward) or newest first (backward)."""


class WindowQuery(ReadAfter, frozen=True, kw_only=True):
    """Overrides of the context's window settings, for one read."""

    max_tokens: PositiveInt | None = None
    """Token budget for this read (default: the context's)."""
    model: str | None = None
    """Model for this read; picks the tokenizer (default: the context's)."""
    policy: Policy | None = None
    """Selection policy for this read (default: the context's)."""
    last_n: PositiveInt | None = None
    """How many newest messages the last_n policy keeps, for this read."""
    format: Format | None = None
    """Also answer with messages ready to send in this format: openai, responses, anthropic."""


class RecordWindow(WindowQuery, frozen=True, kw_only=True):
    """``POST /contexts/{id}/window``: the window under these overrides, recorded as a
    window.served event (what the model was shown), as one write."""


class DiffQuery(ReadAfter, frozen=True, kw_only=True):
    """Two versions to compare (``to`` defaults to the current one)."""

    from_: Version = msgspec.field(name="from")
    """The version to compare from."""
    to: Version | None = None
    """The version to compare to (default: the current one)."""


class ParentDiffQuery(ReadAfter, frozen=True, kw_only=True):
    """A fork against its parent: the parent at a version (default: its current one)."""

    parent_version: PositiveInt | None = None
    """The parent's version to compare from (default: its current one; the fork point is
    the fork's parent.version)."""


class SearchQuery(Request, frozen=True, kw_only=True):
    """Full-text search over the current messages of the caller's contexts (or of one)."""

    q: Annotated[str, Meta(min_length=1, max_length=1000)]
    """Words that must all appear; a trailing * matches a prefix (tok*)."""
    context_id: uuid.UUID | None = None
    """Only this context's messages."""
    limit: Annotated[int, Meta(ge=1, le=100)] = 20
    """Hits per page."""
    cursor: str | None = None
    """next_cursor of the previous page."""


class AuditQuery(Request, frozen=True, kw_only=True):
    """The audit query: events after a position (``next_after`` of the page before),
    filtered; ``type`` may list several, comma-separated."""

    after: Position = 0
    """Return events after this log position (next_after of the previous page)."""
    limit: Limit = 100
    """Events per page."""
    type: str | None = None
    """Only these event types, comma-separated (e.g. message.appended)."""
    context_id: uuid.UUID | None = None
    """Only this context's events."""
    actor: str | None = None
    """Only events caused by this actor."""
    since: datetime | None = None
    """Only events recorded at or after this time (ISO 8601)."""
    until: datetime | None = None
    """Only events recorded before this time (ISO 8601)."""


class StreamQuery(Request, frozen=True, kw_only=True):
    """The live tail; ``after`` (or the Last-Event-ID header) resumes after a position (the
    id of the last event received)."""

    after: Position | None = None
    """Resume after this log position (or send Last-Event-ID)."""
    type: str | None = None
    """Only these event types, comma-separated."""
    context_id: uuid.UUID | None = None
    """Only this context's events."""


# -- WebSocket frames -------------------------------------------------------------------------


class Frame(Request, frozen=True, kw_only=True, tag_field="type"):
    """The base of frames a WebSocket client sends; ``id`` is echoed in the answer."""

    id: str | None = None
    """Echoed in the answer to this frame."""


class AppendFrame(Frame, frozen=True, kw_only=True, tag="append"):
    """Append one message (or several, atomically) to the socket's context."""

    message: MessageIn | None = None
    """One message to append."""
    messages: Annotated[list[MessageIn], Meta(min_length=1, max_length=1000)] | None = None
    """Several messages, appended atomically in order."""
    expected_version: Version | None = None
    """Write only if nothing but recorded windows came after this version (like If-Match)."""


class PingFrame(Frame, frozen=True, tag="ping"):
    """Answered with ``{"type": "pong"}``."""


ClientFrame = AppendFrame | PingFrame
