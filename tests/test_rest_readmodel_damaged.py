"""A real server on a database whose read model was overwritten with garbage: the file is
set aside (renamed, not deleted), a warning names it, the read model is rebuilt from the
log, and the server serves (it once reported ``failed`` and answered 503 for good)."""

from __future__ import annotations

import os
from pathlib import Path

import aiohttp

from tests.support.server_process import ServerProcess, seed_context

CTX = "/api/v1/contexts"
ALICE = {"X-API-Key": "key-alice"}
GARBAGE = os.urandom(64) * 1024


def _damage(readmodel: Path) -> None:
    for extra in ("-wal", "-shm"):
        readmodel.with_name(readmodel.name + extra).unlink(missing_ok=True)
    readmodel.write_bytes(GARBAGE)


def _set_aside(folder: Path) -> Path:
    (aside,) = folder.glob("ctx.db.readmodel.damaged-*")
    return aside


async def test_a_damaged_read_model_is_set_aside_and_rebuilt_while_serving(
    tmp_path: Path,
) -> None:
    db = tmp_path / "ctx.db"
    server = ServerProcess(db)
    await server.started()
    try:
        async with aiohttp.ClientSession() as session:
            cid, _ = await seed_context(session, server)
    finally:
        assert server.stop() == 0
    readmodel = tmp_path / "ctx.db.readmodel"
    _damage(readmodel)

    await server.started()
    try:
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{server.url}/readyz") as r:
                assert r.status == 200, await r.text()
            async with session.get(f"{server.url}{CTX}/{cid}", headers=ALICE) as r:
                assert r.status == 200, await r.text()
                assert [m["content"] for m in (await r.json())["messages"]] == ["x"]
            url = f"{server.url}{CTX}/{cid}/messages"
            async with session.post(url, json={"role": "user", "content": "y"}, headers=ALICE) as r:
                assert r.status == 201, await r.text()
    finally:
        assert server.stop() == 0
    aside = _set_aside(tmp_path)
    assert aside.read_bytes() == GARBAGE
    log = server.output()
    assert f"cannot be opened (file is not a database): set aside as {aside}" in log, log
    assert "Traceback" not in log, log[-3000:]
