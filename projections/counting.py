"""Token counts from a second process, for replays.

A replay (a rebuild, a first build) runs on one core: its stages (reading and decoding the
log, counting tokens, applying to the read model) are threads of one process and take the
GIL in turn, so on two cores a rebuild still uses about one. Counting is the stage that
needs nothing but the messages' text, so ``Counting`` hands it to a worker process, which
counts page N+1 while this process applies page N.

The worker is a plain Python process (``serve``) over pipes rather than a ``multiprocessing``
pool: a pool's child imports the parent's main module again, which a host script without a
``__main__`` guard would run a second time. It is started with the parent's ``sys.path``, so
it counts with the same code whatever way ctxlog was installed.

Until the worker says it is ready (importing and loading the encoding takes a moment), and
for good if it fails in any way, pages are counted here, exactly as before: the worker only
ever makes a replay faster, never wrong or broken. Counts are the same either way: both
sides count with ``MessageCounter`` over the same encoding.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Iterator

import msgspec

from eventstore import Content, MessageAppended, RecordedEvent

from .apply import MessageCounter, Tokens
from .tokens import TokenCounter, counter

log = logging.getLogger(__name__)

Batch = list[tuple[str, Content, str | None]]
"""What the worker is sent: each appended message's (role, content, name)."""
_HEADER = 4  # a frame: its length (little-endian u32), then JSON: messages, or their counts
# JSON, as in the log: the content the worker decodes is what this process decoded from it.
_encode = msgspec.json.Encoder().encode
_decode_counts = msgspec.json.Decoder(list[int]).decode
_SERVE = f"import sys; from {__name__} import serve; serve(sys.argv[1])"


def _frame(body: bytes) -> bytes:
    return len(body).to_bytes(_HEADER, "little") + body


def _messages(batch: list[RecordedEvent]) -> Iterator[tuple[int, MessageAppended]]:
    for rec in batch:
        if isinstance(event := rec.event, MessageAppended):
            yield rec.position, event


def count_here(counting: MessageCounter, batch: list[RecordedEvent]) -> Tokens:
    """The token counts of the batch's appended messages, counted in this process."""
    count = counting.count_message
    return {at: count(e.role, e.content, e.name) for at, e in _messages(batch)}


class Counting:
    """Counts replay pages in a worker process when it can, here when it cannot.

    ``start``, ``count`` one page at a time, ``close``."""

    def __init__(self, counting: MessageCounter, *, worker: bool = True) -> None:
        self.counting = counting
        # Only a plain TokenCounter is known by its encoding's name alone; any other counter
        # (a caller's own) counts here.
        self._encoding = (
            counting.encoding if worker and type(counting.counter) is TokenCounter else None
        )
        self._proc: asyncio.subprocess.Process | None = None
        self._pipes: tuple[asyncio.StreamWriter, asyncio.StreamReader] | None = None
        self._ready: asyncio.Task[bytes] | None = None
        """Reads the worker's first frame, which says it has loaded the encoding."""
        self.pages_away = 0
        """Pages the worker counted (for tests to see it took part)."""

    @property
    def pid(self) -> int | None:
        """The worker's process id while there is one."""
        return None if self._proc is None else self._proc.pid

    async def start(self) -> None:
        """Start the worker, if this counter can have one; counting goes on here meanwhile."""
        if self._encoding is not None and sys.executable:
            try:
                self._proc = await asyncio.create_subprocess_exec(
                    sys.executable, "-c", _SERVE, self._encoding,
                    stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                    env={**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)},
                )  # fmt: skip
            except OSError as e:
                log.warning("token counting stays in this process: %s", e)
                return
            assert self._proc.stdin is not None  # both are pipes, as asked
            assert self._proc.stdout is not None
            self._pipes = self._proc.stdin, self._proc.stdout
            self._ready = asyncio.ensure_future(_read_frame(self._proc.stdout))

    async def ready(self) -> bool:
        """Wait for the worker to be ready; whether it is (False: pages are counted here)."""
        if self._ready is not None:
            with contextlib.suppress(Exception):
                await asyncio.shield(self._ready)
        return self._usable()

    async def close(self) -> None:
        """Stop the worker (it ends at the end of its input)."""
        await self._stop()

    async def count(self, batch: list[RecordedEvent]) -> Tokens:
        """The token counts of the batch's appended messages, by position."""
        messages = list(_messages(batch))
        if not messages or not self._usable():
            return count_here(self.counting, batch)
        try:
            counts = await self._ask([(e.role, e.content, e.name) for _, e in messages])
        except Exception as e:  # whatever broke, this process can count the page
            log.warning("token counting returns to this process: the worker failed: %r", e)
            await self._stop()
            return count_here(self.counting, batch)
        self.pages_away += 1
        return {at: n for (at, _), n in zip(messages, counts, strict=True)}

    def _usable(self) -> bool:
        ready = self._ready
        if ready is None or not ready.done():
            return False
        if not ready.cancelled() and (error := ready.exception()) is not None:
            log.warning("token counting stays in this process: the worker failed: %r", error)
            self._ready = None
            return False
        return True

    async def _ask(self, messages: Batch) -> list[int]:
        assert self._pipes is not None  # usable
        stdin, stdout = self._pipes
        stdin.write(_frame(_encode(messages)))
        await stdin.drain()
        counts = _decode_counts(await _read_frame(stdout))
        if len(counts) != len(messages):
            raise ValueError(f"{len(counts)} counts for {len(messages)} messages")
        return counts

    async def _stop(self) -> None:
        proc, self._proc, self._pipes = self._proc, None, None
        ready, self._ready = self._ready, None
        if ready is not None:
            ready.cancel()
            with contextlib.suppress(BaseException):  # its failure was logged or is moot
                await ready
        if proc is None:
            return
        if proc.stdin is not None:
            proc.stdin.close()  # the worker ends at the end of its input
        try:
            await asyncio.wait_for(proc.wait(), 5)
        except TimeoutError:  # it does not end: end it
            _kill(proc)
            await proc.wait()
        except asyncio.CancelledError:
            _kill(proc)
            raise


async def _read_frame(stdout: asyncio.StreamReader) -> bytes:
    size = int.from_bytes(await stdout.readexactly(_HEADER), "little")
    return await stdout.readexactly(size)


def _kill(proc: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError):
        proc.kill()


def serve(encoding: str) -> None:
    """Answer each frame of messages with a frame of their token counts, until end of input."""
    # A Ctrl-C at the terminal reaches the whole process group: the parent decides, and this
    # process ends with its input.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    count = MessageCounter(counter(encoding)).count_message
    decode = msgspec.json.Decoder(Batch).decode
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    stdout.write(_frame(b""))  # ready: the encoding is loaded
    stdout.flush()
    while len(header := stdin.read(_HEADER)) == _HEADER:
        messages = decode(stdin.read(int.from_bytes(header, "little")))
        stdout.write(_frame(_encode([count(*message) for message in messages])))
        stdout.flush()
