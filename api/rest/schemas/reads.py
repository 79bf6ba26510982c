"""The read side's answers that have a twin in ``projections`` (a window, a diff): defined here,
field for field, so that a change in the projections' Structs cannot change the HTTP contract
without a change here (``render.py`` converts; ``tests/test_rest_openapi.py`` holds the
document still)."""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from eventstore import Content, Role

from .base import REPLY_PRIMING, Policy, Response


class WindowEntry(Response, frozen=True, kw_only=True):
    """One entry of a window: a pinned system message, the summary, or a message."""

    kind: Literal["system", "summary", "message"]
    id: str
    role: Role
    content: Content
    name: str | None = None
    tokens: int
    redacted: bool = False


class LeftOut(Response, frozen=True, kw_only=True):
    """Non-system messages left out for one reason: how many, and the newest of them."""

    reason: Literal["over_budget", "covered_by_summary", "beyond_last_n"]
    count: int
    newest_message_id: str


class Window(Response, frozen=True, kw_only=True):
    """A window and its accounting: counts in ``encoding``; ``exact`` False (with a
    ``reason``) when they are an estimate because the model has no local tokenizer."""

    context_id: str
    version: int
    policy: Policy
    max_tokens: int | None
    last_n: int | None
    model: str | None
    encoding: str
    exact: bool
    entries: tuple[WindowEntry, ...]
    summary_id: str | None
    total_tokens: int
    overhead_tokens: int = 0
    """The part of ``total_tokens`` that is the request format's framing (per message, and
    the reply priming)."""
    format: str = "openai"
    """The request format the framing is counted for."""
    reply_priming: int = REPLY_PRIMING
    left_out: tuple[LeftOut, ...] = ()
    newest_does_not_fit: bool = False
    reason: str | None = None
    window_hash: str
    messages: list[dict[str, Any]] | msgspec.UnsetType = msgspec.UNSET
    """With ``format``: the window ready to send, in that format (OpenAI
    ChatCompletionMessageParam, Responses ResponseInputItemParam or Anthropic MessageParam
    objects); ``entries`` keep the accounting. Absent without a format."""
    system: str | list[dict[str, Any]] | msgspec.UnsetType | None = msgspec.UNSET
    """With ``format=anthropic``: the top-level ``system`` (pinned messages and the summary;
    null when there is none)."""


class MetadataChange(Response, frozen=True, kw_only=True):
    """One metadata value that differs, at an RFC 6901 JSON pointer (``""`` is the root)."""

    path: str
    kind: Literal["added", "removed", "changed"]
    old: Any = None
    new: Any = None


class WindowChange(Response, frozen=True, kw_only=True):
    """One window setting that differs."""

    field: str
    old: Any = None
    new: Any = None


class StateDiff(Response, frozen=True, kw_only=True):
    """How ``b`` differs from ``a``; message id lists follow the order of the state holding them.

    ``edited`` are messages in both whose content differs, except those redacted only in
    ``b`` (listed in ``redacted``); a message un-redacted by a rollback counts as edited.
    """

    from_context: str
    from_version: int
    to_context: str
    to_version: int
    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    edited: tuple[str, ...] = ()
    redacted: tuple[str, ...] = ()
    metadata: tuple[MetadataChange, ...] = ()
    window: tuple[WindowChange, ...] = ()
    summaries_added: tuple[str, ...] = ()
    summaries_removed: tuple[str, ...] = ()
    deleted: tuple[bool, bool] | None = None


class SearchHit(Response, frozen=True, kw_only=True):
    """A message that matched: where it is, a snippet of its text, and its rank (lower is
    better: SQLite's bm25)."""

    context_id: str
    message_id: str
    seq: int
    role: Role
    snippet: str
    rank: float


class SearchPage(Response, frozen=True):
    """Hits, best first, and the cursor of the next page (None at the end)."""

    hits: list[SearchHit]
    next_cursor: str | None
