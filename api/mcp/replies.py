"""HTTP responses carrying JSON-RPC messages, shared by the request and stream handlers."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from .protocol import INVALID_REQUEST, RequestId, RpcError, encode, error_message


def json_response(
    body: Any, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    """A JSON-RPC message (or batch) as the HTTP response."""
    return web.Response(
        status=status, body=encode(body), content_type="application/json", headers=headers
    )


def reply(status: int, message: Any) -> web.Response:
    """A response carrying ``message`` (a 503 also says when to retry)."""
    return json_response(message, status, {"Retry-After": "1"} if status == 503 else None)


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
