"""The tools' arguments and results, as msgspec Structs: their JSON Schemas are the tools'
``inputSchema`` and ``outputSchema``, and arguments are decoded with them.

Arguments forbid unknown fields (a model's typo is an error it can read and fix, not a field
silently ignored). Where the REST API already has the shape (a context, a page of events, a
window, a diff, a search page), the result is that same Struct.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from api.formats import Format
from api.rest.schemas import ContextOut, Limit, MessageIn, PositiveInt, Version, WindowIn
from eventstore import Content
from projections.queries import MAX_METADATA_FILTERS

ContextId = Annotated[uuid.UUID, Meta(description="The context's id (a UUID)")]
ExpectedVersion = Annotated[
    Version,
    Meta(description="Write only if nothing but recorded windows came after this version"),
]
IdempotencyKey = Annotated[
    str,
    Meta(
        min_length=1,
        max_length=255,
        pattern=r"^[\x21-\x7e]+$",
        description="Retrying with the same key returns the first result and writes nothing",
    ),
]


class Args(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The base of tool arguments."""


class ReadArgs(Args, frozen=True, kw_only=True):
    """The base of tools that read one context: it must hold ``min_version`` first."""

    context_id: ContextId
    min_version: (
        Annotated[
            PositiveInt,
            Meta(
                description=(
                    "Answer only once this server holds at least this version (the newest one"
                    " you saw, perhaps from another server on the same database)"
                )
            ),
        ]
        | None
    ) = None


class CreateContextArgs(Args, frozen=True, kw_only=True):
    """A new, empty context, with optional metadata and a default window."""

    metadata: dict[str, Any] = {}
    window: WindowIn | None = None
    idempotency_key: IdempotencyKey | None = None


FormatArg = Annotated[
    Format,
    Meta(description="A provider's message format: openai (Chat), responses or anthropic"),
]


class AppendMessagesArgs(Args, frozen=True, kw_only=True):
    """Messages to append to a context, atomically, in order."""

    context_id: ContextId
    messages: Annotated[
        list[dict[str, Any]],
        Meta(
            max_length=1000,
            description=(
                "Without format: {role, content, name?, metadata?}, content a string or "
                "parts (text, image, file, tool_call, tool_result). With format: that "
                "provider's message objects (responses: input items)"
            ),
        ),
    ]
    format: FormatArg | None = None
    system: (
        Annotated[
            str | list[dict[str, Any]], Meta(description="format anthropic: the system prompt")
        ]
        | None
    ) = None
    expected_version: ExpectedVersion | None = None
    idempotency_key: IdempotencyKey | None = None


class NativeMessages(msgspec.Struct, frozen=True, kw_only=True):
    """``AppendMessagesArgs.messages`` without a format, decoded (errors name the path)."""

    messages: Annotated[list[MessageIn], Meta(min_length=1)]


class GetContextArgs(ReadArgs, frozen=True, kw_only=True):
    """A context now, at a past version, or as it was at a time (give one of the two)."""

    version: Annotated[PositiveInt, Meta(description="A past version to read")] | None = None
    at: (
        Annotated[datetime, Meta(description="An ISO-8601 time to read the context as of")] | None
    ) = None
    messages_from: Annotated[
        int,
        Meta(
            ge=0,
            description=(
                "Skip the first this many messages (what a cut answer's next_messages_from"
                " says, with its version)"
            ),
        ),
    ] = 0


class ContextPart(ContextOut, frozen=True, kw_only=True):
    """A context with the messages that fit the server's response budget, from
    ``messages_from`` on; ``next_messages_from`` (with ``version``) continues."""

    messages_from: int = 0
    next_messages_from: int | None = None


class GetWindowArgs(ReadArgs, frozen=True, kw_only=True):
    """The messages that fit a token budget, with the accounting of what was left out."""

    max_tokens: PositiveInt | None = None
    model: str | None = None
    policy: Literal["tokens", "last_n"] | None = None
    last_n: PositiveInt | None = None
    format: FormatArg | None = None
    record: Annotated[
        bool, Meta(description="Log a window.served event recording exactly what was shown")
    ] = False


class GetHistoryArgs(ReadArgs, frozen=True, kw_only=True):
    """A page of a context's raw events."""

    from_version: Version | None = None
    limit: Limit = 100
    direction: Literal["forward", "backward"] = "forward"


class RollbackArgs(Args, frozen=True, kw_only=True):
    """Return a context to its state as of an earlier version (a new event; history stays)."""

    context_id: ContextId
    to_version: PositiveInt
    reason: str | None = None
    expected_version: ExpectedVersion | None = None
    idempotency_key: IdempotencyKey | None = None


class ForkArgs(Args, frozen=True, kw_only=True):
    """A new context starting as this one at a version (default: now)."""

    context_id: ContextId
    at_version: PositiveInt | None = None
    metadata: dict[str, Any] | None = None
    idempotency_key: IdempotencyKey | None = None


class DiffArgs(ReadArgs, frozen=True, kw_only=True):
    """What changed between two versions of a context (``to_version`` default: now)."""

    from_version: Version
    to_version: Version | None = None


class AddSummaryArgs(Args, frozen=True, kw_only=True):
    """A summary that windows show instead of every message through one message."""

    context_id: ContextId
    text: str
    through_message_id: uuid.UUID
    expected_version: ExpectedVersion | None = None
    idempotency_key: IdempotencyKey | None = None


class EditMessageArgs(Args, frozen=True, kw_only=True):
    """New content for one message."""

    context_id: ContextId
    message_id: uuid.UUID
    content: Annotated[
        Content,
        Meta(description="A string, or parts (text, image, file, tool_call, tool_result)"),
    ]
    expected_version: ExpectedVersion | None = None
    idempotency_key: IdempotencyKey | None = None


class RedactMessageArgs(Args, frozen=True, kw_only=True):
    """Blank one message's content; it keeps its place and a hash of what it held."""

    context_id: ContextId
    message_id: uuid.UUID
    reason: str | None = None
    expected_version: ExpectedVersion | None = None
    idempotency_key: IdempotencyKey | None = None


class SearchMessagesArgs(Args, frozen=True, kw_only=True):
    """Full-text search over the current messages of your contexts (or of one context)."""

    query: Annotated[
        str,
        Meta(
            min_length=1,
            description="Words that must all appear; a trailing * matches a prefix (tok*)",
        ),
    ]
    context_id: ContextId | None = None
    limit: Annotated[int, Meta(ge=1, le=100)] = 20
    cursor: str | None = None


class ListContextsArgs(Args, frozen=True, kw_only=True):
    """A page of your contexts, newest first, optionally filtered by metadata."""

    cursor: str | None = None
    limit: Limit = 50
    metadata: Annotated[
        dict[str, str],
        Meta(
            description="Only contexts whose metadata has these key = value (top-level keys)",
            max_length=MAX_METADATA_FILTERS,
        ),
    ] = {}


class Change(msgspec.Struct, frozen=True, kw_only=True):
    """What a write did: the context's new version (and the ids it created)."""

    context_id: str
    version: int
    message_ids: list[str] = []
    summary_id: str | None = None


class Forked(msgspec.Struct, frozen=True, kw_only=True):
    """The new context a fork made, and where it came from."""

    context_id: str
    version: int
    parent_id: str
    parent_version: int
