"""The synchronous client, on httpx2 (``pip install 'ctxlog[client]'``): the same operations,
retries, pages and live events as ``AsyncClient``, for code without an event loop.

Why httpx2: it is the maintained line of httpx (by pydantic), the HTTP client the openai,
anthropic, mcp and openai-agents SDKs themselves depend on, so a ctxlog user almost always has
it already; it pools connections, has per-phase timeouts and streams responses (for the event
stream), with typed errors that tell a connection never made from one lost mid-request.
"""

from __future__ import annotations

import time
from collections.abc import Generator, Iterator
from types import TracebackType
from typing import Any, Literal, TypeVar

try:
    import httpx2
except ImportError as e:  # pragma: no cover - the extra is not installed
    raise ImportError(
        "the synchronous ctxlog client needs httpx2: pip install 'ctxlog[client]'"
    ) from e

from api.rest import schemas as s

from . import operations as op
from .errors import ConnectionFailed, CtxlogError, Timeout, TransportError
from .sse import Reader, decode_event
from .wire import Call, Retry, answer, error, headers, query, transient

T = TypeVar("T")


class Client(op.Operations):
    """A ctxlog API client without asyncio; the same arguments as ``AsyncClient``."""

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
        # httpx2 opens no connection until the first request.
        self._http = httpx2.Client(
            timeout=httpx2.Timeout(timeout),
            limits=httpx2.Limits(max_connections=connections),
            trust_env=False,
        )

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the pooled connections."""
        self._http.close()

    def send(self, call: Call[T]) -> T:
        """Send ``call`` (retrying what is transient and safe to repeat); its answer."""
        if_match = self.versions.resolve(call)
        sent = headers(call, if_match, self._headers)
        url = self.base_url + call.path
        for attempt in range(self.retry.attempts):
            last = attempt == self.retry.attempts - 1
            try:
                response = self._http.request(
                    call.method,
                    url,
                    params=self.versions.query(call),
                    content=call.body,
                    headers=sent,
                )
            except httpx2.ConnectError as e:  # never sent
                failure: BaseException = ConnectionFailed(call.operation, str(e) or repr(e), e)
            except httpx2.TimeoutException as e:
                failure = Timeout(call.operation, f"no answer within {self.timeout} s", e)
                if not call.retry_safe:
                    raise failure from e
            except httpx2.TransportError as e:
                failure = ConnectionFailed(call.operation, str(e) or repr(e), e)
                if not call.retry_safe:
                    raise failure from e
            else:
                try:
                    value = answer(call, response.status_code, response.headers, response.content)
                except CtxlogError as e:
                    if last or not transient(e, call):
                        raise
                    failure = e
                else:
                    self.versions.note(call, response.headers, value)
                    return value
            if last:
                raise failure
            time.sleep(self.retry.delay(attempt, failure))
        raise AssertionError("unreachable")  # pragma: no cover

    # -- pages as iterators -------------------------------------------------------------------

    def iter_contexts(
        self, *, metadata: dict[str, str] | None = None, page: int = 100
    ) -> Iterator[s.ContextListItem]:
        """Every context (newest first), a page at a time."""
        cursor = None
        while True:
            found = self.list_contexts(cursor=cursor, limit=page, metadata=metadata)
            yield from found.contexts
            if found.next_cursor is None:
                return
            cursor = found.next_cursor

    def iter_history(
        self,
        context_id: str,
        *,
        from_version: int | None = None,
        direction: Literal["forward", "backward"] = "forward",
        page: int = 1000,
    ) -> Iterator[s.EventOut]:
        """Every event of a context from ``from_version`` on (or back), a page at a time."""
        while True:
            found = self.get_history(
                context_id, from_version=from_version, limit=page, direction=direction
            )
            yield from found.events
            if found.next_from_version is None:
                return
            from_version = found.next_from_version

    def iter_messages(
        self, context_id: str, *, version: int | None = None, page: int = 1000
    ) -> Iterator[s.MessageOut]:
        """Every message of a context (now, or at ``version``), oldest first."""
        after = None
        while True:
            found = self.list_messages(context_id, version=version, after=after, limit=page)
            yield from found.messages
            if found.next_after is None:
                return
            after, version = found.next_after, found.version

    def iter_events(
        self, *, after: int = 0, page: int = 1000, **filters: Any
    ) -> Iterator[s.EventOut]:
        """The audit query's events after ``after`` (``filters``: type, context_id, actor,
        since, until), up to the end of the log as it is now."""
        while True:
            found = self.list_events(after=after, limit=page, **filters)
            yield from found.events
            if not found.events or found.next_after <= after:
                return
            after = found.next_after

    # -- live events --------------------------------------------------------------------------

    def follow(
        self,
        *,
        after: int | None = None,
        context_id: str | None = None,
        types: list[str] | None = None,
        give_up_after: float = 60.0,
        read_timeout: float = 60.0,
    ) -> Generator[s.EventOut, None, None]:
        """As ``AsyncClient.follow``: the events after ``after``, then live, resuming after a
        dropped connection with Last-Event-ID. Close the generator to stop."""
        reader = Reader(last_id=None if after is None else str(after))
        params = query(context_id=context_id, type=",".join(types) if types else None)
        url = f"{self.base_url}{op.V1}/events/stream"
        timeout = httpx2.Timeout(self.timeout, read=read_timeout)
        attempt, failing_since = 0, 0.0
        while True:
            sent = dict(self._headers, Accept="text/event-stream")
            if reader.last_id is not None:
                sent["Last-Event-ID"] = reader.last_id
            failure: BaseException
            try:
                with self._http.stream(
                    "GET", url, params=params, headers=sent, timeout=timeout
                ) as response:
                    if response.status_code != 200:
                        raise error("stream_events", response.status_code, response.headers,
                                    response.read())  # fmt: skip
                    attempt, failing_since = 0, 0.0
                    for line in response.iter_lines():
                        message = reader.feed(line)
                        if message is not None:
                            yield decode_event(message)
                failure = ConnectionFailed("stream_events", "the server ended the stream")
            except httpx2.TransportError as e:
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
            time.sleep(self.retry.delay(attempt, failure))
            attempt += 1
