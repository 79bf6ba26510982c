"""The event loop ``ctxlog serve`` runs on: uvloop by default where installed, asyncio's own
when asked for or where uvloop is missing; both serve the same API and stop cleanly."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import aiohttp
import pytest

from api.cli.loop import new_loop
from api.settings import SettingsError
from tests.support.server_process import key_secrets, seed_context, serving

uvloop = pytest.importorskip(
    "uvloop", reason="uvloop is a dependency only where it builds (not Windows, not PyPy)"
)


def test_auto_and_uvloop_give_uvloop_and_asyncio_gives_the_standard_loop() -> None:
    for choice, kind, name in (
        ("auto", uvloop.Loop, "uvloop"),
        ("uvloop", uvloop.Loop, "uvloop"),
        ("asyncio", asyncio.BaseEventLoop, "asyncio"),
    ):
        loop, named = new_loop(choice)  # type: ignore[arg-type]
        try:
            assert isinstance(loop, kind)
            assert named == name
            assert choice != "asyncio" or not isinstance(loop, uvloop.Loop)
            assert loop.run_until_complete(asyncio.sleep(0, "ran")) == "ran"
        finally:
            loop.close()


def test_without_uvloop_auto_falls_back_and_uvloop_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)  # import uvloop now raises ImportError
    loop, name = new_loop("auto")
    try:
        assert name == "asyncio"
        assert not isinstance(loop, uvloop.Loop)
    finally:
        loop.close()
    with pytest.raises(SettingsError, match="uvloop is not installed"):
        new_loop("uvloop")


@pytest.mark.parametrize(("choice", "name"), [("auto", "uvloop"), ("asyncio", "asyncio")])
async def test_a_server_on_either_loop_serves_writers_and_stops_cleanly(
    choice: str, name: str, tmp_path: Path
) -> None:
    with serving(
        tmp_path / "loop.db", env={"CTXLOG_LOOP": choice}, secrets=key_secrets()
    ) as server:
        headers = {"X-API-Key": "key-alice", "Prefer": "return=minimal"}
        async with aiohttp.ClientSession() as session:
            cid, _ = await seed_context(session, server)
            url = f"{server.url}/api/v1/contexts/{cid}/messages"

            async def append(n: int) -> int:
                body = {"role": "user", "content": f"writer {n}"}
                async with session.post(url, json=body, headers=headers) as r:
                    assert r.status == 201, await r.text()
                    return int((await r.json())["version"])

            versions = await asyncio.gather(*(append(n) for n in range(32)))
            async with session.get(f"{server.url}/api/v1/contexts/{cid}", headers=headers) as r:
                assert r.status == 200
                whole = await r.json()
            async with session.get(f"{server.url}/metrics") as r:
                assert r.status == 200
                metrics = await r.text()
        # Version 1 created the context, 2 held the seed message: 32 writers took 3..34.
        assert sorted(versions) == list(range(3, 35))
        contents = [m["content"] for m in whole["messages"]]
        assert sorted(contents[1:]) == sorted(f"writer {n}" for n in range(32))
    # The loop that runs, as the scrape sees it, and as the start was logged.
    assert f'loop="{name}"' in metrics
    assert f"API keys, {name})" in server.output()
