"""A read model written without syncs: the marks beside it tell a crash of the machine (the
file is deleted and the log replayed) from a crash of a process (the file is kept)."""

from __future__ import annotations

import contextlib
import glob
import os
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from eventstore import ContextCreated, EventMetadata, EventStore, MessageAppended
from projections import Caller, Contexts, fold, openmarks
from projections.readmodel import ReadModel
from tests.support.factories import COUNTER

ENCODING = "cl100k_base"
BOOT = "this-boot"


@pytest.fixture(autouse=True)
def this_boot(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(openmarks, "boot_id", lambda: BOOT)


def marks(path: str) -> list[str]:
    return sorted(glob.glob(path + ".open-*"))


def boot_in(name: str) -> str:
    return Path(name).read_text()


def mark(path: str, pid: int, boot: str) -> str:
    name = f"{path}.open-{pid}-0"
    Path(name).write_text(boot)
    return name


def gone_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", ""])
    proc.wait()
    return proc.pid


def synchronous(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA synchronous").fetchone()[0])


@contextlib.asynccontextmanager
async def opened(path: str, checkpoint: int | None = None) -> AsyncIterator[ReadModel]:
    """The read model at ``path``, open (and closed however the test ends); ``checkpoint``:
    the one it must open at."""
    model = ReadModel(path)
    try:
        position = await model.open(ENCODING)
        if checkpoint is not None:
            assert position == checkpoint
        yield model
    finally:
        await model.close()


async def closed_model_at(path: str, checkpoint: int) -> None:
    model = ReadModel(path)
    assert await model.open(ENCODING) == 0
    await model.write(
        lambda conn: conn.execute("INSERT INTO checkpoint VALUES (1, ?, ?)", (checkpoint, ENCODING))
    )
    await model.close()


async def test_an_open_read_model_is_marked_with_the_boot_and_written_without_syncs(
    tmp_path: Path,
) -> None:
    path = str(tmp_path / "rm.db")
    async with opened(path) as model:
        [found] = marks(path)
        assert boot_in(found) == BOOT
        assert f".open-{os.getpid()}-" in found
        assert await model.write(synchronous) == 0  # OFF
    assert marks(path) == []


async def test_without_a_boot_id_the_read_model_syncs_at_checkpoints_and_is_not_marked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(openmarks, "boot_id", lambda: None)
    path = str(tmp_path / "rm.db")
    async with opened(path) as model:
        assert marks(path) == []
        assert await model.write(synchronous) == 1  # NORMAL


async def test_a_mark_of_another_boot_deletes_the_read_model_and_the_log_is_replayed(
    tmp_path: Path,
) -> None:
    log = str(tmp_path / "log.db")
    store = await EventStore.open_sqlite(log)
    events = [
        ContextCreated(),
        *(MessageAppended(message_id=f"m{i}", role="user", content=f"hi {i}") for i in range(5)),
    ]
    await store.append("c", events, metadata=EventMetadata(tenant="t"))
    svc = Contexts(store)
    await svc.start()
    await svc.close()
    path = log + ".readmodel"
    with sqlite3.connect(path) as db:  # something no replay would write
        db.execute("CREATE TABLE sentinel (x)")
    stale = mark(path, os.getpid(), "a-boot-before")

    svc = Contexts(store)
    await svc.start()
    try:
        assert marks(path) != [stale]
        assert len(marks(path)) == 1
        with sqlite3.connect(path) as db:
            tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master")}
        assert "sentinel" not in tables  # a new file
        state = await svc.get(Caller(tenant="t"), "c")
        assert state == fold([e async for e in store.iter_stream("c")], counter=COUNTER)
    finally:
        await svc.close()
        await store.close()


async def test_a_mark_of_this_boot_whose_process_is_gone_keeps_the_read_model(
    tmp_path: Path,
) -> None:
    path = str(tmp_path / "rm.db")
    await closed_model_at(path, 5)
    stale = mark(path, gone_pid(), BOOT)  # a process killed with the file open
    async with opened(path, checkpoint=5):
        assert stale not in marks(path)
    assert marks(path) == []


async def test_a_mark_of_a_process_still_running_is_left_alone(tmp_path: Path) -> None:
    path = str(tmp_path / "rm.db")
    await closed_model_at(path, 5)
    other = mark(path, os.getppid(), BOOT)
    async with opened(path, checkpoint=5):
        pass
    assert marks(path) == [other]
