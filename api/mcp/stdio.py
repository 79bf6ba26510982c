"""MCP over stdio: ``python -m api.mcp --db PATH`` (or ``ctxlog mcp``) for clients that launch
their servers as subprocesses (desktop assistants, IDE agents).

One JSON-RPC message per line on stdin and stdout; stdout carries nothing else (the process's
file descriptor 1 is pointed at stderr, where logs go, so a stray print cannot corrupt the
stream). Both protocol eras: a request with the 2026-07-28 ``_meta`` envelope is served
statelessly; ``initialize`` starts a handshake-era connection. Requests run concurrently and
``notifications/cancelled`` cancels one (it also ends a ``subscriptions/listen`` stream).

The caller is chosen like the REST API's: with API keys configured (``CTXLOG_API_KEYS``,
``CTXLOG_API_KEYS_FILE``), ``CTXLOG_API_KEY`` must name one of them, and the process acts as
that key's tenant and actor; with none, it serves without tenants. The read model is kept in
memory by default, built from the log at start, so the process can run beside ``ctxlog
serve`` (or other stdio servers) on the same database without sharing a read model file.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import signal
import sys
import uuid
from collections.abc import Awaitable, Callable, Mapping
from importlib import metadata
from typing import Any

from eventstore import EventStore
from eventstore.files import exposure
from projections.service import Caller, Contexts

from ..auth import KeyRing
from ..config import load_settings, masked
from ..logs import setup_logging
from ..settings import (
    DEFAULT_RESPONSE_BUDGET_BYTES,
    Settings,
    SettingsError,
    refuse_open_with_tenants,
)
from ..tracing import Tracing
from ..tracing import setup as setup_tracing
from . import pipes
from .protocol import (
    INTERNAL_ERROR,
    INVALID_REQUEST,
    SUBSCRIPTION_ID_KEY,
    Notification,
    Request,
    RpcError,
    Unavailable,
    classify,
    decode,
    encode,
    envelope_version,
    error_message,
    has_envelope,
    modern_version,
    notification,
    request_id,
    result_message,
)
from .server import Call, Server
from .updates import Follower

log = logging.getLogger("ctxlog.mcp")

DRAIN_SECONDS = 1.5
"""How long requests in flight when stdin ends may take to be answered."""
_TOO_LONG = b""
"""What ``_read_line`` returns for a line over the limit (it has been skipped)."""


class Connection:
    """One stdio peer: its handshake (if any), subscriptions and requests in flight."""

    def __init__(
        self,
        server: Server,
        caller: Caller,
        reader: asyncio.StreamReader,
        write: Callable[[bytes], Awaitable[None]],
        max_bytes: int,
    ) -> None:
        self.server = server
        self.caller = caller
        self.reader = reader
        self.write = write
        self.max_bytes = max_bytes
        self.version: str | None = None
        """The handshake-era version ``initialize`` settled on."""
        self.follower: Follower | None = None
        self.tasks: dict[Any, asyncio.Task[None]] = {}
        self.listens: set[Any] = set()
        """Ids of the requests in ``tasks`` that are subscriptions/listen streams."""
        self._lock = asyncio.Lock()

    async def send(self, message: dict[str, Any]) -> None:
        """Write one message as one line."""
        async with self._lock:
            # A client that has gone away reads nothing more; stdin's end stops the rest.
            with contextlib.suppress(ConnectionError):
                await self.write(encode(message) + b"\n")

    async def serve(self) -> None:
        """Read and answer messages until stdin ends; then cancel what is still running."""
        try:
            while (line := await self._read_line()) is not None:
                if line is _TOO_LONG:
                    error = RpcError(INVALID_REQUEST, f"a message is over {self.max_bytes} bytes")
                    await self.send(error_message(None, error))
                elif line.strip():
                    await self._receive(line)
        finally:
            # Stdin ended: answer what is in flight (briefly: a client that closed stdin waits
            # about two seconds before it terminates us), and end the subscriptions.
            for key in list(self.listens):
                if (listening := self.tasks.get(key)) is not None:
                    listening.cancel()
            pending = list(self.tasks.values())
            if pending:
                await asyncio.wait(pending, timeout=DRAIN_SECONDS)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            if self.follower is not None:
                await self.follower.close()

    async def _read_line(self) -> bytes | None:
        try:
            return await self.reader.readuntil(b"\n")
        except asyncio.IncompleteReadError as e:
            return e.partial or None  # a last line without its newline, or the end
        except asyncio.LimitOverrunError as e:
            await self.reader.readexactly(e.consumed)
            while True:  # skip the rest of the line
                try:
                    await self.reader.readuntil(b"\n")
                except asyncio.LimitOverrunError as more:
                    await self.reader.readexactly(more.consumed)
                except asyncio.IncompleteReadError:
                    return None
                else:
                    return _TOO_LONG

    async def _receive(self, line: bytes) -> None:
        try:
            value = decode(line)
        except RpcError as e:
            await self.send(error_message(None, e))
            return
        try:
            message = classify(value)  # one message per line: a batch is refused too
        except RpcError as e:
            await self.send(error_message(request_id(value), e))
            return
        match message:
            case Request(method="initialize") if not has_envelope(message.params):
                # Answered before the next line is read: what follows is in its version.
                self.version, result = self.server.initialize(message.params)
                await self.send(result_message(message.id, result))
            case Request():
                if message.id in self.tasks:
                    error = RpcError(INVALID_REQUEST, "a request with this id is in flight")
                    await self.send(error_message(message.id, error))
                    return
                task = asyncio.create_task(self._request(message))
                self.tasks[message.id] = task
                task.add_done_callback(functools.partial(self._finished, message.id))
            case Notification(method="notifications/cancelled"):
                cancelled = message.params.get("requestId")
                found = self.tasks.get(cancelled) if isinstance(cancelled, int | str) else None
                if found is not None:
                    found.cancel()  # no answer follows: the client has given up on it
            case _:
                pass  # notifications/initialized, other notifications, responses

    def _finished(self, key: Any, task: asyncio.Task[None]) -> None:
        if self.tasks.get(key) is task:
            del self.tasks[key]

    async def _request(self, message: Request) -> None:
        try:
            result = await self._answer(message)
        except asyncio.CancelledError:
            return
        except RpcError as e:
            await self.send(error_message(message.id, e))
        except Exception:
            log.exception("MCP request %s failed", message.method)
            error = RpcError(INTERNAL_ERROR, "internal error")
            await self.send(error_message(message.id, error))
        else:
            if result is not None:
                await self.send(result_message(message.id, result))

    async def _answer(self, message: Request) -> dict[str, Any] | None:
        params = message.params
        caller = Caller(self.caller.tenant, self.caller.actor, uuid.uuid4().hex)
        if has_envelope(params) or message.method == "server/discover":
            call = Call(caller, modern_version(envelope_version(params)))
            if message.method == "subscriptions/listen":
                await self._listen(message, call)
                return None
            return await self.server.handle(call, message.method, params)
        if self.version is None:
            raise RpcError(
                INVALID_REQUEST, "send initialize first, or the 2026-07-28 _meta envelope"
            )
        call = Call(caller, self.version)
        if message.method in ("resources/subscribe", "resources/unsubscribe"):
            if self.follower is None:
                contexts = await self.server.contexts()
                self.follower = Follower(contexts, self.caller, self.send)
            call.follower = self.follower
        return await self.server.handle(call, message.method, params)

    async def _listen(self, message: Request, call: Call) -> None:
        """Acknowledge, then deliver changes until the client cancels the request."""
        meta = {SUBSCRIPTION_ID_KEY: message.id}
        follower = Follower(await self.server.contexts(), call.caller, self.send, meta)
        honored = await self.server.listen(call, message.params, follower)
        self.listens.add(message.id)
        try:
            await follower.start()
            ack = {"_meta": dict(meta), "notifications": honored}
            await self.send(notification("notifications/subscriptions/acknowledged", ack))
            await asyncio.Event().wait()  # until cancelled
        finally:
            self.listens.discard(message.id)
            await follower.close()


def caller_from(settings: Settings, key: str | None) -> Caller:
    """The caller the API key stands for (no tenant on an open server); SettingsError when keys
    are configured and ``key`` is none of them."""
    keys = KeyRing(settings.api_keys)
    if keys.open:
        return Caller(None, None)
    if not key:
        raise SettingsError("API keys are configured: set CTXLOG_API_KEY to one of them")
    found = keys.lookup(key)
    if found is None:
        raise SettingsError("CTXLOG_API_KEY is not one of the configured API keys")
    return Caller(found[0], found[1])


def _version() -> str:
    try:
        return metadata.version("ctxlog")
    except metadata.PackageNotFoundError:
        return "0.0.0"


async def serve_stdio(
    db: str,
    caller: Caller,
    *,
    readmodel: str = ":memory:",
    max_bytes: int = 1 << 20,
    budget: int = DEFAULT_RESPONSE_BUDGET_BYTES,
    allow_open_with_tenants: bool = False,
    tracing: Tracing | None = None,
) -> None:
    """Serve MCP on this process's stdin and stdout until stdin ends or SIGTERM/SIGINT;
    with ``tracing``, each request is a span continuing its ``_meta.traceparent``.
    SettingsError, before anything is read, when it would serve tenants' data openly."""
    loop = asyncio.get_running_loop()
    store = await EventStore.open_url(db)
    try:
        if caller.tenant is None:  # no API keys: it would serve every tenant's contexts
            refuse_open_with_tenants(await store.has_tenants(), allowed=allow_open_with_tenants)
        reader = await pipes.open_stdin(max_bytes + 1)
        output = pipes.Output()
        await output.open()
    except BaseException:
        await store.close()
        raise
    if tracing is None:
        contexts = Contexts(store, readmodel_path=readmodel)
    else:
        store.observe(tracing)
        contexts = tracing.contexts(store, readmodel_path=readmodel)
    # Catching up can take a while on a long log: the handshake is answered meanwhile.
    startup = asyncio.create_task(contexts.start(patient=True), name="ctxlog-mcp-catch-up")

    async def ready() -> Contexts:
        try:
            await asyncio.shield(startup)
        except Exception as e:
            raise Unavailable("the server could not catch up with the log") from e
        return contexts

    traced = tracing.mcp_request if tracing is not None else None
    server = Server(_version(), ready, traced=traced, budget=budget)
    connection = Connection(server, caller, reader, output.write, max_bytes)
    serving = asyncio.create_task(connection.serve())
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, serving.cancel)
    try:
        with contextlib.suppress(asyncio.CancelledError):
            await serving
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        startup.cancel()
        with contextlib.suppress(BaseException):
            await startup
        await contexts.close()
        await store.close()
        output.close()
        if tracing is not None:
            tracing.close()


