"""The client's contract, run once over each client (``AsyncClient`` on aiohttp, ``Client`` on
httpx2) against a real ``ctxlog serve``: every operation answers with the API's Structs, server
errors are typed with their code and details, If-Match is one argument away, pages iterate."""

from __future__ import annotations

import inspect
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from api.client import (
    SEEN,
    AsyncClient,
    BadRequest,
    Client,
    IdempotencyKeyReused,
    NotFound,
    Retry,
    Unauthorized,
    VersionConflict,
)
from api.client import schemas as s
from eventstore.events import ContextCreated
from tests.support.server_process import ServerProcess, key_secrets, serving


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    db = tmp_path_factory.mktemp("client") / "client.db"
    with serving(db, secrets=key_secrets()) as proc:
        yield proc


class Driver:
    """One client behind one calling convention: ``await drive("get_window", ...)`` awaits
    the async client's answer and takes the sync client's as it is."""

    def __init__(self, client: AsyncClient | Client) -> None:
        self.client = client

    async def __call__(self, name: str, *args: Any, **kwargs: Any) -> Any:
        result = getattr(self.client, name)(*args, **kwargs)
        if inspect.isawaitable(result):
            return await result
        return result

    async def collect(self, name: str, *args: Any, **kwargs: Any) -> list[Any]:
        """Everything an iterator method yields."""
        found = getattr(self.client, name)(*args, **kwargs)
        if hasattr(found, "__aiter__"):
            return [item async for item in found]
        return list(found)


def make_client(kind: str, url: str, key: str | None = "key-alice", **kw: Any) -> Any:
    """An ``AsyncClient`` or a ``Client`` for ``url``."""
    return (AsyncClient if kind == "async" else Client)(url, api_key=key, **kw)


async def close(client: AsyncClient | Client) -> None:
    """Close either client."""
    if isinstance(client, AsyncClient):
        await client.aclose()
    else:
        client.close()


@pytest.fixture(params=["async", "sync"])
async def drive(request: pytest.FixtureRequest, server: ServerProcess) -> AsyncIterator[Driver]:
    client = make_client(request.param, server.url)
    yield Driver(client)
    await close(client)


async def test_both_clients_have_the_same_operations() -> None:
    names = {n for n in dir(AsyncClient) if not n.startswith("_")} - {"aclose"}
    assert names == {n for n in dir(Client) if not n.startswith("_")} - {"close"}
    for name in names - {"send"}:
        a, b = getattr(AsyncClient, name), getattr(Client, name)
        if hasattr(a, "build"):
            assert a.build is b.build  # one builder: one signature for both
        else:
            # The same parameters; the answers differ only as async and sync do.
            pa, pb = inspect.signature(a).parameters, inspect.signature(b).parameters
            assert pa == pb, name


