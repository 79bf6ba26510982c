"""Every file ctxlog creates is owner-only (0600), under a umask that would let group and
others read it: the database, its write-ahead log and index, the read model and its marks
(``ctxlog serve``), backups, exports and import targets (the command). The database holds
subject keys and plaintext, an export the keys too. A database the operator made readable by
others keeps its mode, and the server warns about it."""

from __future__ import annotations

import asyncio
import os
import stat
import subprocess
from pathlib import Path

import aiohttp
import pytest

from tests.conftest import owner_only
from tests.support.cli_helpers import child_env, command
from tests.support.server_process import ServerProcess, seed_context

pytestmark = pytest.mark.usefixtures("permissive_umask")


def ctxlog(*args: str | Path) -> None:
    result = subprocess.run(
        command(*args), capture_output=True, text=True, timeout=120, env=child_env(), check=False
    )
    assert result.returncode == 0, result.stderr[-2000:]


async def _appends(server: ServerProcess) -> None:
    async with aiohttp.ClientSession() as session:
        for _ in range(3):
            await seed_context(session, server)


def test_every_file_ctxlog_creates_is_owner_only(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    db = data / "ctx.db"
    server = ServerProcess(db, log=tmp_path / "server.log")
    server.start()
    try:
        server.ready_sync()
        asyncio.run(_appends(server))
        while_serving = set(os.listdir(data))
        assert {"ctx.db", "ctx.db-wal", "ctx.db-shm", "ctx.db.readmodel"} <= while_serving
        assert owner_only(data) == {}  # the read model's marks and WAL among them
        ctxlog("backup", data / "backup.db", "--db", db)
    finally:
        assert server.stop() == 0
    ctxlog("export", "-o", data / "export.ndjson", "--db", db)
    ctxlog("import", data / "export.ndjson", "--db", data / "copy.db")
    ctxlog("rebuild", "--db", db)
    made = set(os.listdir(data))
    assert {"backup.db", "export.ndjson", "copy.db"} <= made
    assert owner_only(data) == {}


def test_a_readable_database_is_left_alone_and_named_in_a_warning(tmp_path: Path) -> None:
    db = tmp_path / "ctx.db"
    server = ServerProcess(db, log=tmp_path / "server.log")
    server.start()
    server.ready_sync()
    assert server.stop() == 0
    os.chmod(db, 0o644)  # the operator's choice, say, from before ctxlog made it 0600
    server.start()
    try:
        server.ready_sync()
    finally:
        assert server.stop() == 0
    assert stat.S_IMODE(db.stat().st_mode) == 0o644
    warnings = [line for line in server.output().splitlines() if "WARNING" in line]
    assert any(str(db) in line and "chmod 600" in line for line in warnings), warnings
