"""LangGraph's own checkpointer conformance suite (the ``langgraph-checkpoint-conformance``
package from PyPI, run unchanged) against ``CtxlogSaver`` on a real ``ctxlog serve``: every base
capability (put, put_writes, get_tuple, list, delete_thread) and every extended one
(copy_thread, prune, delete_for_runs), through the async client and through the sync one."""

from __future__ import annotations

import asyncio
import functools
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.conformance import checkpointer_test, validate
from langgraph.checkpoint.conformance.capabilities import ALL_CAPABILITIES

from api.client import AsyncClient, Client
from api.client.langgraph import CtxlogSaver
from tests.support.server_process import ServerProcess, key_secrets, serving


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    db = tmp_path_factory.mktemp("langgraph") / "langgraph.db"
    with serving(db, secrets=key_secrets()) as proc:
        yield proc


class SyncOnly(CtxlogSaver):
    """The saver's sync methods behind the async ones the suite calls, run on a thread:
    the suite is async, so this is how it reaches the sync code path."""

    def __init__(self, client: Client) -> None:
        super().__init__(sync_client=client)

    async def _call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        method = getattr(CtxlogSaver, name)
        return await asyncio.to_thread(functools.partial(method, self, *args, **kwargs))

    async def aget_tuple(self, config: Any) -> Any:
        return await self._call("get_tuple", config)

    async def alist(self, config: Any, **kwargs: Any) -> AsyncIterator[Any]:
        found = await asyncio.to_thread(lambda: list(CtxlogSaver.list(self, config, **kwargs)))
        for item in found:
            yield item

    async def aput(self, *args: Any) -> Any:
        return await self._call("put", *args)

    async def aput_writes(self, *args: Any, **kwargs: Any) -> None:
        await self._call("put_writes", *args, **kwargs)

    async def adelete_thread(self, thread_id: str) -> None:
        await self._call("delete_thread", thread_id)

    async def adelete_for_runs(self, run_ids: Any) -> None:
        await self._call("delete_for_runs", run_ids)

    async def acopy_thread(self, source: str, target: str) -> None:
        await self._call("copy_thread", source, target)

    async def aprune(self, thread_ids: Any, *, strategy: str = "keep_latest") -> None:
        await self._call("prune", thread_ids, strategy=strategy)


@pytest.mark.parametrize("kind", ["async", "sync"])
async def test_the_official_conformance_suite_passes_in_full(
    kind: str, server: ServerProcess
) -> None:
    # Each capability's suite gets a fresh saver (and so a fresh fold cache): what one
    # suite wrote reaches the next only through the server.
    async def factory() -> AsyncIterator[BaseCheckpointSaver[str]]:
        if kind == "async":
            client = AsyncClient(server.url, api_key="key-alice")
            yield CtxlogSaver(client)
            await client.aclose()
        else:
            sync = Client(server.url, api_key="key-alice")
            yield SyncOnly(sync)
            sync.close()

    registered = checkpointer_test(name=f"CtxlogSaver-{kind}-{uuid.uuid4().hex[:6]}")(factory)
    report = await validate(registered)
    failures = {cap: result.failures for cap, result in report.results.items() if not result.passed}
    assert failures == {}
    assert report.passed_all_base()
    assert {cap for cap, r in report.results.items() if r.detected} == {
        c.value for c in ALL_CAPABILITIES
    }
    assert report.conformance_level() == "FULL"
