"""The one place where exceptions become HTTP responses: ``{"error": {code, message, details}}``.

Status codes (also in the OpenAPI document and the README):

- 400 ``invalid_json`` / ``invalid_request``: malformed JSON, wrong types, unknown fields, NUL
  characters, nesting too deep; ``details.path`` is the JSONPath of the bad field.
- 401 ``unauthorized``: no API key, or an unknown one.
- 404 ``not_found``: an unknown route, an id that is not a UUID, a context or message that does
  not exist, belongs to another tenant (never told apart), or is deleted.
- 405 ``method_not_allowed``; 413 ``body_too_large`` (also an event over the store's limit);
  415 ``unsupported_media_type``.
- 409 ``conflict``: the command clashes with what exists (a version out of range, a duplicate).
- 412 ``version_conflict``: something other than a recorded window was written since the
  If-Match / ``expected_version`` (``projections.preconditions``); ``details.current_version``
  says where the context is now.
- 422 ``invalid_command`` (well-formed but impossible, e.g. an unknown model) and
  ``idempotency_key_reused`` (the same Idempotency-Key with a different request).
- 429 ``rate_limited`` (the key's request rate; ``Retry-After``) and
  ``too_many_connections`` (the key's open WebSockets/event streams); see ``ratelimit.py``.
- 503 ``unavailable`` (the database failed, nothing was written; or no room for another live
  connection), ``starting``, and ``behind`` (the projector retries after an error: what
  the read must see is not in the read model yet; a write is refused before it is written;
  ``details.status``/``reason`` as in ``/healthz``); with ``Retry-After``.
- 500 ``internal``: anything else; the traceback goes to the log with ``details.request_id``.
"""

from __future__ import annotations

import itertools
import logging
import os
import re
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import msgspec
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError, LineTooLong
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

import eventstore as es
import projections as pj

log = logging.getLogger("ctxlog.api")

REQUEST_ID = web.RequestKey("request_id", str)
AUTHENTICATE = 'Bearer realm="ctxlog"'
"""The challenge every 401 carries (a key goes in ``X-API-Key`` or as a Bearer token)."""

_encoder = msgspec.json.Encoder()
_PATH = re.compile(r" - at `(\$[^`]*)`$")
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")


