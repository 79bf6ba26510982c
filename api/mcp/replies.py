"""HTTP responses carrying JSON-RPC messages, shared by the request and stream handlers."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ..errors import ApiError
from .protocol import INTERNAL_ERROR, INVALID_REQUEST, RequestId, RpcError, encode, error_message


def json_response(
    body: Any, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    """A JSON-RPC message (or batch) as the HTTP response."""
    return web.Response(
        status=status, body=encode(body), content_type="application/json", headers=headers
    )


def reply(status: int, message: Any) -> web.Response:
    """A response carrying ``message`` (a 429 or 503 also says when to retry)."""
    return json_response(message, status, {"Retry-After": "1"} if status in (429, 503) else None)


def limit_error(error: ApiError) -> RpcError:
    """A cap's refusal (429 for the key, 503 for the server: ``ratelimit``, ``sessions``) as
    the JSON-RPC error of the request it refuses; the limit and retry_after go in ``data``."""
    code = INTERNAL_ERROR if error.status >= 500 else INVALID_REQUEST
    return RpcError(code, error.message, error.details)


def error_response(
    status: int,
    error: RpcError,
    id_: RequestId | None = None,
    headers: dict[str, str] | None = None,
) -> web.Response:
    """A JSON-RPC error with an HTTP status."""
    return json_response(error_message(id_, error), status, headers)


def refuse(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    """An HTTP-level refusal, with a JSON-RPC error body that has no id."""
    return error_response(status, RpcError(INVALID_REQUEST, message), None, headers)
