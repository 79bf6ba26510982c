"""The state a context's events fold into, as frozen msgspec Structs.

A ``ContextState`` is immutable and safe to share: states at different versions share their
unchanged ``Message`` objects and metadata dicts, so nothing here may be mutated in place.
It encodes with msgspec as-is, which is how the read model stores snapshots.
"""

from __future__ import annotations

import functools
from datetime import datetime
from typing import Any, Protocol

import msgspec

from eventstore.events import Content, Role, WindowSettings


class TokenCounting(Protocol):
    """What the fold needs from a tokenizer (``projections.tokens.TokenCounter`` is one)."""

    @property
    def encoding(self) -> str:
        """The canonical encoding name the counts are in, e.g. ``"cl100k_base"``."""
        ...

    def count_message(self, role: str, content: Content, name: str | None = None) -> int:
        """Tokens one chat message costs, its per-message overhead included."""
        ...


class Message(msgspec.Struct, frozen=True, kw_only=True):
    """One message in a context's current state.

    ``version`` is the stream version of the ``MessageAppended`` that added it, in the stream
    that added it: messages a fork inherits keep their ancestor's numbers (and their ids).
    ``tokens`` is its cost under the state's ``token_encoding``, per-message overhead included.
    A redacted message keeps its place, id, role, name and metadata; its ``content`` is ``""``
    (or the bare skeleton of its tool calls and results: ``context.redacted_content``) and
    ``content_hash`` is the sha256 of what it held (see ``context.content_hash``).
    ``subject`` is the data subject its content belongs to (``subjects``), None for none.
    """

    message_id: str
    role: Role
    content: Content
    name: str | None = None
    metadata: dict[str, Any] = {}
    version: int
    tokens: int
    edited_version: int | None = None
    redacted: bool = False
    content_hash: str | None = None
    subject: str | None = None


class Summary(msgspec.Struct, frozen=True, kw_only=True):
    """A summary standing in, in windows, for every message up to ``through_message_id``;
    ``subjects``: the data subjects its text belongs to (``subjects``)."""

    summary_id: str
    text: str
    through_message_id: str
    version: int
    tokens: int
    subjects: tuple[str, ...] = ()


class ParentRef(msgspec.Struct, frozen=True):
    """Where a fork came from: the parent context and the version it was forked at."""

    context_id: str
    version: int


class ContextState(msgspec.Struct, frozen=True, kw_only=True, dict=True):
    """A context as of ``version``: what its events, folded in order, add up to.

    ``version`` counts every event of the stream (a rollback is itself a new version).
    ``content_version`` is the version of the latest event that is not a ``window.served``
    record: what an If-Match precondition compares against (``preconditions``), so recording
    what a model saw never makes the next write of the chat loop conflict.
    ``created_at``/``updated_at`` are the ``recorded_at`` of the first and latest event, and
    ``updated_by`` the actor the latest event names (None: it names none); ``tenant`` comes
    from the first event's metadata. ``token_encoding`` names the encoding every
    ``Message.tokens`` and ``Summary.tokens`` is in.
    """

    context_id: str
    version: int
    content_version: int
    messages: tuple[Message, ...] = ()
    metadata: dict[str, Any] = {}
    window: WindowSettings = WindowSettings()
    summaries: tuple[Summary, ...] = ()
    parent: ParentRef | None = None
    deleted: bool = False
    created_at: datetime
    updated_at: datetime
    updated_by: str | None = None
    tenant: str | None = None
    token_encoding: str

    @functools.cached_property
    def index(self) -> dict[str, int]:
        """Position of each message id in ``messages`` (computed once per state, on demand)."""
        return {m.message_id: i for i, m in enumerate(self.messages)}

    def message(self, message_id: str) -> Message | None:
        """The message with this id, or None."""
        i = self.index.get(message_id)
        return None if i is None else self.messages[i]

    @property
    def latest_summary(self) -> Summary | None:
        """The newest summary whose covered message is still in the state, or None."""
        for summary in reversed(self.summaries):
            if summary.through_message_id in self.index:
                return summary
        return None

    @property
    def total_tokens(self) -> int:
        """The sum of every message's tokens (no reply priming, no summary)."""
        return sum(m.tokens for m in self.messages)
