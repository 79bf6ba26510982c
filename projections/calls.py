"""What callers of the contexts service pass in and get back (the API renders these)."""

from __future__ import annotations

from typing import Any

import msgspec

from eventstore import Content, RecordedEvent, Role

from .state import ContextState, Message


class Caller(msgspec.Struct, frozen=True):
    """Who is asking: the tenant and actor of the API key (None for an open server)."""

    tenant: str | None = None
    actor: str | None = None
    request_id: str | None = None


class NewMessage(msgspec.Struct, frozen=True, kw_only=True):
    """A message to append; ``message_id`` is generated when missing."""

    role: Role
    content: Content
    name: str | None = None
    metadata: dict[str, Any] = {}
    message_id: str | None = None


class Written(msgspec.Struct, frozen=True):
    """What a command stored: the context's new version, positions, and new message ids."""

    context_id: str
    version: int
    positions: list[int]
    message_ids: list[str] = []
    duplicate: bool = False


class ContextSize(msgspec.Struct, frozen=True):
    """How much a context holds now: what a listing shows without loading its messages."""

    message_count: int
    total_tokens: int


class ContextPage(msgspec.Struct, frozen=True):
    """A page of contexts, newest first, and the cursor of the next page (None at the end);
    ``sizes[i]`` is the size of ``contexts[i]`` (whose ``messages`` are left empty)."""

    contexts: list[ContextState]
    next_cursor: str | None
    sizes: list[ContextSize] = []


class Lineage(msgspec.Struct, frozen=True):
    """A context's ancestors (parent first) and direct forks."""

    context_id: str
    ancestors: list[tuple[str, int]]
    forks: list[tuple[str, int]]


class MessagePage(msgspec.Struct, frozen=True):
    """A page of a context's messages at ``version``; ``seqs`` are their 0-based places,
    ``next_after`` continues the page (None at the end), and ``total`` is how many messages
    the context holds at that version."""

    context_id: str
    version: int
    messages: list[Message]
    seqs: list[int]
    next_after: int | None
    total: int = 0


class Whole(msgspec.Struct, frozen=True):
    """A context now, read for a whole-context answer: its ``state`` without messages, the
    first ``count`` of its messages as the API's JSON (copied from the read model, not
    encoded again) in runs (``b",".join(messages)`` is the list's items), its
    ``total_tokens``, and how many messages (``left``) did not fit the budget asked for."""

    state: ContextState
    messages: list[bytes]
    count: int
    total_tokens: int
    left: int


class Audited(msgspec.Struct, frozen=True):
    """A page of the log as a caller sees it: its events, the position it is shown for each
    (``Contexts.positions``), and the position to continue after."""

    events: list[RecordedEvent]
    positions: list[int]
    next_after: int
