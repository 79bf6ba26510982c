"""What the client raises: the server's errors as types carrying its code, and the failures of
getting an answer at all.

Every error names the operation (the OpenAPI ``operationId``) it happened in. The server's
error body (``{"error": {code, message, details}}``) becomes an ``ApiError`` subclass chosen
by its code (then its status), with the server's message as is.
"""

from __future__ import annotations

from typing import Any


class CtxlogError(Exception):
    """The base of everything the client raises on purpose."""

    def __init__(self, operation: str, message: str) -> None:
        super().__init__(f"{operation}: {message}")
        self.operation = operation
        self.message = message


class TransportError(CtxlogError):
    """No answer: the connection failed, was reset, or timed out (after the retries allowed)."""

    def __init__(self, operation: str, message: str, cause: BaseException | None = None) -> None:
        super().__init__(operation, message)
        self.cause = cause


class ConnectionFailed(TransportError):
    """The server could not be reached, or dropped the connection before answering."""


class Timeout(TransportError):
    """The answer did not come within the client's timeout."""


class ProtocolError(CtxlogError):
    """The server answered something this client does not expect (a status or body that is
    not the operation's): a proxy in the way, or a server of another version."""

    def __init__(self, operation: str, message: str, status: int | None = None) -> None:
        super().__init__(operation, message)
        self.status = status


class ApiError(CtxlogError):
    """An error the server answered with: its status, stable code, message and details."""

    def __init__(
        self,
        operation: str,
        status: int,
        code: str,
        message: str,
        details: dict[str, Any] | None = None,
        request_id: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(operation, f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.server_message = message
        self.details = details or {}
        self.request_id = request_id
        self.retry_after = retry_after


class BadRequest(ApiError):
    """400: the request is not what the schema says; ``details["path"]`` names the field."""


class Unauthorized(ApiError):
    """401: no API key, or an unknown one."""


class Forbidden(ApiError):
    """403: refused by the server's gate (Host or Origin)."""


class NotFound(ApiError):
    """404: no such context or message for this key (another tenant's is not told apart)."""


class Conflict(ApiError):
    """409: the command clashes with what exists (a version out of range, a duplicate id)."""


class VersionConflict(ApiError):
    """412: something other than a recorded window was written since If-Match /
    ``expected_version``."""

    @property
    def actual(self) -> int | None:
        """The context's version when the write was refused."""
        value = self.details.get("current_version")
        return value if isinstance(value, int) else None

    @property
    def expected(self) -> int | None:
        """The version the request expected."""
        value = self.details.get("expected_version")
        return int(value) if isinstance(value, str) and value.isdigit() else None


class PayloadTooLarge(ApiError):
    """413: the body (or one event) is over the server's limit."""


class InvalidCommand(ApiError):
    """422 ``invalid_command``: well-formed but impossible (an unknown model, ...)."""


class IdempotencyKeyReused(ApiError):
    """422 ``idempotency_key_reused``: the key was already used for a different request."""


class RateLimited(ApiError):
    """429: over the key's request rate or live connections; ``retry_after`` in seconds."""


class Unavailable(ApiError):
    """503: the server cannot serve this now (the database, ``starting``, ``behind``);
    ``retry_after`` in seconds. ``written`` is True when the write is durable anyway."""

    @property
    def written(self) -> bool:
        """Whether the server recorded the write before it could not answer with it."""
        return self.details.get("written") is True


class ServerError(ApiError):
    """500 (or another 5xx): a bug on the server; ``request_id`` finds it in its log."""


_BY_CODE: dict[str, type[ApiError]] = {
    "version_conflict": VersionConflict,
    "idempotency_key_reused": IdempotencyKeyReused,
    "invalid_command": InvalidCommand,
    "rate_limited": RateLimited,
    "too_many_connections": RateLimited,
}
_BY_STATUS: dict[int, type[ApiError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    412: VersionConflict,
    413: PayloadTooLarge,
    422: InvalidCommand,
    429: RateLimited,
    503: Unavailable,
}


def error_class(status: int, code: str) -> type[ApiError]:
    """The exception type for a server error of ``status`` and ``code``."""
    found = _BY_CODE.get(code) or _BY_STATUS.get(status)
    if found is not None:
        return found
    return ServerError if status >= 500 else ApiError
