"""Erasure across processes on one database: an erase through any process (a ``ctxlog serve``,
the ``ctxlog erase`` command) makes every other process (a stdio MCP server with its own read
model in memory, a second ``ctxlog serve`` sharing the read model file) stop serving the
content, within a bounded poll, through every tool, resource, search and history."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import mcp_types as types
from mcp import Client
from mcp.client.stdio import StdioServerParameters
from mcp.client.stdio import stdio_client as sdk_stdio_client

from api.cli.support import Exit
from eventstore import ERASED
from tests.support.cli_helpers import child_env, command
from tests.support.server_process import KEYS_ENV, ServerProcess

V1 = "/api/v1"
ALICE = {"X-API-Key": "key-alice"}
SECRET = "kestrelsecret"
"""One word, so that full-text search can look for it."""
PLAIN = "nobodysword"
POLL_SECONDS = 30


class Rest:
    """A session on a real server, as key-alice."""

    def __init__(self, session: aiohttp.ClientSession, server: ServerProcess) -> None:
        self.session = session
        self.server = server

    async def call(self, method: str, path: str, body: Any = None, expect: int = 200) -> Any:
        url = f"{self.server.url}{V1}{path}"
        async with self.session.request(method, url, json=body, headers=ALICE) as r:
            text = await r.text()
            assert r.status == expect, (r.status, text)
            return json.loads(text) if text else None


async def _story(rest: Rest, subject: str) -> dict[str, str]:
    """Content of ``subject`` every way there is: a context of the subject (messages, an
    edit, a summary, a served window) and its fork, and a message naming the subject in a
    context without one, beside a message of nobody."""
    ctx = (await rest.call("POST", "/contexts", {"metadata": {"subject": subject}}, 201))["id"]
    sent: dict[str, Any] = {"messages": [
        {"role": "system", "content": f"You keep {SECRET} safe."},
        {"role": "user", "content": f"hello {SECRET}"},
    ]}  # fmt: skip
    ids = [
        m["id"]
        for m in (await rest.call("POST", f"/contexts/{ctx}/messages", sent, 201))["messages"]
    ]
    await rest.call("PATCH", f"/contexts/{ctx}/messages/{ids[1]}", {"content": f"{SECRET} too"})
    summary = {"text": f"a summary of {SECRET}", "through_message_id": ids[1]}
    await rest.call("POST", f"/contexts/{ctx}/summaries", summary, 201)
    await rest.call("POST", f"/contexts/{ctx}/window", {"max_tokens": 500})
    fork = (await rest.call("POST", f"/contexts/{ctx}/fork", {}, 201))["id"]
    other = (await rest.call("POST", "/contexts", {}, 201))["id"]
    sent = {"messages": [
        {"role": "user", "content": f"quote {SECRET}", "metadata": {"subject": subject}},
        {"role": "user", "content": PLAIN},
    ]}  # fmt: skip
    await rest.call("POST", f"/contexts/{other}/messages", sent, 201)
    return {"ctx": ctx, "fork": fork, "other": other}


PAST = {"ctx": 3, "fork": 1, "other": 2}
"""A past version of each context of the story that held the subject's content."""


@contextlib.asynccontextmanager
async def stdio(db: Path) -> AsyncIterator[Client]:
    """A stdio MCP server (``python -m api.mcp``) on ``db``, as key-alice, with the SDK."""
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "api.mcp", "--db", db.name],
        env={"CTXLOG_API_KEYS": KEYS_ENV, "CTXLOG_API_KEY": "key-alice"},
        cwd=db.parent,
    )
    log = db.parent / "stdio.log"
    with log.open("w") as errlog:
        async with Client(sdk_stdio_client(params, errlog=errlog), mode="auto") as client:
            yield client
    assert "Traceback" not in log.read_text()


def _files(folder: Path) -> bytes:
    """Every file of the database: the log, the key table, the read model, their WALs."""
    return b"".join(p.read_bytes() for p in folder.glob("ctx.db*") if p.is_file())


def _text(result: types.CallToolResult | types.ReadResourceResult | types.GetPromptResult) -> str:
    if isinstance(result, types.CallToolResult):
        assert not result.is_error, result.content
        return json.dumps(result.structured_content)
    if isinstance(result, types.ReadResourceResult):
        content = result.contents[0]
        assert isinstance(content, types.TextResourceContents)
        return content.text
    return json.dumps([m.content.model_dump() for m in result.messages])


async def _mcp_everything(client: Client, ids: dict[str, str]) -> str:
    """What the stdio server shows of the story through every tool, resource and prompt."""
    texts = []
    for what, cid in ids.items():
        base, past = f"ctxlog://contexts/{cid}", PAST[what]
        calls: list[tuple[str, dict[str, Any]]] = [
            ("get_context", {"context_id": cid}),
            ("get_context", {"context_id": cid, "version": past}),
            ("get_window", {"context_id": cid, "max_tokens": 500}),
            ("get_history", {"context_id": cid, "limit": 50}),
            ("diff", {"context_id": cid, "from_version": 1}),
        ]
        for name, args in calls:
            texts.append(_text(await client.call_tool(name, args)))
        for uri in (base, f"{base}@{past}", f"{base}/window", f"{base}/events?limit=50"):
            texts.append(_text(await client.read_resource(uri)))
        texts.append(_text(await client.get_prompt("continue_conversation", {"context_id": cid})))
    found = await client.call_tool("search_messages", {"query": SECRET})
    texts.append(_text(found))
    return "\n".join(texts)


