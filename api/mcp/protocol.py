"""JSON-RPC 2.0 as the Model Context Protocol uses it: versions, error codes, message shapes.

Two protocol eras share one wire format. The handshake era (2025-03-26 … 2025-11-25) opens a
session with ``initialize``; the stateless era (2026-07-28) carries the protocol version and
the client's capabilities in every request's ``params._meta``. Everything here is era-neutral
except the version lists.
"""

from __future__ import annotations

from typing import Any, Final

import msgspec
from msgspec import UNSET, UnsetType

from api.errors import ApiError
from api.rest import wire

MODERN_VERSIONS: Final = ("2026-07-28",)
HANDSHAKE_VERSIONS: Final = ("2025-11-25", "2025-06-18", "2025-03-26")
"""Newest first: ``initialize`` answers with the client's version when it is one of these,
else with the newest."""
SUPPORTED_VERSIONS: Final = (*MODERN_VERSIONS, *HANDSHAKE_VERSIONS)
LATEST_HANDSHAKE: Final = HANDSHAKE_VERSIONS[0]

PROTOCOL_VERSION_KEY: Final = "io.modelcontextprotocol/protocolVersion"
CLIENT_CAPABILITIES_KEY: Final = "io.modelcontextprotocol/clientCapabilities"
SERVER_INFO_KEY: Final = "io.modelcontextprotocol/serverInfo"
SUBSCRIPTION_ID_KEY: Final = "io.modelcontextprotocol/subscriptionId"

PARSE_ERROR: Final = -32700
INVALID_REQUEST: Final = -32600
METHOD_NOT_FOUND: Final = -32601
INVALID_PARAMS: Final = -32602
INTERNAL_ERROR: Final = -32603
HEADER_MISMATCH: Final = -32020
UNSUPPORTED_VERSION: Final = -32022
RESOURCE_NOT_FOUND_LEGACY: Final = -32002
"""The handshake era's "resource not found"; the stateless era uses -32602 instead."""

RequestId = int | str

_encoder = msgspec.json.Encoder()


class RpcError(Exception):
    """A JSON-RPC error to answer with: code, message, optional data."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data

    def body(self) -> dict[str, Any]:
        """The ``error`` member of a response."""
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.data is not None:
            error["data"] = self.data
        return error


class Unavailable(RpcError):
    """The contexts service cannot answer yet (catching up) or any more (database down)."""

    def __init__(self, message: str) -> None:
        super().__init__(INTERNAL_ERROR, message)


def invalid_params(message: str) -> RpcError:
    """-32602: the request's params are not what the method takes."""
    return RpcError(INVALID_PARAMS, message)


def unsupported_version(requested: Any) -> RpcError:
    """-32022, naming every version this server speaks so a client can retry or fall back."""
    data: dict[str, Any] = {"supported": list(SUPPORTED_VERSIONS)}
    if isinstance(requested, str):
        data["requested"] = requested
    return RpcError(UNSUPPORTED_VERSION, "Unsupported protocol version", data)


class Envelope(msgspec.Struct, frozen=True, forbid_unknown_fields=False):
    """Any JSON-RPC message; ``UNSET`` tells a missing member from a ``null`` one."""

    jsonrpc: str
    id: int | str | UnsetType | None = UNSET
    method: str | UnsetType = UNSET
    params: dict[str, Any] | UnsetType = UNSET
    result: Any = UNSET
    error: Any = UNSET


class Request(msgspec.Struct, frozen=True):
    """A request: it is owed exactly one response."""

    id: RequestId
    method: str
    params: dict[str, Any]


class Notification(msgspec.Struct, frozen=True):
    """A notification: one-way, never answered."""

    method: str
    params: dict[str, Any]


class Reply(msgspec.Struct, frozen=True):
    """A response the client sent (to nothing this server asks: accepted and dropped)."""

    id: RequestId | None


Message = Request | Notification | Reply


