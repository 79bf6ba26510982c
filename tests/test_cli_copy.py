"""``ctxlog copy SOURCE TARGET``: a whole log moves between engines with every column of every
row and the subject keys; the copy verifies and reads the same; a target holding anything is
refused with nothing written."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from eventstore import EventStore, LogFilter, StoredEvent
from projections import Caller, Contexts, NewMessage
from tests.conftest import PG_DSN
from tests.support.cli_helpers import as_json, invoke, story
from tests.support.nodes import schema_dsn

ADA = Caller(tenant="acme", actor="ada")
REFUSED = 6


async def _rows_and_keys(db: str) -> tuple[list[StoredEvent], list[object]]:
    store = await EventStore.open_url(db)
    try:
        rows = (await store.recorder.read_all(0, 100_000, LogFilter())).events
        keys: list[object] = list(await store.recorder.read_keys("", 100_000))
    finally:
        await store.close()
    return rows, keys


async def _sealed(db: str) -> str:
    """A context whose message is sealed with a data subject's key."""
    store = await EventStore.open_url(db)
    service = Contexts(store)
    try:
        await service.start()
        cid = (await service.create(ADA, metadata={"subject": "user-7"})).context_id
        await service.append(ADA, cid, [NewMessage(role="user", content="my secret")])
    finally:
        await service.close()
        await store.close()
    return cid


async def _content(db: str, cid: str) -> list[str]:
    store = await EventStore.open_url(db)
    service = Contexts(store)
    try:
        await service.start()
        state = await service.get(ADA, cid)
    finally:
        await service.close()
        await store.close()
    return [str(message.content) for message in state.messages]


def _same(source: str, target: str) -> None:
    assert asyncio.run(_rows_and_keys(target)) == asyncio.run(_rows_and_keys(source))


@pytest.fixture
def source(tmp_path: Path) -> str:
    db = tmp_path / "source.db"
    story(db)
    return str(db)


def test_a_sqlite_log_copies_into_a_new_sqlite_file(source: str, tmp_path: Path) -> None:
    cid = asyncio.run(_sealed(source))
    target = str(tmp_path / "copy.db")
    result = invoke("copy", source, target, "--format", "json")
    assert result.exit_code == 0, result.output
    copied = as_json(result)
    assert copied["events"] == 14
    assert copied["keys"] == 1
    _same(source, target)
    assert invoke("verify", "--db", target).exit_code == 0
    assert asyncio.run(_content(target, cid)) == ["my secret"]


def test_a_target_that_holds_anything_is_refused(source: str, tmp_path: Path) -> None:
    target = tmp_path / "other.db"
    story(target)
    before = asyncio.run(_rows_and_keys(str(target)))
    result = invoke("copy", source, target)
    assert result.exit_code == REFUSED
    assert "not empty" in result.output
    assert asyncio.run(_rows_and_keys(str(target))) == before
    missing = tmp_path / "missing.db"
    assert invoke("copy", missing, tmp_path / "new.db").exit_code != 0
    assert not (tmp_path / "new.db").exists()  # no empty database left behind


@pytest.fixture
def pg_target() -> Iterator[str]:
    if not PG_DSN:
        pytest.skip("PostgreSQL tests run when CTXLOG_TEST_PG_DSN is set (.ci/run sets it)")
    schema = "t_copy_" + os.urandom(5).hex()
    yield schema_dsn(PG_DSN, schema)

    async def drop() -> None:
        import asyncpg

        conn = await asyncpg.connect(PG_DSN)
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}_readmodel" CASCADE')
        finally:
            await conn.close()

    asyncio.run(drop())


def test_sqlite_to_postgresql_and_back(source: str, pg_target: str, tmp_path: Path) -> None:
    cid = asyncio.run(_sealed(source))
    assert invoke("copy", source, pg_target).exit_code == 0
    _same(source, pg_target)
    assert invoke("verify", "--db", pg_target).exit_code == 0
    assert asyncio.run(_content(pg_target, cid)) == ["my secret"]
    # Refused when it holds something, as on SQLite.
    assert invoke("copy", source, pg_target).exit_code == REFUSED
    back = str(tmp_path / "back.db")
    assert invoke("copy", pg_target, back).exit_code == 0
    _same(source, back)
    assert invoke("verify", "--db", back).exit_code == 0
