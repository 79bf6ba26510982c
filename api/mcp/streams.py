"""The long-lived MCP event streams over HTTP: a handshake-era session's GET stream, and the
stateless era's ``subscriptions/listen`` response stream.

Both send each JSON-RPC notification as one ``event: message`` and a comment line when idle
(proxies close silent streams). Both are registered with the app's ``Live`` streams so that a
shutdown ends them instead of waiting for clients that never hang up; a listen stream then
closes gracefully, with the empty result the 2026-07-28 revision asks for.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator
from typing import Any

from aiohttp import web

from .. import appkeys, ratelimit
from ..errors import ApiError
from ..rest.wire import open_event_stream
from .protocol import (
    INTERNAL_ERROR,
    METHOD_NOT_FOUND,
    SUBSCRIPTION_ID_KEY,
    Request,
    RpcError,
    Unavailable,
    encode,
    error_message,
    notification,
    result_message,
)
from .replies import error_response, refuse, reply
from .server import Call, Server
from .sessions import OUTBOX, Session
from .updates import Follower

POLL = 1.0
"""How often an idle stream looks whether its client is still there."""


def frame(message: dict[str, Any]) -> bytes:
    """One server-sent event carrying a JSON-RPC message."""
    return b"event: message\ndata: " + encode(message) + b"\n\n"


async def _pump(
    request: web.Request, response: web.StreamResponse, queue: asyncio.Queue[Any]
) -> bool:
    """Send what arrives on ``queue`` until a None arrives (True) or the client leaves
    (False); a comment line every heartbeat while idle."""
    heartbeat = request.app[appkeys.SETTINGS].sse_heartbeat
    quiet_since = time.monotonic()
    while True:
        transport = request.transport
        if transport is None or transport.is_closing():
            return False
        try:
            message = await asyncio.wait_for(queue.get(), POLL)
        except TimeoutError:
            if time.monotonic() - quiet_since >= heartbeat:
                await response.write(b": keep-alive\n\n")
                quiet_since = time.monotonic()
            continue
        if message is None:
            return True
        await response.write(frame(message))
        quiet_since = time.monotonic()


@contextlib.contextmanager
def _slot(request: web.Request) -> Iterator[web.Response | None]:
    """One of the caller's live connection slots, shared with WebSockets and event streams
    (api/ratelimit.py), or the refusal to answer with: 429 past the key's cap, 503 past the
    server's."""
    try:
        held = ratelimit.live_slot(request)
        held.__enter__()
    except ApiError as e:
        yield refuse(e.status, e.message, {"Retry-After": str(e.details.get("retry_after", 1))})
        return
    try:
        yield None
    finally:
        held.__exit__(None, None, None)


async def event_stream(request: web.Request, session: Session) -> web.StreamResponse:
    """A session's GET stream: its notifications until the session ends or the client goes."""
    with _slot(request) as refused:
        if refused is not None:
            return refused
        return await _event_stream(request, session)


async def _event_stream(request: web.Request, session: Session) -> web.StreamResponse:
    session.streaming = True
    response = await open_event_stream(request, **{"Mcp-Session-Id": session.id})
    try:
        with request.app[appkeys.LIVE].streaming():
            await _pump(request, response, session.outbox)
    finally:
        session.streaming = False
        session.last_seen = time.monotonic()
    return response


async def listen(
    request: web.Request, call: Call, message: Request, server: Server
) -> web.StreamResponse:
    """``subscriptions/listen`` over HTTP: acknowledge, then stream the changes."""
    queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue(OUTBOX)
    meta = {SUBSCRIPTION_ID_KEY: message.id}

    async def send(notice: dict[str, Any]) -> None:
        if queue.full():
            queue.get_nowait()  # a client that does not read loses the oldest, not the newest
        queue.put_nowait(notice)

    try:
        follower = Follower(await server.contexts(), call.caller, send, meta)
        honored = await server.listen(call, message.params, follower)
    except Unavailable as e:
        return reply(503, error_message(message.id, e))
    except RpcError as e:
        return error_response(404 if e.code == METHOD_NOT_FOUND else 400, e, message.id)
    with _slot(request) as refused:
        if refused is not None:
            return refused
        return await _listen(request, call, message, server, follower, queue, meta, honored)


async def _listen(
    request: web.Request,
    call: Call,
    message: Request,
    server: Server,
    follower: Follower,
    queue: asyncio.Queue[dict[str, Any] | None],
    meta: dict[str, Any],
    honored: Any,
) -> web.StreamResponse:
    try:
        await follower.start()
    except Exception:
        error = RpcError(INTERNAL_ERROR, "could not follow the log")
        return error_response(500, error, message.id)
    response = await open_event_stream(request)
    try:
        with request.app[appkeys.LIVE].streaming() as end:
            ack = {"_meta": dict(meta), "notifications": honored}
            await response.write(
                frame(notification("notifications/subscriptions/acknowledged", ack))
            )
            await _pump(request, response, queue)
        if end.shutdown:  # the subscription ends gracefully: its (empty) result says so
            done = server.finish(call, {"_meta": dict(meta)})
            with contextlib.suppress(ConnectionResetError):
                await response.write(frame(result_message(message.id, done)))
    finally:
        await follower.close()
    return response
