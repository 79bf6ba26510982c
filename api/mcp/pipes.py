"""The stdio server's two streams: stdin as an asyncio reader, stdout as a writer that carries
protocol messages only.

Pipes (what MCP clients give a subprocess) and terminals go through asyncio's pipe transports,
so a client that reads slowly makes the server wait instead of blocking its event loop. A
regular file (``< requests.jsonl > answers.jsonl``) or a device (``< /dev/null``) cannot: it is
read on a thread and written directly, which for those does not block.
"""

from __future__ import annotations

import asyncio
import os
import stat
import sys
import threading

CHUNK = 1 << 16


async def open_stdin(limit: int) -> asyncio.StreamReader:
    """A reader of stdin whose lines may be up to ``limit`` bytes."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=limit)
    if _pollable(sys.stdin.fileno()):
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    else:  # a regular file, or a device such as /dev/null

        def pump() -> None:
            fd = sys.stdin.fileno()
            while chunk := os.read(fd, CHUNK):
                loop.call_soon_threadsafe(reader.feed_data, chunk)
            loop.call_soon_threadsafe(reader.feed_eof)

        # A daemon: a read blocked on a file descriptor must not hold the process at exit.
        threading.Thread(target=pump, name="ctxlog-mcp-stdin", daemon=True).start()
    return reader


def _pollable(fd: int) -> bool:
    """Whether ``fd`` can be watched by the event loop: a pipe, a socket or a terminal. asyncio
    takes any character device as a pipe, but epoll refuses most of them (/dev/null: EPERM,
    reported only in a callback, and stdin's end would then never come)."""
    mode = os.fstat(fd).st_mode
    return stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode) or os.isatty(fd)


class Output:
    """stdout, kept for protocol messages: file descriptor 1 is duplicated for them, then
    pointed at stderr, so that anything else written to stdout (a print, a library's chatter)
    ends up in the log instead of corrupting the stream."""

    def __init__(self) -> None:
        self._fd = -1
        self._writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        """Take stdout over."""
        self._fd = os.dup(sys.stdout.fileno())
        os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
        sys.stdout.flush()  # whatever was printed before goes to stderr too
        loop = asyncio.get_running_loop()
        # closefd=False: the descriptor is ours to close, whichever way it is written.
        pipe = os.fdopen(self._fd, "wb", buffering=0, closefd=False)
        try:
            transport, protocol = await loop.connect_write_pipe(
                asyncio.streams.FlowControlMixin, pipe
            )
        except ValueError:  # a regular file: plain writes
            return
        self._writer = asyncio.StreamWriter(transport, protocol, None, loop)

    async def write(self, data: bytes) -> None:
        """Write ``data`` whole, waiting while the reader is behind."""
        if self._writer is not None:
            self._writer.write(data)
            await self._writer.drain()
            return
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view) :]

    def close(self) -> None:
        """Close the protocol stream (the reader sees its end)."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
