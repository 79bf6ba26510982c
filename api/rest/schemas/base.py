"""What the API's schemas share: bounded numbers, and the bases of requests and responses."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

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

# The wire's words for what the server's layers name too. Defined here, not imported from
# ``projections`` or ``api.formats``, so that the client can import these Structs without the
# server; tests/test_client_imports.py holds each equal to the server's own.
Policy = Literal["tokens", "last_n"]
"""How a window chooses messages (``projections.window.Policy``)."""
Format = Literal["openai", "responses", "anthropic"]
"""A provider's request format (``api.formats.Format``)."""
REPLY_PRIMING = 3
"""Tokens that prime a reply (``projections.tokens.REPLY_PRIMING``)."""

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


class Response(msgspec.Struct, frozen=True, kw_only=True):
    """The base of response bodies."""
