"""Live updates: a WebSocket per context, and a Server-Sent Events tail of the whole log.

Both read the event store's catch-up subscriptions, so a change made by any client (or any
process on the same database) reaches them, in log order, with no gap: a WebSocket notes the
log's head *before* reading the context it sends first, then skips events the context already
reflects (by version). An SSE client resumes with ``Last-Event-ID`` (the id of the last event
it got). Positions (SSE ids, ``position`` in event bodies) are the ones the caller is shown:
its tenant's numbering with API keys, the log's on an open server (``projections.positions``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from typing import Any

import msgspec
from aiohttp import WSMsgType, web

import projections as pj
from eventstore import InvalidStreamId, LogFilter

from .. import appkeys, ratelimit
from ..auth import caller
from ..errors import ApiError, error_body, internal, invalid, translate
from . import render, schemas, wire
from .openapi import operation
from .schemas import AppendFrame, ClientFrame, PingFrame

log = logging.getLogger("ctxlog.api")

_encoder = msgspec.json.Encoder()
_POSITION = re.compile(r"[0-9]{1,19}")
POLICY_VIOLATION = 1008


# -- WebSocket --------------------------------------------------------------------------------


@operation(
    "Follow a context over a WebSocket",
    tag="live",
    # 101 on the handshake; a plain GET (no Upgrade) is a 400. An unknown context is not a
    # 404: the socket opens and closes with 1008.
    status=101,
    errors=(400,),
    description=(
        "Upgrade to a WebSocket. The server sends {type: 'context', context} first, then "
        "{type: 'event', event} for every change. Send {type: 'append', id?, message | "
        "messages, expected_version?}; the answer is {type: 'appended', id, version, "
        "message_ids} or {type: 'error', id, error}. {type: 'ping'} is answered with "
        "{type: 'pong'}. An unknown context closes with code 1008."
    ),
)
async def context_websocket(request: web.Request) -> web.WebSocketResponse:
    """Send the context, then every change; take append frames and answer each."""
    with ratelimit.live_slot(request):  # refused (429/503) before the handshake when full
        return await _websocket(request)


async def _websocket(request: web.Request) -> web.WebSocketResponse:
    who = caller(request)
    service = appkeys.contexts(request)
    store = appkeys.store(request)
    live = request.app[appkeys.LIVE]
    settings = request.app[appkeys.SETTINGS]
    ws = web.WebSocketResponse(heartbeat=30.0, max_msg_size=settings.max_body_bytes)
    await ws.prepare(request)
    live.websockets.add(ws)
    try:
        context_id = request.match_info["id"].lower()
        head = await store.head()
        try:
            state = await service.get(who, context_id)
        except (pj.ContextNotFound, pj.ContextIsDeleted, InvalidStreamId):
            await ws.close(code=POLICY_VIOLATION, message=b"context not found")
            return ws
        lock = asyncio.Lock()
        await _send(ws, lock, {"type": "context", "context": render.render_context(state)})
        flt = LogFilter(stream_id=context_id, tenant=who.tenant)
        follow = _pump(ws, lock, service, who, flt, head, state.version)
        pump = asyncio.create_task(follow)
        try:
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    await _send(ws, lock, await _answer(request, context_id, msg.data))
                elif msg.type == WSMsgType.BINARY:
                    error = invalid("frames must be JSON text", "$")
                    await _send(ws, lock, _error_frame(error, None))
        finally:
            pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pump
    finally:
        live.websockets.discard(ws)
    return ws


async def _send(ws: web.WebSocketResponse, lock: asyncio.Lock, frame: Any) -> None:
    # The pump and the answers share the socket; one frame at a time.
    async with lock:
        if not ws.closed:
            await ws.send_str(_encoder.encode(frame).decode())


async def _pump(
    ws: web.WebSocketResponse,
    lock: asyncio.Lock,
    service: pj.Contexts,
    who: pj.Caller,
    flt: LogFilter,
    head: int,
    seen_version: int,
) -> None:
    tenant = who.tenant is not None
    async with contextlib.aclosing(service.store.subscribe(head, flt)) as events:
        async for rec in events:
            if rec.version <= seen_version:
                continue  # already in the context sent first
            (position,) = await service.positions(who, [rec])
            event = render.render_event(rec, position, tenant=tenant)
            await _send(ws, lock, {"type": "event", "event": event})
            if rec.type == "context.deleted":
                await ws.close(code=1000, message=b"context deleted")
                return


async def _answer(request: web.Request, context_id: str, data: str) -> dict[str, Any]:
    frame_id = None
    try:
        ratelimit.take(request)  # frames draw on the same bucket as requests
        # The same checks as request bodies: shape, unknown fields, NUL, nesting.
        frame: ClientFrame = wire.decode(data.encode("utf-8", "surrogatepass"), ClientFrame)
        frame_id = frame.id
        match frame:
            case PingFrame():
                return {"type": "pong", "id": frame_id}
            case AppendFrame():
                return await _append(request, context_id, frame)
    except Exception as exc:  # every failure becomes an error frame
        error = translate(exc)
        if error is None:
            request_id = caller(request).request_id or "-"
            log.exception("request %s: WebSocket frame failed", request_id)
            error = internal(request_id)
        return _error_frame(error, frame_id)
    raise AssertionError("unreachable")


async def _append(request: web.Request, context_id: str, frame: AppendFrame) -> dict[str, Any]:
    if (frame.message is None) == (frame.messages is None):
        raise invalid("give either message or messages", "$.message")
    items = [frame.message] if frame.message is not None else frame.messages or []
    written = await appkeys.contexts(request).append(
        caller(request),
        context_id,
        [render.new_message(m) for m in items],
        expected_version=frame.expected_version,
    )
    return {
        "type": "appended",
        "id": frame.id,
        "version": written.version,
        "message_ids": written.message_ids,
    }


def _error_frame(error: ApiError, frame_id: str | None) -> dict[str, Any]:
    body = msgspec.json.decode(error_body(error))
    return {"type": "error", "id": frame_id, **body}


# -- Server-Sent Events -----------------------------------------------------------------------


@operation(
    "Tail the log as Server-Sent Events",
    tag="live",
    query=schemas.StreamQuery,
    response=schemas.EventOut,
    content_type="text/event-stream",
    headers=("Last-Event-ID",),
    description=(
        "Each event is sent as `id: <position>`, `event: <type>`, `data: <EventOut JSON>`. "
        "With API keys a position is the event's number among the tenant's events (1, 2, "
        "…), never the log's: other tenants' writes do not move it. "
        "Without `after` or Last-Event-ID the stream starts at the current end of the log."
    ),
)
async def stream_events(request: web.Request) -> web.StreamResponse:
    """Every event of the caller's tenant after a position, then live, until the client leaves."""
    with ratelimit.live_slot(request):  # refused (429/503) before the stream starts when full
        return await _event_stream(request)


