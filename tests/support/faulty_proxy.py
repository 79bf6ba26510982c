"""A TCP proxy on loopback in front of a real server that misbehaves on cue, for the client's
failure tests: each new connection takes the next fault from a queue (then passes bytes
through), and ``cut_all`` drops every open connection at once (a dropped event stream).

Faults: ``"reset"`` closes the connection before anything reaches the server; ``"lose"``
passes the request on and drops the connection once the server has started answering (the
server did the work, the client never hears of it); ``"hang"`` takes the request and never
answers; any ``bytes`` are answered as they are (a canned 503, a proxy's HTML page) without
asking the server.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from typing import Any

Fault = str | bytes


class FaultyProxy:
    """Listens on 127.0.0.1 (``url``); forwards to ``upstream_port`` (change it after a
    restart of the server on another port)."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.faults: deque[Fault] = deque()
        self.connections = 0
        self._server: asyncio.Server | None = None
        self._open: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closing = asyncio.Event()

    @property
    def url(self) -> str:
        """The proxy's base URL."""
        assert self._server is not None
        port = self._server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    async def start(self) -> FaultyProxy:
        """Start listening; returns self."""
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def close(self) -> None:
        """Stop listening and drop every connection."""
        # Connections end by themselves once their sockets are aborted (and a "hang" once
        # told): cancelling a connection's task instead makes asyncio log it as an error.
        if self._server is not None:
            self._server.close()
        self._closing.set()
        self.cut_all()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=10)
        if self._server is not None:
            await self._server.wait_closed()

    def cut_all(self) -> None:
        """Drop every open connection, both ways, now."""
        for writer in list(self._open):
            with contextlib.suppress(Exception):
                writer.transport.abort()
        self._open.clear()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._open.add(writer)
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        fault = self.faults.popleft() if self.faults else None
        try:
            if fault == "reset":
                writer.transport.abort()
                return
            if isinstance(fault, bytes):
                await reader.read(65536)
                writer.write(fault)
                await writer.drain()
                writer.close()
                return
            if fault == "hang":
                await reader.read(65536)
                await self._closing.wait()
                return
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
            self._open.add(up_writer)
            to_server = asyncio.create_task(self._pipe(reader, up_writer))
            if fault == "lose":
                await up_reader.read(1)  # the server has answered: drop it all
                writer.transport.abort()
                up_writer.transport.abort()
            else:
                await self._pipe(up_reader, writer)
            await to_server  # ends once either side's socket is gone
        except (ConnectionError, OSError):
            pass
        finally:
            self._open.discard(writer)
            self._tasks.discard(task)
            with contextlib.suppress(Exception):
                writer.transport.abort()

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            with contextlib.suppress(Exception):
                writer.transport.abort()


def canned(status: int, body: bytes, *, content_type: str = "application/json") -> bytes:
    """A whole HTTP/1.1 answer with ``status`` and ``body`` that closes its connection."""
    head = (
        f"HTTP/1.1 {status} X\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\nRetry-After: 0\r\nConnection: close\r\n\r\n"
    )
    return head.encode() + body
