"""OpenTelemetry traces (the ``otel`` extra), recorded by an in-memory exporter: a server span
per request continuing the caller's ``traceparent``, ``ctxlog.append`` and ``ctxlog.window``
inside it, a ``ctxlog.commit`` per group commit, and an MCP request continuing the trace its
``_meta.traceparent`` names. Off unless configured, and a clear error without the extra."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from api import SettingsError, create_app, testing
from tests.support.mcp_helpers import modern, post

otel = pytest.importorskip("opentelemetry.sdk.trace", reason="the otel extra is not installed")
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (  # noqa: E402
    InMemorySpanExporter,
)

from api.tracing import TRACING, Tracing  # noqa: E402

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_ID}-01"
KEY = {"X-API-Key": "key-alice"}


@pytest.fixture
async def traced(aiohttp_client: Any, tmp_path: Path) -> tuple[Any, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    app = create_app(testing.settings(str(tmp_path / "t.db")), tracing=Tracing(provider))
    client = await aiohttp_client(app)
    async with asyncio.timeout(10):
        while (await client.get("/healthz")).status != 200:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
    return client, exporter


def named(spans: tuple[ReadableSpan, ...], name: str) -> list[ReadableSpan]:
    return [s for s in spans if s.name == name]


async def test_requests_appends_commits_and_windows_are_spans(
    traced: tuple[Any, InMemorySpanExporter],
) -> None:
    client, exporter = traced
    r = await client.post("/api/v1/contexts", json={}, headers=KEY)
    cid = (await r.json())["id"]
    exporter.clear()
    body = {"role": "user", "content": "hi"}
    headers = {**KEY, "traceparent": TRACEPARENT}
    r = await client.post(f"/api/v1/contexts/{cid}/messages", json=body, headers=headers)
    assert r.status == 201
    r = await client.get(f"/api/v1/contexts/{cid}/window", headers=KEY)
    assert r.status == 200
    spans = exporter.get_finished_spans()
    (append,) = named(spans, "ctxlog.append")
    (server,) = [s for s in spans if s.context.span_id == append.parent.span_id]  # type: ignore[union-attr]
    # The request's server span continues the caller's trace; the append is inside it.
    assert format(server.context.trace_id, "032x") == TRACE_ID
    assert format(server.parent.span_id, "016x") == PARENT_ID  # type: ignore[union-attr]
    assert append.context.trace_id == server.context.trace_id
    assert append.attributes is not None
    assert append.attributes["ctxlog.version"] == 2
    commits = named(spans, "ctxlog.commit")
    assert commits
    assert commits[0].attributes is not None
    assert int(str(commits[0].attributes["ctxlog.appends"])) >= 1
    assert commits[0].end_time is not None
    assert commits[0].start_time is not None
    assert commits[0].end_time >= commits[0].start_time
    (window,) = named(spans, "ctxlog.window")
    assert window.attributes is not None
    assert int(str(window.attributes["ctxlog.tokens"])) > 0


async def test_mcp_continues_the_trace_of_meta_traceparent(
    traced: tuple[Any, InMemorySpanExporter],
) -> None:
    client, exporter = traced
    body, headers = modern("tools/call", {"name": "list_contexts", "arguments": {}})
    body["params"]["_meta"]["traceparent"] = TRACEPARENT
    status, _, answer = await post(client, body, {**headers, "Mcp-Name": "list_contexts"})
    assert status == 200, answer
    (span,) = named(exporter.get_finished_spans(), "mcp tools/call")
    assert format(span.context.trace_id, "032x") == TRACE_ID
    assert format(span.parent.span_id, "016x") == PARENT_ID  # type: ignore[union-attr]


async def test_tracing_is_off_unless_configured(aiohttp_client: Any, tmp_path: Path) -> None:
    app = create_app(testing.settings(str(tmp_path / "off.db")))
    assert TRACING not in app
    assert not any("opentelemetry" in repr(m) for m in app.middlewares)


def test_tracing_without_the_extra_says_how_to_install_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import builtins

    real_import = builtins.__import__

    def no_otel(name: str, *args: Any, **kwargs: Any) -> Any:
        if name.startswith("opentelemetry"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_otel)
    with pytest.raises(SettingsError, match=r"ctxlog\[otel\]"):
        create_app(testing.settings(str(tmp_path / "x.db"), tracing="console"))


def test_stdio_mcp_continues_the_trace_and_keeps_stdout_for_the_protocol(tmp_path: Path) -> None:
    import json
    import os
    import subprocess
    import sys

    from tests.support.server_process import KEYS_ENV

    init = {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t"}}
    messages = [
        {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": init},
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {"jsonrpc": "2.0", "id": 2, "method": "tools/list",
         "params": {"_meta": {"traceparent": TRACEPARENT}}},
    ]  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-m", "api.mcp", "--db", "ctx.db", "--create"],
        input=b"".join(json.dumps(m).encode() + b"\n" for m in messages),
        capture_output=True,
        cwd=tmp_path,
        env={
            "PATH": os.environ.get("PATH", ""),
            "CTXLOG_API_KEYS": KEYS_ENV,
            "CTXLOG_API_KEY": "key-alice",
            "CTXLOG_TRACING": "console",
        },
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    answers = [json.loads(line) for line in done.stdout.splitlines()]  # protocol only
    assert [a["id"] for a in answers] == [1, 2]
    stderr = done.stderr.decode()
    assert '"name": "mcp tools/list"' in stderr
    assert f'"trace_id": "0x{TRACE_ID}"' in stderr
    assert f'"parent_id": "0x{PARENT_ID}"' in stderr
