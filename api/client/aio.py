"""The asynchronous client, on aiohttp: one pooled session, retries, pages, live events.

``async with AsyncClient("http://127.0.0.1:8080", api_key=...) as client:`` then one method per
operation (``operations.py``). Nothing touches the network before the first request: the
session is made then, in the running event loop.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, AsyncIterator
from types import TracebackType
from typing import Any, Literal, TypeVar

import aiohttp

from api.rest import schemas as s

from . import operations as op
from .errors import ConnectionFailed, CtxlogError, Timeout, TransportError
from .sse import Reader, decode_event
from .wire import Call, Retry, answer, error, headers, query, transient

T = TypeVar("T")

_NOT_SENT = (aiohttp.ClientConnectorError,)
"""Failures before the request left: safe to repeat whatever it is."""
_LOST = (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError)
"""Failures after it may have arrived: repeat only what cannot do anything twice."""


class AsyncClient(op.Operations):
    """A ctxlog API client for asyncio (``base_url`` is the server's root, e.g.
    ``http://127.0.0.1:8080``).

    ``timeout`` bounds each request (seconds); ``retry`` says how connection failures, 429 and
    503 are retried (writes carry an Idempotency-Key, so a retried write is applied once);
    ``connections`` caps the pooled connections.
    """

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        timeout: float = 30.0,
        retry: Retry | None = None,
        connections: int = 100,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(
            base_url, api_key=api_key, timeout=timeout, retry=retry, headers=headers
        )
        self._connections = connections
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the pooled connections."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._connections),
                timeout=aiohttp.ClientTimeout(total=self.timeout),
                raise_for_status=False,
            )
        return self._session

    async def send(self, call: Call[T]) -> T:
        """Send ``call`` (retrying what is transient and safe to repeat); its answer."""
        if_match = self.versions.resolve(call)
        sent = headers(call, if_match, self._headers)
        url = self.base_url + call.path
        for attempt in range(self.retry.attempts):
            last = attempt == self.retry.attempts - 1
            try:
                async with self._http().request(
                    call.method, url, params=self.versions.query(call), data=call.body, headers=sent
                ) as response:
                    body = await response.read()
                    status, head = response.status, response.headers
            except _NOT_SENT as e:
                failure: BaseException = ConnectionFailed(call.operation, str(e) or repr(e), e)
            except TimeoutError as e:
                failure = Timeout(call.operation, f"no answer within {self.timeout} s", e)
                if not call.retry_safe:
                    raise failure from e
            except _LOST as e:
                failure = ConnectionFailed(call.operation, str(e) or repr(e), e)
                if not call.retry_safe:
                    raise failure from e
            else:
                try:
                    value = answer(call, status, head, body)
                except CtxlogError as e:
                    if last or not transient(e, call):
                        raise
                    failure = e
                else:
                    self.versions.note(call, head, value)
                    return value
            if last:
                raise failure
            await asyncio.sleep(self.retry.delay(attempt, failure))
        raise AssertionError("unreachable")  # pragma: no cover

    # -- pages as iterators -------------------------------------------------------------------

    async def iter_contexts(
        self, *, metadata: dict[str, str] | None = None, page: int = 100
    ) -> AsyncIterator[s.ContextListItem]:
        """Every context (newest first), a page at a time."""
        cursor = None
        while True:
            found = await self.list_contexts(cursor=cursor, limit=page, metadata=metadata)
            for item in found.contexts:
                yield item
            if found.next_cursor is None:
                return
            cursor = found.next_cursor

    async def iter_history(
        self,
        context_id: str,
        *,
        from_version: int | None = None,
        direction: Literal["forward", "backward"] = "forward",
        page: int = 1000,
    ) -> AsyncIterator[s.EventOut]:
        """Every event of a context from ``from_version`` on (or back), a page at a time."""
        while True:
            found = await self.get_history(
                context_id, from_version=from_version, limit=page, direction=direction
            )
            for event in found.events:
                yield event
            if found.next_from_version is None:
                return
            from_version = found.next_from_version

    async def iter_messages(
        self, context_id: str, *, version: int | None = None, page: int = 1000
    ) -> AsyncIterator[s.MessageOut]:
        """Every message of a context (now, or at ``version``), oldest first."""
        after = None
        while True:
            found = await self.list_messages(context_id, version=version, after=after, limit=page)
            for message in found.messages:
                yield message
            if found.next_after is None:
                return
            after, version = found.next_after, found.version

    async def iter_events(
        self, *, after: int = 0, page: int = 1000, **filters: Any
    ) -> AsyncIterator[s.EventOut]:
        """The audit query's events after ``after`` (``filters``: type, context_id, actor,
        since, until), up to the end of the log as it is now."""
        while True:
            found = await self.list_events(after=after, limit=page, **filters)
            for event in found.events:
                yield event
            if not found.events or found.next_after <= after:
                return
            after = found.next_after

    # -- live events --------------------------------------------------------------------------

    async def follow(
        self,
        *,
        after: int | None = None,
        context_id: str | None = None,
        types: list[str] | None = None,
        give_up_after: float = 60.0,
        read_timeout: float = 60.0,
    ) -> AsyncGenerator[s.EventOut, None]:
        """The caller's events after log position ``after`` (default: from now), then live,
        forever: a dropped connection (a restart, a proxy) is reopened with Last-Event-ID, so
        no event is missed or repeated. Raises ``ConnectionFailed`` once the server has been
        unreachable for ``give_up_after`` seconds. Close it (``contextlib.aclosing``) to stop.
        """
        reader = Reader(last_id=None if after is None else str(after))
        params = query(context_id=context_id, type=",".join(types) if types else None)
        url = f"{self.base_url}{op.V1}/events/stream"
        timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=self.timeout, sock_read=read_timeout
        )
        attempt, failing_since = 0, None
        while True:
            sent = dict(self._headers, Accept="text/event-stream")
            if reader.last_id is not None:
                sent["Last-Event-ID"] = reader.last_id
            failure: BaseException
            try:
                async with self._http().get(
                    url, params=params, headers=sent, timeout=timeout
                ) as response:
                    if response.status != 200:
                        raise error("stream_events", response.status, response.headers,
                                    await response.read())  # fmt: skip
                    attempt, failing_since = 0, None
                    async for line in _lines(response.content):
                        message = reader.feed(line)
                        if message is not None:
                            yield decode_event(message)
                failure = ConnectionFailed("stream_events", "the server ended the stream")
            except (aiohttp.ClientError, TimeoutError) as e:
                failure = TransportError("stream_events", str(e) or repr(e), e)
            except CtxlogError as e:
                if not transient(e, Call("stream_events", "GET", "", None, frozenset())):
                    raise
                failure = e
            now = time.monotonic()
            failing_since = failing_since or now
            if now - failing_since > give_up_after:
                raise ConnectionFailed(
                    "stream_events", f"no stream for {give_up_after} s: {failure}"
                ) from failure
            await asyncio.sleep(self.retry.delay(attempt, failure))
            attempt += 1


async def _lines(content: aiohttp.StreamReader) -> AsyncIterator[str]:
    # Split on newlines ourselves: readline() caps a line's length, and an event's data line
    # is as long as its JSON.
    buffer = b""
    async for chunk in content.iter_any():
        buffer += chunk
        if b"\n" not in chunk:
            continue
        *complete, buffer = buffer.split(b"\n")
        for raw in complete:
            yield raw.rstrip(b"\r").decode("utf-8", "replace")