def run_stdio(
    db: str | None = None,
    *,
    api_key: str | None = None,
    readmodel: str = ":memory:",
    allow_open_with_tenants: bool | None = None,
    env: Mapping[str, str] | None = None,
) -> int:
    """Run the stdio server on ``db`` (a SQLite file or a postgresql:// DSN; default
    ``CTXLOG_DB``, else ``./ctxlog.db``) until stdin closes; returns the exit status (2 for
    settings it cannot serve with, among them no API keys on a database that holds tenants'
    data unless ``allow_open_with_tenants``). ``api_key`` defaults to ``CTXLOG_API_KEY``; the
    keys and the message size limit come from ``CTXLOG_*`` as for ``ctxlog serve``."""
    env = os.environ if env is None else env
    setup_logging()  # stderr: stdout carries the protocol only
    try:
        settings = load_settings(db=db, allow_open_with_tenants=allow_open_with_tenants, env=env)
        caller = caller_from(settings, api_key or env.get("CTXLOG_API_KEY"))
        tracing = setup_tracing(settings.tracing)
        setup_logging(settings.log_format, settings.log_level)
        if (warning := exposure(settings.db)) is not None:
            log.warning(warning)
        log.info("ctxlog MCP server on stdio, database %s", masked("db", settings.db))
        asyncio.run(
            serve_stdio(
                settings.db,
                caller,
                readmodel=readmodel,
                max_bytes=settings.max_body_bytes,
                budget=settings.response_budget_bytes,
                allow_open_with_tenants=settings.allow_open_with_tenants,
                tracing=tracing,
            )
        )
    except SettingsError as e:
        print(f"ctxlog mcp: {e}", file=sys.stderr)
        return 2
    return 0
