"""``python -m api.mcp``, raw: stdout carries protocol messages and nothing else, bad lines are
answered with errors, the caller is chosen by API key, and cancellation ends a subscription."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from api import testing

KEYS_ENV = ",".join(f"{k.key}:{k.tenant}:{k.actor}" for k in testing.KEYS)
ENVELOPE = {
    "io.modelcontextprotocol/protocolVersion": "2026-07-28",
    "io.modelcontextprotocol/clientCapabilities": {},
}


def line(method: str, params: dict[str, Any] | None = None, id_: Any = 1) -> bytes:
    message: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "params": params or {}}
    if id_ is not None:
        message["id"] = id_
    return json.dumps(message).encode() + b"\n"


def env(**extra: str) -> dict[str, str]:
    return {"CTXLOG_API_KEYS": KEYS_ENV, "CTXLOG_MAX_BODY_BYTES": "2048", **extra}


def run(tmp_path: Path, stdin: bytes, **extra: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "api.mcp", "--db", "ctx.db", "--create"],
        input=stdin,
        capture_output=True,
        cwd=tmp_path,
        env={"PATH": os.environ.get("PATH", ""), **env(**extra)},
        timeout=60,
        check=False,
    )


def test_stdout_is_protocol_only_and_bad_lines_get_errors(tmp_path: Path) -> None:
    init = {
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "t", "version": "1"},
    }
    stdin = b"".join(
        [
            line("initialize", init, 1),
            line("notifications/initialized", id_=None),
            b"\n",
            b"not json\n",
            b'{"jsonrpc": "2.0", "id": 9, "method": 5}\n',
            b'{"jsonrpc": "2.0", "id": 10, "method": "x", "params": {"pad": "'
            + b"x" * 4000
            + b'"}}\n',
            line("tools/list", id_=2),
            line("tools/call", {"name": "create_context", "arguments": {"metadata": {"a": 1}}}, 3),
            line("server/discover", {"_meta": ENVELOPE}, 4),
            line("ping", id_=5),
        ]
    )
    done = run(tmp_path, stdin, CTXLOG_API_KEY="key-alice")
    assert done.returncode == 0, done.stderr.decode()
    replies = [json.loads(x) for x in done.stdout.splitlines()]
    assert all(r["jsonrpc"] == "2.0" for r in replies)
    by_id = {r["id"]: r for r in replies if r["id"] is not None}
    assert by_id[1]["result"]["protocolVersion"] == "2025-06-18"
    assert len(by_id[2]["result"]["tools"]) == 13
    assert by_id[3]["result"]["structuredContent"]["metadata"] == {"a": 1}
    assert by_id[4]["result"]["resultType"] == "complete"
    assert by_id[5]["result"] == {}
    assert by_id[9]["error"]["code"] == -32600
    errors = [r["error"] for r in replies if r["id"] is None]
    assert [e["code"] for e in errors] == [-32700, -32600]  # not JSON; over the size limit
    assert b"Traceback" not in done.stderr


def test_requests_need_initialize_or_the_envelope(tmp_path: Path) -> None:
    done = run(
        tmp_path,
        line("tools/list") + line("tools/list", {"_meta": {"x": 1}}, 2),
        CTXLOG_API_KEY="key-alice",
    )
    replies = {r["id"]: r for r in map(json.loads, done.stdout.splitlines())}
    assert replies[1]["error"]["code"] == -32600
    assert replies[2]["error"]["code"] == -32600


@pytest.mark.parametrize(("key", "message"), [(None, "set CTXLOG_API_KEY"), ("nope", "not one of")])
def test_the_caller_must_be_a_configured_key(tmp_path: Path, key: str | None, message: str) -> None:
    extra = {} if key is None else {"CTXLOG_API_KEY": key}
    done = run(tmp_path, b"", **extra)
    assert done.returncode == 2
    assert message in done.stderr.decode()
    assert done.stdout == b""


def test_an_open_database_serves_without_tenants(tmp_path: Path) -> None:
    call = line("tools/call", {"name": "list_contexts", "arguments": {}, "_meta": ENVELOPE})
    done = run(tmp_path, call, CTXLOG_API_KEYS="")
    (reply,) = map(json.loads, done.stdout.splitlines())
    assert reply["result"]["structuredContent"] == {"contexts": [], "next_cursor": None}


async def test_listen_until_cancelled_and_other_requests_meanwhile(tmp_path: Path) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "api.mcp", "--db", "ctx.db", "--create",
        cwd=tmp_path, env={"PATH": os.environ.get("PATH", ""), **env(CTXLOG_API_KEY="key-alice")},
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    assert proc.stdin is not None
    assert proc.stdout is not None

    async def send(data: bytes) -> None:
        assert proc.stdin is not None
        proc.stdin.write(data)
        await proc.stdin.drain()

    async def receive() -> Any:
        assert proc.stdout is not None
        async with asyncio.timeout(20):
            return json.loads(await proc.stdout.readline())

    try:
        create = {"name": "create_context", "arguments": {}, "_meta": ENVELOPE}
        await send(line("tools/call", create, "c"))
        cid = (await receive())["result"]["structuredContent"]["id"]
        uri = f"ctxlog://contexts/{cid}"
        listen = {"notifications": {"resourceSubscriptions": [uri]}, "_meta": ENVELOPE}
        await send(line("subscriptions/listen", listen, "l"))
        ack = await receive()
        assert ack["method"] == "notifications/subscriptions/acknowledged"
        assert ack["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"] == "l"
        append = {
            "name": "append_messages",
            "arguments": {"context_id": cid, "messages": [{"role": "user", "content": "hi"}]},
            "_meta": ENVELOPE,
        }
        await send(line("tools/call", append, "a"))
        got = [await receive(), await receive()]
        update = next(m for m in got if m.get("method") == "notifications/resources/updated")
        assert update["params"]["uri"] == uri
        assert any(m.get("id") == "a" for m in got)
        await send(line("notifications/cancelled", {"requestId": "l"}, None))
        await send(line("tools/call", append, "b"))
        reply = await receive()  # the listen is over: no update, no answer to it
        assert reply["id"] == "b"
    finally:
        proc.stdin.close()
        async with asyncio.timeout(20):
            assert await proc.wait() == 0


def test_stdin_from_a_file(tmp_path: Path) -> None:
    requests = tmp_path / "requests.jsonl"
    requests.write_bytes(line("server/discover", {"_meta": ENVELOPE}))
    with requests.open("rb") as stdin, (tmp_path / "answers.jsonl").open("wb") as stdout:
        done = subprocess.run(
            [sys.executable, "-m", "api.mcp", "--db", "ctx.db", "--create"],
            stdin=stdin,
            stdout=stdout,
            stderr=subprocess.PIPE,
            cwd=tmp_path,
            env={"PATH": os.environ.get("PATH", ""), **env(CTXLOG_API_KEY="key-bob")},
            timeout=60,
            check=False,
        )
    assert done.returncode == 0, done.stderr.decode()
    (reply,) = map(json.loads, (tmp_path / "answers.jsonl").read_bytes().splitlines())
    assert "2026-07-28" in reply["result"]["supportedVersions"]
