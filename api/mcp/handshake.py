"""The handshake era (2025-03-26 to 2025-11-25) over HTTP: sessions.

``initialize`` opens a session and the response names it (``Mcp-Session-Id``); every later
request must name it (400 without, 404 for one that is unknown, ended, expired or another
key's). Notifications and responses are accepted with 202. A 2025-03-26 session may send
batches, which later revisions removed.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

from aiohttp import web

from projections.service import Caller

from .. import ratelimit
from ..errors import ApiError
from .endpoint import ENDPOINT, SESSION_HEADER, VERSION_HEADER, Endpoint, run
from .protocol import (
    INVALID_REQUEST,
    Message,
    Notification,
    Reply,
    Request,
    RpcError,
    Unavailable,
    classify,
    error_message,
    request_id,
    result_message,
)
from .replies import error_response, json_response, limit_error, refuse, reply
from .server import Call
from .sessions import Session
from .updates import Follower


async def handle(request: web.Request, caller: Caller, value: Any) -> web.StreamResponse:
    """Serve one handshake-era POST (``value`` is its decoded body)."""
    endpoint = request.app[ENDPOINT]
    if isinstance(value, dict) and value.get("method") == "initialize":
        return await _initialize(endpoint, caller, value, ratelimit.caller_key(request))
    session = await session_of(request, caller)
    if isinstance(session, web.Response):
        return session
    if isinstance(value, list):
        return await _batch(endpoint, caller, session, value)
    try:
        message = classify(value)
    except RpcError as e:
        return error_response(400, e, request_id(value))
    answered = await _one(endpoint, caller, session, message)
    if answered is None:
        return web.Response(status=202)
    return reply(*answered)


async def _initialize(
    endpoint: Endpoint, caller: Caller, value: Any, key: Hashable
) -> web.Response:
    try:
        message = classify(value)
    except RpcError as e:
        return error_response(400, e, request_id(value))
    if not isinstance(message, Request):
        return refuse(400, "initialize is a request (it needs an id)")
    version, result = endpoint.server.initialize(message.params)
    try:
        session = await endpoint.sessions.open(caller, version, key)
    except ApiError as e:  # 429: the key's sessions; 503: the server's
        return reply(e.status, error_message(message.id, limit_error(e)))
    return json_response(result_message(message.id, result), 200, {SESSION_HEADER: session.id})


async def session_of(request: web.Request, caller: Caller) -> Session | web.Response:
    """The session a request names, or the refusal (400 without one, 404 for an unknown one,
    400 when ``MCP-Protocol-Version`` is not the session's)."""
    session_id = request.headers.get(SESSION_HEADER)
    if session_id is None:
        return refuse(400, f"a {SESSION_HEADER} header is required (initialize first)")
    session = await request.app[ENDPOINT].sessions.get(session_id, caller)
    if session is None:
        return refuse(404, "session not found")
    version = request.headers.get(VERSION_HEADER)
    if version is not None and version != session.version:
        return refuse(400, f"{VERSION_HEADER} {version} is not this session's {session.version}")
    return session


async def _one(
    endpoint: Endpoint, caller: Caller, session: Session, message: Message
) -> tuple[int, dict[str, Any]] | None:
    """The status and answer to one message of a session (None: nothing to answer, 202)."""
    match message:
        case Notification() | Reply():
            return None  # initialized, cancellations, roots changes, answers: nothing to do
    assert isinstance(message, Request)
    if message.method == "initialize":
        error = RpcError(INVALID_REQUEST, "this session is already initialized")
        return 200, error_message(message.id, error)
    call = Call(caller, session.version)
    if message.method not in ("resources/subscribe", "resources/unsubscribe"):
        return await run(call, message, endpoint.server)
    # One at a time per session: a follower another request is still setting up must not be
    # stopped for watching nothing yet.
    async with session.subscribing:
        if message.method == "resources/subscribe" and session.follower is None:
            try:
                contexts = await endpoint.contexts()
            except Unavailable as e:
                return 503, error_message(message.id, e)
            try:
                session.follow(endpoint.live, lambda: Follower(contexts, caller, session.post))
            except ApiError as e:  # 429: the key's live connections; 503: the server's
                return e.status, error_message(message.id, limit_error(e))
        call.follower = session.follower
        try:
            return await run(call, message, endpoint.server)
        finally:
            await session.unfollow_if_idle()  # a refused subscription, or none left


async def _batch(
    endpoint: Endpoint, caller: Caller, session: Session, values: list[Any]
) -> web.Response:
    # Batches were part of 2025-03-26 only; later revisions removed them.
    if session.version != "2025-03-26" or not values:
        return refuse(400, "a body must be one JSON-RPC message")
    replies: list[dict[str, Any]] = []
    for value in values:
        try:
            message = classify(value)
        except RpcError as e:
            replies.append(error_message(request_id(value), e))
            continue
        answered = await _one(endpoint, caller, session, message)
        if answered is not None:
            replies.append(answered[1])
    if not replies:
        return web.Response(status=202)
    return json_response(replies)