class ApiError(Exception):
    """An error the API answers with on purpose: status, stable code, message, details."""

    def __init__(
        self, status: int, code: str, message: str, details: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details or {}


def not_found(what: str = "not found") -> ApiError:
    """A 404 that says nothing about whether the thing exists for someone else."""
    return ApiError(404, "not_found", what)


def invalid(message: str, path: str | None = None, where: str = "body") -> ApiError:
    """A 400 for a request that is not what the schema says, at ``path`` in ``where``."""
    details: dict[str, Any] = {"in": where}
    if path is not None:
        details["path"] = path
    return ApiError(400, "invalid_request", message, details)


def from_validation(e: msgspec.ValidationError, where: str = "body") -> ApiError:
    """msgspec's message with the field path (``$.messages[0].role``) split out."""
    text = str(e)
    match = _PATH.search(text)
    if match is None:
        return invalid(text, "$", where)
    return invalid(text[: match.start()], match.group(1), where)


_HTTP_CODES = {
    400: "invalid_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    408: "request_timeout",
    411: "length_required",
    413: "body_too_large",
    414: "uri_too_long",
    415: "unsupported_media_type",
    431: "headers_too_large",
}


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")


def translate(exc: BaseException, method: str = "GET") -> ApiError | None:
    """The ApiError an expected exception stands for; None for a bug (a 500)."""
    match exc:
        case ApiError():
            return exc
        case msgspec.ValidationError():
            return from_validation(exc)
        case web.HTTPException() if exc.status >= 400:
            code = _HTTP_CODES.get(exc.status, "http_error")
            details: dict[str, Any] = {}
            if isinstance(exc, web.HTTPMethodNotAllowed):
                details["allowed_methods"] = sorted(exc.allowed_methods)
            message = exc.reason.lower() if exc.status != 413 else exc.text or "body too large"
            return ApiError(exc.status, code, message, details)
        case es.VersionConflict():
            return ApiError(
                412,
                "version_conflict",
                f"the context is at version {exc.actual}, the request expected {exc.expected}",
                {"current_version": exc.actual, "expected_version": str(exc.expected)},
            )
        case es.DuplicateEventId():
            return ApiError(
                422,
                "idempotency_key_reused",
                "this Idempotency-Key was already used for a different request",
            )
        case es.EventTooLarge():
            return ApiError(413, "body_too_large", str(exc), {"limit": exc.limit})
        case es.InvalidStreamId():
            return not_found("context not found")
        case es.InvalidEvent():
            return invalid(str(exc))
        case es.StoreUnavailable() | es.StoreClosed():
            return ApiError(503, "unavailable", "the database is unavailable; nothing was written")
        case es.KeyDestroyed():  # erasures of its subject kept destroying the key it took
            return ApiError(503, "unavailable", "the subject is being erased; nothing was written")
        case pj.ReadModelInUse():
            return ApiError(503, "unavailable", str(exc))
        case pj.ProjectorBehind():
            details = {"status": exc.status, "reason": exc.reason, "retry_after": exc.retry_after}
            message = "the read model is behind the log; nothing acknowledged is lost, retry later"
            return ApiError(503, "behind", message, details)
        case pj.ProjectorFailed():
            return ApiError(503, "unavailable", "the read model is not being kept; retry later")
        case pj.ContextNotYetCreated():  # raised only for a context the caller can see
            details = {"at": _iso(exc.at), "created_at": _iso(exc.created_at)}
            return ApiError(404, "not_found", str(exc), details)
        case pj.ContextNotFound() | pj.ContextIsDeleted():
            return not_found("context not found")
        case pj.MessageNotFound():
            return not_found("message not found")
        case pj.InvalidVersion():
            # A version that does not exist cannot be read (404), nor be a command's target (409).
            status = 404 if method in ("GET", "HEAD") else 409
            details = {"version": exc.version, "current_version": exc.current}
            return ApiError(status, "not_found" if status == 404 else "conflict", str(exc), details)
        case pj.ContextExists() | pj.DuplicateMessage():
            return ApiError(409, "conflict", str(exc))
        case pj.InvalidCommand() | pj.EncodingUnavailable() | pj.UnknownModel():
            return ApiError(422, "invalid_command", str(exc))
        case _:
            return None


def error_body(error: ApiError) -> bytes:
    """The JSON body of an error response."""
    return _encoder.encode(
        {"error": {"code": error.code, "message": error.message, "details": error.details}}
    )


def error_headers(error: ApiError, request_id: str) -> dict[str, str]:
    """The headers an error answer carries, whatever its body's shape."""
    headers = {"X-Request-ID": request_id}
    if error.status == 405 and "allowed_methods" in error.details:
        headers["Allow"] = ", ".join(error.details["allowed_methods"])
    if error.status in (429, 503):
        headers["Retry-After"] = str(error.details.get("retry_after", 1))
    if error.status == 401:
        headers["WWW-Authenticate"] = AUTHENTICATE
    return headers


def error_response(error: ApiError, request_id: str) -> web.Response:
    """An error as a JSON response carrying the request id."""
    return web.Response(
        status=error.status,
        body=error_body(error),
        content_type="application/json",
        headers=error_headers(error, request_id),
    )


Renderer = Callable[[ApiError, str], web.Response]
RENDERERS = web.AppKey("error_renderers", dict[str, Renderer])
"""A door that answers errors in its own shape registers its renderer under its path (MCP:
JSON-RPC error objects at ``/mcp``); every other path gets ``error_response``."""


def internal(request_id: str) -> ApiError:
    """The only thing a client learns about a bug: that it happened, and its request id."""
    return ApiError(500, "internal", "internal error", {"request_id": request_id})


class QuietProtocolErrors(logging.Filter):
    """Logs a request aiohttp cannot parse (bad framing, oversized lines) as one line.

    aiohttp logs it at ERROR with a traceback and the offending raw bytes, which can hold the
    client's API key; a client's garbage is neither a server error nor something to keep.
    (Such requests never reach the application: ``protocol_error`` answers them.)
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite records carrying an HttpProcessingError; let everything else through."""
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError):
            remote = record.args[0] if isinstance(record.args, tuple) and record.args else "?"
            record.msg = "unparsable HTTP request from %s: %s"
            record.args = (remote, type(exc).__name__)
            record.exc_info = record.exc_text = None
            record.levelno, record.levelname = logging.INFO, "INFO"
        return True


