"""The client under failure, both clients, against a real ``ctxlog serve`` behind a proxy that
misbehaves on cue (``tests/support/faulty_proxy.py``): a lost answer or a reset connection is
retried with the same Idempotency-Key and the write is applied once; a write sent without a
key is not repeated; 503/429 are retried, and a budget exhausted raises the last error; a
proxy's page is a ProtocolError; a silent server a Timeout; the event stream resumes from its
last id after its connection is cut or the server is killed and restarted."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from api.client import (
    AsyncClient,
    Client,
    ConnectionFailed,
    ProtocolError,
    RateLimited,
    Retry,
    Timeout,
    Unavailable,
)
from api.client import schemas as s
from tests.support.faulty_proxy import FaultyProxy, canned
from tests.support.server_process import ServerProcess, key_secrets, serving

FAST = Retry(attempts=4, base=0.01, cap=0.05)
UNAVAILABLE = canned(
    503,
    json.dumps({"error": {"code": "unavailable", "message": "db down", "details": {}}}).encode(),
)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    db = tmp_path_factory.mktemp("client-failures") / "failures.db"
    with serving(db, secrets=key_secrets()) as proc:
        yield proc


@pytest.fixture
async def proxy(server: ServerProcess) -> AsyncIterator[FaultyProxy]:
    found = await FaultyProxy(server.port).start()
    yield found
    await found.close()


class Driver:
    """Either client behind one calling convention; the sync one runs on a thread, so that
    the proxy (on this event loop) keeps serving while it blocks."""

    def __init__(self, client: AsyncClient | Client) -> None:
        self.client = client

    async def __call__(self, name: str, *args: Any, **kwargs: Any) -> Any:
        method = getattr(self.client, name)
        if isinstance(self.client, AsyncClient):
            return await method(*args, **kwargs)
        return await asyncio.to_thread(method, *args, **kwargs)

    async def close(self) -> None:
        if isinstance(self.client, AsyncClient):
            await self.client.aclose()
        else:
            self.client.close()


@pytest.fixture(params=["async", "sync"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def client(kind: str, url: str, **kw: Any) -> Driver:
    kw.setdefault("retry", FAST)
    return Driver((AsyncClient if kind == "async" else Client)(url, api_key="key-alice", **kw))


async def messages_of(server: ServerProcess, context_id: str) -> list[Any]:
    direct = AsyncClient(server.url, api_key="key-alice")
    try:
        return (await direct.get_context(context_id)).messages
    finally:
        await direct.aclose()


async def fresh_context(server: ServerProcess) -> str:
    direct = AsyncClient(server.url, api_key="key-alice")
    try:
        return (await direct.create_context()).id
    finally:
        await direct.aclose()


@pytest.mark.parametrize("fault", ["lose", "reset"])
async def test_a_retried_append_is_applied_once(
    kind: str, fault: str, server: ServerProcess, proxy: FaultyProxy
) -> None:
    ctx = await fresh_context(server)
    proxy.faults.extend([fault, fault])
    api = client(kind, proxy.url)
    try:
        done = await api("append_messages", ctx, [s.MessageIn(role="user", content="once")])
    finally:
        await api.close()
    assert proxy.connections == 3  # two failed attempts, then the answer
    assert done.version == 2
    assert [m.content for m in await messages_of(server, ctx)] == ["once"]


async def test_a_write_without_a_key_is_not_repeated(
    kind: str, server: ServerProcess, proxy: FaultyProxy
) -> None:
    ctx = await fresh_context(server)
    proxy.faults.append("lose")
    api = client(kind, proxy.url)
    try:
        with pytest.raises(ConnectionFailed) as lost:
            await api(
                "append_messages",
                ctx,
                [s.MessageIn(role="user", content="x")],
                idempotency_key=None,
            )
    finally:
        await api.close()
    assert lost.value.operation == "append_messages"
    assert proxy.connections == 1
    # The server did get it (the answer was lost on the way back): exactly once.
    assert [m.content for m in await messages_of(server, ctx)] == ["x"]


async def test_unavailable_is_retried_then_raised_when_the_budget_is_spent(
    kind: str, server: ServerProcess, proxy: FaultyProxy
) -> None:
    ctx = await fresh_context(server)
    proxy.faults.extend([UNAVAILABLE, UNAVAILABLE])
    api = client(kind, proxy.url)
    try:
        done = await api("append_messages", ctx, [s.MessageIn(role="user", content="a")])
        assert done.version == 2
    finally:
        await api.close()
    proxy.faults.extend([UNAVAILABLE] * 4)
    api = client(kind, proxy.url)  # a new connection, which meets the faults
    try:
        with pytest.raises(Unavailable) as spent:
            await api("get_context", ctx)
    finally:
        await api.close()
    assert spent.value.code == "unavailable"
    assert spent.value.retry_after == 0.0
    assert spent.value.server_message == "db down"


async def test_a_proxys_page_is_a_protocol_error_naming_the_operation(
    kind: str, proxy: FaultyProxy
) -> None:
    page = canned(502, b"<html>Bad gateway</html>", content_type="text/html")
    proxy.faults.extend([page] * 4)
    api = client(kind, proxy.url)
    try:
        with pytest.raises(ProtocolError) as bad:
            await api("get_server_info")
    finally:
        await api.close()
    assert bad.value.operation == "get_server_info"
    assert bad.value.status == 502
    assert "Bad gateway" in str(bad.value)
    assert proxy.connections == 4


async def test_an_answer_that_is_not_the_operations_is_a_protocol_error(
    kind: str, proxy: FaultyProxy
) -> None:
    proxy.faults.append(canned(200, b'{"unexpected": true}'))
    api = client(kind, proxy.url)
    try:
        with pytest.raises(ProtocolError, match="get_server_info: the 200 answer is not a Root"):
            await api("get_server_info")
    finally:
        await api.close()


async def test_a_silent_server_times_out(kind: str, proxy: FaultyProxy) -> None:
    proxy.faults.append("hang")
    api = client(kind, proxy.url, timeout=0.5, retry=Retry(attempts=1))
    try:
        with pytest.raises(Timeout) as late:
            await api("get_server_info")
    finally:
        await api.close()
    assert late.value.operation == "get_server_info"


async def test_nobody_listening_is_connection_failed(kind: str, proxy: FaultyProxy) -> None:
    url = proxy.url
    await proxy.close()
    api = client(kind, url)
    try:
        with pytest.raises(ConnectionFailed):
            await api("get_server_info")
    finally:
        await api.close()


async def test_rate_limited_carries_retry_after(kind: str, tmp_path: Path) -> None:
    env = {"CTXLOG_RATE_LIMIT": "0.5", "CTXLOG_RATE_BURST": "1"}
    with serving(tmp_path / "rl.db", env=env) as proc:
        api = client(kind, proc.url, retry=Retry(attempts=1))
        try:
            await api("create_context")
            with pytest.raises(RateLimited) as limited:
                await api("create_context")
        finally:
            await api.close()
    assert limited.value.status == 429
    assert limited.value.retry_after is not None
    assert limited.value.retry_after >= 1


async def test_writes_survive_a_killed_server(kind: str, tmp_path: Path) -> None:
    proc = ServerProcess(tmp_path / "kill.db")
    await proc.started()
    proxy = await FaultyProxy(proc.port).start()
    api = client(kind, proxy.url, retry=Retry(attempts=60, base=0.05, cap=0.25))
    try:
        ctx = (await api("create_context")).id
        proc.kill()
        pending = asyncio.create_task(
            api("append_messages", ctx, [s.MessageIn(role="user", content="after the crash")])
        )
        await asyncio.sleep(0.3)
        assert not pending.done()
        proc.start()
        proxy.upstream_port = proc.port
        done = await asyncio.wait_for(pending, 60)
        assert done.version == 2
        assert [m.content for m in await messages_of(proc, ctx)] == ["after the crash"]
    finally:
        await api.close()
        await proxy.close()
        proc.stop()


async def _follow(api: Driver, count: int, **kw: Any) -> list[s.EventOut]:
    """The first ``count`` events ``follow`` yields."""
    if isinstance(api.client, AsyncClient):
        got: list[s.EventOut] = []
        async with contextlib.aclosing(api.client.follow(**kw)) as events:
            async for event in events:
                got.append(event)
                if len(got) == count:
                    break
        return got
    sync = api.client

    def read() -> list[s.EventOut]:
        out = []
        stream = sync.follow(**kw)
        try:
            for event in stream:
                out.append(event)
                if len(out) == count:
                    break
        finally:
            stream.close()
        return out

    return await asyncio.to_thread(read)


async def _append(server_url: str, ctx: str, text: str) -> None:
    direct = AsyncClient(server_url, api_key="key-alice")
    try:
        await direct.append_messages(ctx, [s.MessageIn(role="user", content=text)])
    finally:
        await direct.aclose()


async def _until(predicate: Any, within: float = 30.0) -> None:
    async with asyncio.timeout(within):
        while not predicate():  # noqa: ASYNC110 - a bounded poll of the proxy's counter
            await asyncio.sleep(0.02)


async def test_follow_resumes_after_the_connection_is_cut(
    kind: str, server: ServerProcess, proxy: FaultyProxy
) -> None:
    ctx = await fresh_context(server)
    api = client(kind, proxy.url)
    try:
        reading = asyncio.create_task(_follow(api, 6, context_id=ctx))
        await _until(lambda: proxy.connections >= 1)
        await asyncio.sleep(0.2)
        proxy.cut_all()  # before any event: resumes from where the stream started
        for i in range(3):
            await _append(server.url, ctx, f"a{i}")
        await _until(lambda: proxy.connections >= 2)
        await asyncio.sleep(0.3)
        proxy.cut_all()  # mid-stream: resumes after the last event it got
        for i in range(3):
            await _append(server.url, ctx, f"b{i}")
        got = await asyncio.wait_for(reading, 60)
    finally:
        await api.close()
    assert [e.version for e in got] == [2, 3, 4, 5, 6, 7]
    assert [e.data.content for e in got] == ["a0", "a1", "a2", "b0", "b1", "b2"]  # type: ignore[union-attr]
    assert proxy.connections >= 3


async def test_follow_resumes_across_a_server_restart(kind: str, tmp_path: Path) -> None:
    proc = ServerProcess(tmp_path / "restart.db")
    await proc.started()
    proxy = await FaultyProxy(proc.port).start()
    api = client(kind, proxy.url)
    try:
        ctx = await fresh_context(proc)
        reading = asyncio.create_task(_follow(api, 4, context_id=ctx))
        await _until(lambda: proxy.connections >= 1)
        await asyncio.sleep(0.3)
        await _append(proc.url, ctx, "before")
        await asyncio.sleep(0.3)
        proc.kill()
        proc.start()
        proxy.upstream_port = proc.port
        await proc.ready()
        for text in ("after 1", "after 2", "after 3"):
            await _append(proc.url, ctx, text)
        got = await asyncio.wait_for(reading, 60)
    finally:
        await api.close()
        await proxy.close()
        proc.stop()
    assert [e.data.content for e in got] == ["before", "after 1", "after 2", "after 3"]  # type: ignore[union-attr]
