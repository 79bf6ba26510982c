"""The stateless era (2026-07-28) over HTTP: every POST stands alone.

The request's ``_meta`` envelope carries the protocol version and the client's capabilities;
the ``MCP-Protocol-Version``, ``Mcp-Method`` and ``Mcp-Name`` headers must each come once and
agree with the body (-32020 otherwise), so that intermediaries routing on them cannot be
fooled. Notifications mean nothing in this era and are accepted (202); ``subscriptions/listen``
answers with an event stream (``streams.py``).
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from aiohttp import web

from projections.service import Caller

from . import streams
from .endpoint import ENDPOINT, VERSION_HEADER, accepts, run
from .protocol import (
    HEADER_MISMATCH,
    MODERN_VERSIONS,
    Notification,
    Reply,
    Request,
    RpcError,
    classify,
    envelope_version,
    modern_version,
    request_id,
    unsupported_version,
)
from .replies import error_response, refuse, reply
from .server import Call

_NAMED = {"tools/call": "name", "prompts/get": "name", "resources/read": "uri"}


async def handle(request: web.Request, caller: Caller, value: Any) -> web.StreamResponse:
    """Serve one stateless-era POST (``value`` is its decoded body)."""
    endpoint = request.app[ENDPOINT]
    try:
        message = classify(value)
    except RpcError as e:
        return error_response(400, e, request_id(value))
    match message:
        case Notification():
            # No client-to-server notification means anything in this era: accepted, dropped.
            header = request.headers.get(VERSION_HEADER)
            if header not in MODERN_VERSIONS:
                return error_response(400, unsupported_version(header))
            return web.Response(status=202)
        case Reply():
            return refuse(400, "a client must not send responses")
    assert isinstance(message, Request)
    try:
        declared = envelope_version(message.params)
        check_headers(request, message, declared)
        version = modern_version(declared)
    except RpcError as e:
        return error_response(400, e, message.id)
    call = Call(caller, version)
    if message.method == "subscriptions/listen":
        if not accepts(request, "text/event-stream"):
            return refuse(406, "subscriptions/listen answers with text/event-stream")
        return await streams.listen(request, call, message, endpoint.server)
    return reply(*await run(call, message, endpoint.server))


def check_headers(request: web.Request, message: Request, version: Any) -> None:
    """The routing headers must each come once and agree with the body (-32020 otherwise)."""
    for name in (VERSION_HEADER, "Mcp-Method", "Mcp-Name"):
        if len(request.headers.getall(name, [])) > 1:
            raise RpcError(HEADER_MISMATCH, f"the {name} header appears more than once")
    if request.headers.get(VERSION_HEADER) != version:
        raise RpcError(HEADER_MISMATCH, f"{VERSION_HEADER} does not match params._meta")
    if request.headers.get("Mcp-Method") != message.method:
        raise RpcError(HEADER_MISMATCH, "Mcp-Method does not match the request's method")
    key = _NAMED.get(message.method)
    named = None if key is None else message.params.get(key)
    if named is not None and header_value(request.headers.get("Mcp-Name")) != named:
        raise RpcError(HEADER_MISMATCH, f"Mcp-Name does not match the request's {key}")


def header_value(raw: str | None) -> str | None:
    """A header value, decoding the ``=?base64?…?=`` form; None when absent or malformed."""
    if raw is None or not (raw.startswith("=?base64?") and raw.endswith("?=")):
        return raw
    payload = raw[len("=?base64?") : -len("?=")]
    try:
        return base64.b64decode(payload, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