QUIET_PROTOCOL_ERRORS = QuietProtocolErrors()
"""One instance, so that creating many apps adds it to aiohttp's logger once."""


def protocol_error(status: int, exc: BaseException | None) -> ApiError:
    """What a client is told of a request aiohttp's parser refused (an oversized request line
    or header, bad framing) or of a failure outside every middleware. Never the offending
    bytes: aiohttp's own plain-text answer echoes them."""
    if status >= 500:
        code = "unavailable" if status in (503, 504) else "internal"
        return ApiError(status, code, "internal error" if code == "internal" else "try again later")
    if isinstance(exc, LineTooLong):
        message = "the request line or a header is longer than the server accepts"
        return ApiError(status, _HTTP_CODES.get(status, "invalid_request"), message)
    return ApiError(status, _HTTP_CODES.get(status, "invalid_request"), "malformed HTTP request")


_aiohttp_handle_error = RequestHandler.handle_error


def _handle_error(
    self: RequestHandler,
    request: BaseRequest,
    status: int = 500,
    exc: BaseException | None = None,
    message: str | None = None,
) -> web.StreamResponse:
    # aiohttp answers these itself, before any application code runs, and offers no hook for
    # the answer's shape; its own method still logs and checks the connection's state.
    _aiohttp_handle_error(self, request, status, exc, message)
    request_id = es.new_id().replace("-", "")
    error = protocol_error(status, exc)
    if status >= 500:  # aiohttp logged the exception; this line ties it to the client's id
        log.error("request %s failed outside the application: %s", request_id, status)
        error.details["request_id"] = request_id
    response = error_response(error, request_id)
    response.force_close()
    return response


def quiet_protocol_errors() -> None:
    """Log unparsable requests as one line (``QuietProtocolErrors``) and answer them with the
    JSON error shape (``protocol_error``). Idempotent."""
    logging.getLogger("aiohttp.server").addFilter(QUIET_PROTOCOL_ERRORS)
    RequestHandler.handle_error = _handle_error  # type: ignore[method-assign]


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_RUN = os.urandom(8).hex()
_requests = itertools.count(1)


def new_request_id() -> str:
    """A request id unique to this request: 32 hex digits, this process's random half and
    its count of requests (a UUID per request cost 2% of a window read)."""
    return f"{_RUN}{next(_requests):016x}"


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Give every request an id; turn every exception into a JSON error response."""
    given = request.headers.get("X-Request-ID", "")
    request_id = given if given and _REQUEST_ID.fullmatch(given) else new_request_id()
    request[REQUEST_ID] = request_id
    try:
        response = await handler(request)
    except (web.HTTPException, Exception) as exc:
        if isinstance(exc, web.HTTPException) and exc.status < 400:
            raise  # 3xx: not an error
        error = translate(exc, request.method)
        if error is None:
            log.exception("request %s failed: %s %s", request_id, request.method, request.path)
            error = internal(request_id)
        elif error.code == "unavailable":
            log.warning("request %s: %s (%s)", request_id, error.message, type(exc).__name__)
        render = request.app[RENDERERS].get(request.path, error_response)
        return render(error, request_id)
    if not response.prepared:
        response.headers["X-Request-ID"] = request_id
    return response
