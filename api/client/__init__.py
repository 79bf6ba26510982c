"""A typed Python client for ctxlog's REST API, asynchronous (aiohttp) and synchronous (httpx2).

Requests and answers are the API's own msgspec Structs (``api.rest.schemas``); server errors
are typed exceptions carrying its code (``errors``). Importing this package touches no network
and imports none of the server. The framework adapters live beside it: ``api.client.agents``
(the OpenAI Agents SDK's ``Session``) and ``api.client.langgraph`` (a LangGraph checkpointer).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from api.rest import schemas

from .aio import AsyncClient
from .errors import (
    ApiError,
    BadRequest,
    Conflict,
    ConnectionFailed,
    CtxlogError,
    Forbidden,
    IdempotencyKeyReused,
    InvalidCommand,
    NotFound,
    PayloadTooLarge,
    ProtocolError,
    RateLimited,
    ServerError,
    Timeout,
    TransportError,
    Unauthorized,
    Unavailable,
    VersionConflict,
)
from .wire import AUTO, SEEN, Retry

if TYPE_CHECKING:
    from .sync import Client

__all__ = [
    "AUTO",
    "SEEN",
    "ApiError",
    "AsyncClient",
    "BadRequest",
    "Client",
    "Conflict",
    "ConnectionFailed",
    "CtxlogError",
    "Forbidden",
    "IdempotencyKeyReused",
    "InvalidCommand",
    "NotFound",
    "PayloadTooLarge",
    "ProtocolError",
    "RateLimited",
    "Retry",
    "ServerError",
    "Timeout",
    "TransportError",
    "Unauthorized",
    "Unavailable",
    "VersionConflict",
    "schemas",
]


def __getattr__(name: str) -> Any:
    """``Client``, imported on first use (it needs httpx2, the ``client`` extra)."""
    if name != "Client":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = importlib.import_module(".sync", __name__).Client
    globals()[name] = value
    return value
