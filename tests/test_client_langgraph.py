"""``CtxlogSaver`` under a real LangGraph graph on a real ``ctxlog serve``: the state survives
into another saver (another process would fold the same events), time travel works, a channel
value is stored once per version (not at every step), ``copy_thread`` is a fork, tenants never
see each other's threads, and erasing a thread's subject erases its checkpoints."""

from __future__ import annotations

import operator
from collections.abc import AsyncIterator, Iterator
from typing import Annotated, Any, TypedDict

import pytest
from langgraph.graph import END, START, StateGraph

from api.client import AsyncClient, Client
from api.client.langgraph import CtxlogSaver
from api.client.langgraph.saver import THREAD_KEY
from eventstore.events import CheckpointContent, CheckpointSaved
from tests.support.server_process import ServerProcess, key_secrets, serving

BIG = "a long document " * 200


class State(TypedDict):
    document: str
    steps: Annotated[list[int], operator.add]


def graph(saver: CtxlogSaver) -> Any:
    """Five nodes in a row; each adds its number; the first sets a big document once."""
    builder = StateGraph(State)

    def node(i: int) -> Any:
        def run(state: State) -> dict[str, Any]:
            return {"steps": [i]}

        return run

    for i in range(5):
        builder.add_node(f"n{i}", node(i))
    builder.add_edge(START, "n0")
    for i in range(4):
        builder.add_edge(f"n{i}", f"n{i + 1}")
    builder.add_edge("n4", END)
    return builder.compile(checkpointer=saver)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    db = tmp_path_factory.mktemp("langgraph-e2e") / "lg.db"
    with serving(db, secrets=key_secrets()) as proc:
        yield proc


@pytest.fixture
async def alice(server: ServerProcess) -> AsyncIterator[AsyncClient]:
    client = AsyncClient(server.url, api_key="key-alice")
    yield client
    await client.aclose()


def config(thread: str, **more: Any) -> dict[str, Any]:
    return {"configurable": {"thread_id": thread, **more}}


async def test_a_graph_runs_and_its_state_is_the_logs(
    alice: AsyncClient, server: ServerProcess
) -> None:
    app = graph(CtxlogSaver(alice))
    out = await app.ainvoke({"document": BIG, "steps": []}, config("run-1"))
    assert out["steps"] == [0, 1, 2, 3, 4]
    # Another saver (nothing cached: it folds the context's events) sees the same state,
    # through the sync client too.
    with Client(server.url, api_key="key-alice") as sync:
        fresh = graph(CtxlogSaver(sync_client=sync))
        state = fresh.get_state(config("run-1"))
        assert state.values == {"document": BIG, "steps": [0, 1, 2, 3, 4]}
        history = list(fresh.get_state_history(config("run-1")))
    assert [len(h.values.get("steps", [])) for h in history] == [5, 4, 3, 2, 1, 0, 0]
    # Time travel: resume from an earlier checkpoint.
    earlier = next(h for h in history if h.values.get("steps") == [0, 1])
    again = await app.ainvoke(None, earlier.config)
    assert again["steps"] == [0, 1, 2, 3, 4]


async def test_a_channel_value_is_stored_once_per_version(alice: AsyncClient) -> None:
    app = graph(CtxlogSaver(alice))
    await app.ainvoke({"document": BIG, "steps": []}, config("run-blobs"))
    found = await alice.list_contexts(metadata={THREAD_KEY: "run-blobs"})
    ctx = found.contexts[0].id
    saves = [e.data async for e in alice.iter_history(ctx) if isinstance(e.data, CheckpointSaved)]
    assert len(saves) == 7  # the input, then one per node, then the end
    documents = [
        b for e in saves if isinstance(e.content, CheckpointContent)
        for b in e.content.blobs if b.channel == "document"
    ]  # fmt: skip
    assert len(documents) == 1, "the document's value was stored again at a later step"


async def test_copy_thread_is_a_fork(alice: AsyncClient) -> None:
    saver = CtxlogSaver(alice)
    app = graph(saver)
    await app.ainvoke({"document": "d", "steps": []}, config("source"))
    await saver.acopy_thread("source", "copy")
    source = (await alice.list_contexts(metadata={THREAD_KEY: "source"})).contexts[0]
    copy = (await alice.list_contexts(metadata={THREAD_KEY: "copy"})).contexts[0]
    assert copy.parent is not None
    assert copy.parent.context_id == source.id
    history = await alice.get_history(copy.id)
    assert [e.type for e in history.events] == ["context.forked"]  # nothing copied
    other = graph(CtxlogSaver(alice))
    assert (await other.aget_state(config("copy"))).values["steps"] == [0, 1, 2, 3, 4]
    # The copy goes its own way; the source does not move.
    await other.aupdate_state(config("copy"), {"steps": [99]})
    assert (await other.aget_state(config("copy"))).values["steps"][-1] == 99
    assert (await other.aget_state(config("source"))).values["steps"] == [0, 1, 2, 3, 4]


async def test_a_tenant_never_sees_anothers_thread(
    alice: AsyncClient, server: ServerProcess
) -> None:
    await graph(CtxlogSaver(alice)).ainvoke({"document": "a", "steps": []}, config("shared-name"))
    bob = AsyncClient(server.url, api_key="key-bob")
    try:
        theirs = graph(CtxlogSaver(bob))
        assert (await theirs.aget_state(config("shared-name"))).values == {}
        await theirs.ainvoke({"document": "b", "steps": []}, config("shared-name"))
        assert (await theirs.aget_state(config("shared-name"))).values["document"] == "b"
        assert [
            t
            async for t in CtxlogSaver(bob).alist(None)
            if t.config["configurable"]["thread_id"] == "run-1"
        ] == []
    finally:
        await bob.aclose()
    mine = graph(CtxlogSaver(alice))
    assert (await mine.aget_state(config("shared-name"))).values["document"] == "a"


async def test_erasing_the_threads_subject_erases_its_checkpoints(alice: AsyncClient) -> None:
    saver = CtxlogSaver(alice, subject_key="user_id")
    app = graph(saver)
    await app.ainvoke({"document": "private", "steps": []}, config("erase-me", user_id="u-7"))
    assert (await app.aget_state(config("erase-me"))).values["document"] == "private"
    erased = await alice.erase_subject("u-7")
    assert erased.keys_destroyed == 1
    fresh = graph(CtxlogSaver(alice, subject_key="user_id"))
    assert (await fresh.aget_state(config("erase-me"))).values == {}
    found = await alice.list_contexts(metadata={THREAD_KEY: "erase-me"})
    history = await alice.get_history(found.contexts[0].id)
    assert {e.data.content for e in history.events if isinstance(e.data, CheckpointSaved)} == {
        "[erased]"
    }
