"""The README's "Use it with OpenAI" and "Use it with Anthropic" run as written (the chat loop:
append, record the window, call the model, append the reply with the window's ETag): against a
real ``ctxlog serve`` (open, on loopback) and the official SDKs, whose model calls go to a
stand-in provider on loopback that records what it was sent and answers as the API would."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from tests.support.sdk import validate
from tests.support.server_process import ServerProcess, serving

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


def snippet(title: str) -> str:
    """The Python block under the README heading ``title``."""
    section = README.split(f"## {title}\n", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match is not None
    return match.group(1)


CHAT_REPLY = {
    "id": "chatcmpl-1", "object": "chat.completion", "created": 0, "model": "gpt-4o",
    "choices": [{"index": 0, "finish_reason": "stop", "logprobs": None, "message": {
        "role": "assistant", "content": "An append-only record of facts.", "refusal": None,
        "annotations": []}}],
}  # fmt: skip
CLAUDE_REPLY = {
    "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-sonnet-5",
    "stop_reason": "end_turn", "stop_sequence": None,
    "usage": {"input_tokens": 10, "output_tokens": 8},
    "content": [{"type": "text", "text": "An append-only record of facts."}],
}  # fmt: skip


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with serving(tmp_path_factory.mktemp("readme") / "readme.db", keys="") as proc:
        yield proc


async def provider(sent: list[dict[str, Any]]) -> TestServer:
    """A stand-in for both providers' APIs on loopback, keeping each request body."""

    async def chat(request: web.Request) -> web.Response:
        sent.append(await request.json())
        return web.json_response(CHAT_REPLY)

    async def messages(request: web.Request) -> web.Response:
        sent.append(await request.json())
        return web.json_response(CLAUDE_REPLY)

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_post("/v1/messages", messages)
    fake = TestServer(app, host="127.0.0.1")
    await fake.start_server()
    return fake


@pytest.mark.parametrize(("title", "fmt"), [("Use it with OpenAI", "openai"),
                                            ("Use it with Anthropic", "anthropic")])  # fmt: skip
async def test_the_readme_examples_run_as_written(
    server: ServerProcess, monkeypatch: pytest.MonkeyPatch, title: str, fmt: str
) -> None:
    sent: list[dict[str, Any]] = []
    fake = await provider(sent)
    try:
        base = str(fake.make_url("")).rstrip("/")
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
        monkeypatch.setenv("OPENAI_BASE_URL", f"{base}/v1")
        monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test")
        monkeypatch.setenv("ANTHROPIC_BASE_URL", base)
        code = snippet(title).replace("http://127.0.0.1:8080", server.url)
        scope: dict[str, Any] = {}
        await asyncio.to_thread(exec, compile(code, title, "exec"), scope)
    finally:
        await fake.close()
    (request,) = sent
    window = scope["window"] if fmt == "openai" else scope["w"]
    assert request["messages"] == window["messages"]  # the window went to the model as is
    validate(fmt, request["messages"], request.get("system"))
    ctx = scope["ctx"]
    http = scope["api"]
    after = http.get(f"/contexts/{ctx}/window?format={fmt}").json()
    events = http.get(f"/contexts/{ctx}/events").json()["events"]
    # The loop: the window was recorded, and the reply appended after it with its ETag.
    assert [e["type"] for e in events][-2:] == ["window.served", "message.appended"]
    http.close()
    assert after["messages"][-1]["role"] == "assistant"
    answer = after["messages"][-1]["content"]
    text = answer if isinstance(answer, str) else answer[0]["text"]
    assert text == "An append-only record of facts."