async def test_a_conversation_through_every_operation(drive: Driver) -> None:
    ctx = await drive("create_context", metadata={"user": "ada"}, window=s.WindowIn(max_tokens=500))
    assert isinstance(ctx, s.ContextOut)
    assert ctx.version == 1
    first = await drive(
        "append_messages",
        ctx.id,
        [s.MessageIn(role="system", content="Be terse."), s.MessageIn(role="user", content="Hi")],
    )
    assert isinstance(first, s.Appended)
    assert first.version == 3
    assert len(first.message_ids) == 2
    openai = await drive(
        "append_messages",
        ctx.id,
        s.OpenAIMessages(messages=[{"role": "assistant", "content": "Hello, Ada."}]),
    )
    assert openai.version == 4
    items = [{"type": "message", "role": "user", "content": "And you?"}]
    assert (await drive("append_messages", ctx.id, s.ResponsesItems(items=items))).version == 5
    window = await drive("get_window", ctx.id, format="anthropic", max_tokens=400)
    assert isinstance(window, s.Window)
    assert window.system == "Be terse."
    assert isinstance(window.messages, list)
    assert [m["role"] for m in window.messages] == ["user", "assistant", "user"]
    recorded = await drive("record_window", ctx.id, max_tokens=400)
    assert recorded.version == 5
    edited = await drive("edit_message", ctx.id, first.message_ids[1], "Hi there")
    assert edited.version == 7
    assert edited.messages[1].content == "Hi there"
    redacted = await drive("redact_message", ctx.id, openai.message_ids[0], reason="test")
    assert redacted.messages[2].redacted
    patched = await drive("patch_metadata", ctx.id, {"topic": "greeting"})
    assert patched.metadata == {"user": "ada", "topic": "greeting"}
    configured = await drive("configure_window", ctx.id, s.WindowIn(max_tokens=300))
    assert configured.window.max_tokens == 300
    summarized = await drive("add_summary", ctx.id, "They greeted.", first.message_ids[1])
    assert summarized.summaries[0].text == "They greeted."
    old = await drive("get_context", ctx.id, version=3)
    assert [m.content for m in old.messages] == ["Be terse.", "Hi"]
    page = await drive("list_messages", ctx.id, direction="backward", limit=2)
    assert isinstance(page, s.MessagePageOut)
    assert page.total == 4
    assert len(page.messages) == 2
    history = await drive("get_history", ctx.id, limit=3)
    assert [e.type for e in history.events] == [
        "context.created", "message.appended", "message.appended",
    ]  # fmt: skip
    assert isinstance(history.events[0].data, ContextCreated)
    rolled = await drive("rollback", ctx.id, 3, reason="start over")
    assert [m.content for m in rolled.messages] == ["Be terse.", "Hi"]
    forked = await drive("fork", ctx.id, at_version=5)
    assert forked.parent == s.VersionRef(context_id=ctx.id, version=5)
    diff = await drive("get_parent_diff", forked.id)
    assert isinstance(diff, s.StateDiff)
    assert (await drive("get_diff", ctx.id, 3, 5)).added
    lineage = await drive("get_lineage", ctx.id)
    assert lineage.forks == [s.VersionRef(context_id=forked.id, version=5)]
    audit = await drive("list_events", context_id=ctx.id, type="context.rolled_back")
    assert [e.type for e in audit.events] == ["context.rolled_back"]
    hits = await drive("search_messages", "terse", context_id=ctx.id)
    assert [h.context_id for h in hits.hits] == [ctx.id]
    listed = await drive("list_contexts", metadata={"user": "ada"}, limit=1000)
    assert ctx.id in [c.id for c in listed.contexts]
    assert await drive("delete_context", forked.id) is None
    with pytest.raises(NotFound):
        await drive("get_context", forked.id)


async def test_pages_iterate_to_the_end(drive: Driver) -> None:
    ctx = await drive("create_context")
    for i in range(5):
        await drive("append_messages", ctx.id, [s.MessageIn(role="user", content=f"m{i}")])
    events = await drive.collect("iter_history", ctx.id, page=2)
    assert [e.version for e in events] == [1, 2, 3, 4, 5, 6]
    messages = await drive.collect("iter_messages", ctx.id, page=2)
    assert [m.content for m in messages] == [f"m{i}" for i in range(5)]
    audit = await drive.collect("iter_events", context_id=ctx.id, page=2)
    assert [e.version for e in audit] == [1, 2, 3, 4, 5, 6]
    tagged = await drive("create_context", metadata={"pages": ctx.id})
    found = await drive.collect("iter_contexts", metadata={"pages": ctx.id}, page=1)
    assert [c.id for c in found] == [tagged.id]