async def _event_stream(request: web.Request) -> web.StreamResponse:
    who = caller(request)
    params = wire.query(request, schemas.StreamQuery)
    store = appkeys.store(request)
    service = appkeys.log_reader(request, who.tenant)
    live = request.app[appkeys.LIVE]
    settings = request.app[appkeys.SETTINGS]
    after = params.after
    last_id = request.headers.get("Last-Event-ID")
    if last_id is not None:
        # ASCII digits only (str.isdigit takes "²", which int() refuses), within 64 bits.
        if not _POSITION.fullmatch(last_id.strip()) or int(last_id) > schemas.MAX_INT:
            raise invalid("Last-Event-ID must be a position", "Last-Event-ID", "header")
        after = int(last_id)
    floor = 0  # events the caller is shown at this position or before are not sent
    if after is None:
        start = await store.head()
        after = await service.shown_at(who, start)
    else:
        found = await service.log_position(who, after)
        # Past the tenant's last event: from the end of the log, skipping up to ``after``.
        start, floor = (found, 0) if found is not None else (await store.head(), after)
    tenant = who.tenant is not None
    flt = LogFilter(
        types=tuple(params.type.split(",")) if params.type else None,
        stream_id=None if params.context_id is None else str(params.context_id),
        tenant=who.tenant,
    )
    response = await wire.open_event_stream(request)
    # The first block names where the stream starts: a client that loses the connection
    # before any event arrives resumes from here with Last-Event-ID (an id line sets it even
    # without data), instead of from a later end of the log that would skip what came between.
    await response.write(b"retry: 1000\nid: %d\n: connected\n\n" % after)
    beat = asyncio.create_task(_heartbeat(response, settings.sse_heartbeat))
    try:
        with live.streaming():
            async with contextlib.aclosing(store.subscribe(start, flt)) as events:
                async for rec in events:
                    (position,) = await service.positions(who, [rec])
                    if position <= floor:
                        continue
                    data = _encoder.encode(render.render_event(rec, position, tenant=tenant))
                    # Waits while the client does not read (aiohttp drains the transport
                    # past 64 KiB); meanwhile the subscription holds at most its budget.
                    await response.write(
                        b"id: %d\nevent: %s\ndata: %s\n\n" % (position, rec.type.encode(), data)
                    )
    except ConnectionError:
        pass  # the client went away (a reset while a write waited): nothing to answer
    finally:
        beat.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await beat
    return response


async def _heartbeat(response: web.StreamResponse, seconds: float) -> None:
    # A comment line every so often keeps proxies from closing an idle stream.
    with contextlib.suppress(ConnectionError):  # the client went away
        while True:
            await asyncio.sleep(seconds)
            await response.write(b": keep-alive\n\n")
