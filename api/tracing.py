"""OpenTelemetry traces: optional (``pip install 'ctxlog[otel]'``) and off unless ``tracing`` is
``otlp`` or ``console``.

When on: a server span per HTTP request (the aiohttp server instrumentation, continuing a
caller's ``traceparent`` header), spans around the service's ``append`` and ``window``
whichever door called them (``TracedContexts``), a span per group commit (from the store's
observer, timed by the writer), and a span per MCP request that continues the trace its
``params._meta.traceparent`` names (MCP carries W3C trace context there, not in headers).
The OTLP exporter reads the standard ``OTEL_EXPORTER_OTLP_*`` variables and
``OTEL_SERVICE_NAME`` (default ``ctxlog``). Nothing of this is imported when tracing is off.
"""

from __future__ import annotations

import contextlib
import os
import sys
import warnings
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from aiohttp import web
from aiohttp.typedefs import Middleware

from eventstore import EventStore, StoreObserver
from projections.calls import Written
from projections.service import Contexts
from projections.window import Window

from .settings import SettingsError

if TYPE_CHECKING:
    from opentelemetry.trace import Tracer, TracerProvider

SCOPE = "ctxlog"
"""The instrumentation scope of ctxlog's own spans."""


class Tracing(StoreObserver):
    """A tracer from ``provider``, the spans ctxlog makes with it, and the store's commits."""

    def __init__(self, provider: TracerProvider) -> None:
        self.provider = provider
        self.tracer: Tracer = provider.get_tracer(SCOPE)

    def middleware(self) -> Middleware:
        """The aiohttp server instrumentation's middleware, on this provider."""
        from opentelemetry.instrumentation import aiohttp_server  # noqa: PLC0415

        _initialise(aiohttp_server, self.provider)
        middleware: Middleware = aiohttp_server.create_aiohttp_middleware(
            tracer_provider=self.provider
        )
        return middleware

    def committed(
        self,
        appends: int,
        events: int,
        nbytes: int,
        started_ns: int,
        seconds: float,
        sync_seconds: float | None,
    ) -> None:
        """A span for a group commit, after the fact (the writer timed it)."""
        attributes: dict[str, Any] = {"ctxlog.appends": appends, "ctxlog.events": events}
        if sync_seconds is not None:
            attributes["ctxlog.sync_seconds"] = sync_seconds
        span = self.tracer.start_span("ctxlog.commit", start_time=started_ns, attributes=attributes)
        span.end(end_time=started_ns + int(seconds * 1e9))

    @contextlib.contextmanager
    def mcp_request(self, method: str, params: dict[str, Any]) -> Iterator[None]:
        """A span for one MCP request, a child of ``params._meta.traceparent`` if given."""
        from opentelemetry.trace import SpanKind  # noqa: PLC0415
        from opentelemetry.trace.propagation.tracecontext import (  # noqa: PLC0415
            TraceContextTextMapPropagator,
        )

        meta = params.get("_meta")
        carrier = {}
        if isinstance(meta, dict):
            carrier = {
                k: v for k in ("traceparent", "tracestate") if isinstance(v := meta.get(k), str)
            }
        parent = TraceContextTextMapPropagator().extract(carrier) if carrier else None
        with self.tracer.start_as_current_span(
            f"mcp {method}", context=parent, kind=SpanKind.SERVER, attributes={"mcp.method": method}
        ):
            yield

    def contexts(self, store: EventStore, **kwargs: Any) -> Contexts:
        """The contexts service on ``store`` (``kwargs`` as for ``Contexts``), with spans
        around append and window."""
        service = TracedContexts(store, **kwargs)
        service.tracer = self.tracer
        return service

    def close(self) -> None:
        """Export what is still buffered, then stop (at shutdown)."""
        shutdown = getattr(self.provider, "shutdown", None)
        if shutdown is not None:
            shutdown()


TRACING = web.AppKey("tracing", Tracing)


class TracedContexts(Contexts):
    """The contexts service with a span around each append and window read."""

    tracer: Tracer

    async def append(self, *args: Any, **kwargs: Any) -> Written:
        """``Contexts.append`` in a ``ctxlog.append`` span."""
        with self.tracer.start_as_current_span("ctxlog.append") as span:
            written = await super().append(*args, **kwargs)
            span.set_attribute("ctxlog.version", written.version)
            return written

    async def window(self, *args: Any, **kwargs: Any) -> Window:
        """``Contexts.window`` in a ``ctxlog.window`` span."""
        with self.tracer.start_as_current_span("ctxlog.window") as span:
            window = await super().window(*args, **kwargs)
            span.set_attribute("ctxlog.tokens", window.total_tokens)
            return window


def setup(mode: str) -> Tracing | None:
    """The tracing ``mode`` asks for (None for ``off``); SettingsError when the ``otel``
    extra is not installed."""
    if mode == "off":
        return None
    try:
        from opentelemetry.sdk.resources import Resource  # noqa: PLC0415
        from opentelemetry.sdk.trace import TracerProvider  # noqa: PLC0415
        from opentelemetry.sdk.trace.export import (  # noqa: PLC0415
            BatchSpanProcessor,
            ConsoleSpanExporter,
            SpanExporter,
        )
    except ImportError:
        raise SettingsError(
            f"tracing = {mode} needs OpenTelemetry: pip install 'ctxlog[otel]'"
        ) from None
    exporter: SpanExporter
    if mode == "otlp":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import (  # noqa: PLC0415
            OTLPSpanExporter,
        )

        exporter = OTLPSpanExporter()
    else:
        exporter = ConsoleSpanExporter(out=sys.stderr)  # stdout may carry a protocol (stdio)
    name = os.environ.get("OTEL_SERVICE_NAME", "ctxlog")
    provider = TracerProvider(resource=Resource.create({"service.name": name}))
    provider.add_span_processor(BatchSpanProcessor(exporter))
    return Tracing(provider)


def _initialise(module: Any, provider: TracerProvider) -> None:
    """Set up the instrumentation's module state without patching ``web.Application``.

    Its middleware reads module globals (excluded URLs, its request metrics) that only
    ``instrument()`` sets, and ``instrument()`` also replaces ``aiohttp.web.Application``
    for the whole process; undoing that replacement at once keeps the state and leaves
    other applications (the tests', a second server) as they were.
    """
    if getattr(module, "_excluded_urls", None) is not None:
        return
    instrumentor = module.AioHttpServerInstrumentor()
    original = web.Application
    with warnings.catch_warnings():
        # Its replacement subclasses web.Application, which aiohttp discourages (a warning).
        warnings.simplefilter("ignore", DeprecationWarning)
        instrumentor.instrument(tracer_provider=provider)
        instrumentor.uninstrument()
    web.Application = original  # type: ignore[misc]