async def test_errors_are_typed_with_the_servers_code(drive: Driver) -> None:
    with pytest.raises(NotFound) as missing:
        await drive("get_context", str(uuid.uuid4()))
    assert missing.value.code == "not_found"
    assert missing.value.operation == "get_context"
    ctx = await drive("create_context")
    with pytest.raises(BadRequest) as bad:
        await drive("append_messages", ctx.id, s.OpenAIMessages(messages=[{"role": "robot"}]))
    assert bad.value.details["path"].startswith("$.messages[0]")
    assert "append_messages" in str(bad.value)
    with pytest.raises(VersionConflict) as stale:
        await drive("append_messages", ctx.id, [s.MessageIn(role="user", content="x")], if_match=7)
    assert (stale.value.expected, stale.value.actual) == (7, 1)
    body = [s.MessageIn(role="user", content="once")]
    await drive("append_messages", ctx.id, body, idempotency_key="k-" + ctx.id)
    other = [s.MessageIn(role="user", content="other")]
    with pytest.raises(IdempotencyKeyReused):
        await drive("append_messages", ctx.id, other, idempotency_key="k-" + ctx.id)


async def test_a_repeated_idempotency_key_replays(drive: Driver) -> None:
    ctx = await drive("create_context")
    body = [s.MessageIn(role="user", content="once")]
    a = await drive("append_messages", ctx.id, body, idempotency_key="same-" + ctx.id)
    b = await drive("append_messages", ctx.id, body, idempotency_key="same-" + ctx.id)
    assert a == b
    assert (await drive("get_context", ctx.id)).version == 2


async def test_if_match_seen_is_the_last_version_this_client_saw(drive: Driver) -> None:
    ctx = await drive("create_context")
    with pytest.raises(ValueError, match="seen no version"):
        await drive("rollback", str(uuid.uuid4()), 1, if_match=SEEN)
    await drive("append_messages", ctx.id, [s.MessageIn(role="user", content="a")], if_match=SEEN)
    await drive("append_messages", ctx.id, [s.MessageIn(role="user", content="b")], if_match=SEEN)
    assert (await drive("get_context", ctx.id)).version == 3
    # Someone else writes: this client's next If-Match write is refused, until it reads again.
    other = drive.client.__class__(drive.client.base_url, api_key="key-ann")
    try:
        result = other.append_messages(ctx.id, [s.MessageIn(role="user", content="theirs")])
        if inspect.isawaitable(result):
            await result
    finally:
        await close(other)
    with pytest.raises(VersionConflict):
        await drive(
            "append_messages", ctx.id, [s.MessageIn(role="user", content="c")], if_match=SEEN
        )
    await drive("get_context", ctx.id, messages=False)
    done = await drive(
        "append_messages", ctx.id, [s.MessageIn(role="user", content="c")], if_match=SEEN
    )
    assert done.version == 5


async def test_the_chat_loop_with_if_match_seen(drive: Driver) -> None:
    """Record the window, then append the reply with ``if_match=SEEN``: the version seen is
    the window's, and only its own record came after it (issue 16 item 5)."""
    ctx = await drive("create_context")
    await drive("append_messages", ctx.id, [s.MessageIn(role="user", content="q")])
    window = await drive("record_window", ctx.id, format="openai")
    reply = [s.MessageIn(role="assistant", content="a")]
    done = await drive("append_messages", ctx.id, reply, if_match=SEEN)
    assert done.version == window.version + 2


@pytest.mark.parametrize("kind", ["async", "sync"])
async def test_tenancy_and_keys(kind: str, server: ServerProcess) -> None:
    alice = Driver(make_client(kind, server.url, "key-alice"))
    bob = Driver(make_client(kind, server.url, "key-bob"))
    nobody = Driver(make_client(kind, server.url, "no-such-key", retry=Retry(attempts=1)))
    try:
        ctx = await alice("create_context")
        with pytest.raises(NotFound):
            await bob("get_context", ctx.id)
        with pytest.raises(NotFound):
            await bob("append_messages", ctx.id, [s.MessageIn(role="user", content="x")])
        with pytest.raises(Unauthorized):
            await nobody("get_context", ctx.id)
    finally:
        for d in (alice, bob, nobody):
            await close(d.client)