async def _rest_everything(rest: Rest, ids: dict[str, str]) -> str:
    """What a server shows of the story over REST: contexts now and in the past, windows,
    events, diffs, and a search for the secret."""
    texts = []
    for what, cid in ids.items():
        for path in (
            f"/contexts/{cid}", f"/contexts/{cid}?version={PAST[what]}", f"/contexts/{cid}/window",
            f"/contexts/{cid}/events?limit=50", f"/contexts/{cid}/diff?from=1",
        ):  # fmt: skip
            texts.append(json.dumps(await rest.call("GET", path)))
    texts.append(json.dumps(await rest.call("GET", "/events?limit=200")))
    return "\n".join(texts)


async def _until_forgotten(
    read: Callable[[dict[str, str]], Awaitable[str]], ids: dict[str, str]
) -> str:
    """Poll ``read(ids)`` until it shows no secret (bounded); returns the last reading."""
    shown = ""
    try:
        async with asyncio.timeout(POLL_SECONDS):
            while SECRET in (shown := await read(ids)):  # noqa: ASYNC110
                await asyncio.sleep(0.2)
    except TimeoutError:
        left = [line[:300] for line in shown.splitlines() if SECRET in line]
        raise AssertionError(f"still shown after {POLL_SECONDS} s: {left}") from None
    return shown


async def test_an_erase_through_the_server_reaches_a_stdio_mcp_server(tmp_path: Path) -> None:
    db = tmp_path / "ctx.db"
    server = await ServerProcess(db).started()
    try:
        async with aiohttp.ClientSession() as session:
            rest = Rest(session, server)
            ids = await _story(rest, "user-7")
            async with stdio(db) as client:
                # Warm every cache the stdio server has: keys, windows, history, search.
                async with asyncio.timeout(POLL_SECONDS):
                    while SECRET not in (before := await _mcp_everything(client, ids)):  # noqa: ASYNC110
                        await asyncio.sleep(0.1)
                assert before.count(SECRET) > 20
                erased = await rest.call("POST", "/subjects/user-7/erase")
                assert sorted(erased["contexts"]) == sorted(ids.values())
                shown = await _until_forgotten(lambda i: _mcp_everything(client, i), ids)
                assert ERASED in shown
                assert PLAIN in shown
                hits = await client.call_tool("search_messages", {"query": SECRET})
                assert json.loads(_text(hits))["hits"] == []
            assert SECRET not in await _rest_everything(rest, ids)
    finally:
        assert server.stop() == 0
    assert "Traceback" not in server.output()


async def test_erase_on_the_command_line_reaches_a_running_server(tmp_path: Path) -> None:
    """``ctxlog erase`` beside a running server: the server stops serving the content (it
    shares the read model file, so the command cannot scrub the file: exit 6 says to stop
    the server and run it again, which then completes)."""
    db = tmp_path / "ctx.db"
    server = await ServerProcess(db).started()
    try:
        async with aiohttp.ClientSession() as session:
            rest = Rest(session, server)
            ids = await _story(rest, "user-8")
            assert SECRET in await _rest_everything(rest, ids)  # cached in the server
            erase = command("erase", "--subject", "user-8", "--tenant", "tenant-a", "--db", db)
            done = await asyncio.to_thread(
                subprocess.run, erase, capture_output=True, text=True, env=child_env(),
                timeout=120, check=False,
            )  # fmt: skip
            shown = await _until_forgotten(lambda i: _rest_everything(rest, i), ids)
            assert ERASED in shown
            assert PLAIN in shown
            assert done.returncode == Exit.REFUSED, done.stderr
            assert "no process serves its content" in done.stderr
    finally:
        assert server.stop() == 0
    assert "Traceback" not in server.output()
    again = await asyncio.to_thread(
        subprocess.run, [*erase, "--format", "json"], capture_output=True, text=True,
        env=child_env(), timeout=120, check=False,
    )  # fmt: skip
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["keys_destroyed"] == 0
    assert SECRET.encode() not in await asyncio.to_thread(_files, tmp_path)


async def test_an_erase_through_one_server_reaches_another_on_the_same_file(
    tmp_path: Path,
) -> None:
    """Two ``ctxlog serve`` on one SQLite file share its read model: an erase through one
    makes the other forget (it cannot scrub the shared file: 503, saying so)."""
    db = tmp_path / "ctx.db"
    first = await ServerProcess(db).started()
    second = await ServerProcess(db, log=tmp_path / "second.log").started()
    try:
        async with aiohttp.ClientSession() as session:
            one, two = Rest(session, first), Rest(session, second)
            ids = await _story(one, "user-9")
            async with asyncio.timeout(POLL_SECONDS):  # the second server polled it in
                while SECRET not in await _rest_everything(two, ids):  # noqa: ASYNC110
                    await asyncio.sleep(0.1)
            refused = await one.call("POST", "/subjects/user-9/erase", expect=503)
            for rest in (one, two):
                shown = await _until_forgotten(functools.partial(_rest_everything, rest), ids)
                assert ERASED in shown
                assert PLAIN in shown
            assert "no process serves its content" in refused["error"]["message"]
    finally:
        assert second.stop() == 0
        assert first.stop() == 0
    for server in (first, second):
        assert "Traceback" not in server.output()