def decode(body: bytes) -> Any:
    """The JSON of a body, with the REST API's checks (NUL characters, nesting depth, UTF-8);
    RpcError -32700 or -32600 otherwise."""
    try:
        return wire.decode(body, Any)
    except ApiError as e:
        code = PARSE_ERROR if e.code == "invalid_json" else INVALID_REQUEST
        raise RpcError(code, e.message) from None


def classify(value: Any) -> Message:
    """One decoded JSON value as a message; RpcError -32600 for anything else."""
    if not isinstance(value, dict):
        raise RpcError(INVALID_REQUEST, "a message must be a JSON object")
    try:
        env = msgspec.convert(value, Envelope)
    except msgspec.ValidationError as e:
        raise RpcError(INVALID_REQUEST, f"not a JSON-RPC message: {e}") from None
    if env.jsonrpc != "2.0":
        raise RpcError(INVALID_REQUEST, 'jsonrpc must be "2.0"')
    params = {} if env.params is UNSET else env.params
    if env.method is not UNSET:
        if env.id is UNSET:
            return Notification(env.method, params)
        if env.id is None:
            raise RpcError(INVALID_REQUEST, "a request id must be a string or an integer")
        return Request(env.id, env.method, params)
    if env.id is not UNSET and (env.result is not UNSET or env.error is not UNSET):
        return Reply(env.id)
    raise RpcError(INVALID_REQUEST, "a message needs a method (or a result or error)")


def request_id(value: Any) -> RequestId | None:
    """The id of a message that may be malformed (for the error answering it), else None."""
    if isinstance(value, dict):
        found = value.get("id")
        if isinstance(found, str) or (isinstance(found, int) and not isinstance(found, bool)):
            return found
    return None


def result_message(id_: RequestId, result: dict[str, Any]) -> dict[str, Any]:
    """A response carrying ``result``."""
    return {"jsonrpc": "2.0", "id": id_, "result": result}


def error_message(id_: RequestId | None, error: RpcError) -> dict[str, Any]:
    """A response carrying ``error`` (``id`` null when the request's id could not be read)."""
    return {"jsonrpc": "2.0", "id": id_, "error": error.body()}


def notification(method: str, params: dict[str, Any]) -> dict[str, Any]:
    """A notification to send."""
    return {"jsonrpc": "2.0", "method": method, "params": params}


def encode(message: Any) -> bytes:
    """Compact JSON (never a raw newline: stdio frames are lines)."""
    return _encoder.encode(message)


def has_envelope(params: dict[str, Any]) -> bool:
    """Whether a request carries the stateless era's ``_meta`` protocol version (only that
    era mints the key, so its presence alone decides)."""
    meta = params.get("_meta")
    return isinstance(meta, dict) and PROTOCOL_VERSION_KEY in meta


def envelope_version(params: dict[str, Any]) -> Any:
    """The protocol version a stateless-era request declares; RpcError -32602 when the
    ``_meta`` envelope lacks the required keys."""
    meta = params.get("_meta")
    if not isinstance(meta, dict):
        raise invalid_params(
            f"params._meta must be an object with {PROTOCOL_VERSION_KEY!r} and "
            f"{CLIENT_CAPABILITIES_KEY!r}"
        )
    missing = [k for k in (PROTOCOL_VERSION_KEY, CLIENT_CAPABILITIES_KEY) if k not in meta]
    if missing:
        raise invalid_params(f"params._meta is missing {', '.join(missing)}")
    return meta[PROTOCOL_VERSION_KEY]


def modern_version(version: Any) -> str:
    """``version`` if this server serves it statelessly; RpcError otherwise (-32602 for a
    non-string, -32022 naming what we speak for anything else)."""
    if not isinstance(version, str):
        raise invalid_params("the protocol version must be a string")
    if version not in MODERN_VERSIONS:
        raise unsupported_version(version)
    return version
