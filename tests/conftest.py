"""Shared fixtures: event stores on every backend, a clean temp database, and for the
end-to-end modules (each defines its own ``server``) a response checker and a client."""

from __future__ import annotations

import os
import sqlite3
import stat
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import aiohttp
import pytest

from api.testing import Checker
from eventstore import EventStore
from tests.support.nodes import Nodes
from tests.support.server_process import ServerProcess, openapi_checker

PG_DSN = os.environ.get("CTXLOG_TEST_PG_DSN")

Tamper = Callable[[int, bytes], Awaitable[None]]


def _backends() -> list[object]:
    skip_pg = pytest.mark.skipif(
        not PG_DSN, reason="PostgreSQL tests run when CTXLOG_TEST_PG_DSN is set (.ci/run sets it)"
    )
    return ["sqlite-memory", "sqlite-file", pytest.param("postgres", marks=skip_pg)]


def _readmodels() -> list[object]:
    skip_pg = pytest.mark.skipif(
        not PG_DSN, reason="the PostgreSQL read model is tested when CTXLOG_TEST_PG_DSN is set"
    )
    return ["sqlite", pytest.param("postgres", marks=skip_pg)]


@pytest.fixture(params=_readmodels())
def readmodel(request: pytest.FixtureRequest) -> str:
    """The read model a projections test runs on: ``sqlite`` or ``postgres`` (shared)."""
    return str(request.param)


@pytest.fixture(params=_backends())
def backend(request: pytest.FixtureRequest) -> str:
    """The name of the backend a contract test runs on."""
    return str(request.param)


@pytest.fixture
async def store(backend: str, tmp_path: Path) -> AsyncIterator[EventStore]:
    """An empty event store on each backend."""
    store = await open_store(backend, tmp_path)
    try:
        yield store
    finally:
        await store.close()


async def open_store(backend: str, tmp_path: Path, **kwargs: object) -> EventStore:
    """Open a store on ``backend``; PostgreSQL gets a fresh schema per test."""
    if backend == "sqlite-memory":
        return await EventStore.open_sqlite(":memory:", **kwargs)  # type: ignore[arg-type]
    if backend == "sqlite-file":
        return await EventStore.open_sqlite(str(tmp_path / "log.db"), **kwargs)  # type: ignore[arg-type]
    from eventstore.postgres import PostgresRecorder

    assert PG_DSN
    schema = "t_" + os.urandom(6).hex()
    recorder = PostgresRecorder(PG_DSN, schema=schema, drop_schema_on_close=True)
    store = EventStore(recorder, **kwargs)  # type: ignore[arg-type]
    await store.open()
    return store


@pytest.fixture
def tamper(backend: str, store: EventStore, tmp_path: Path) -> Tamper:
    """Overwrite one row's data behind the store's back, as an attacker with a shell would."""

    async def sqlite_file(position: int, data: bytes) -> None:
        db = sqlite3.connect(tmp_path / "log.db")
        db.executescript("DROP TRIGGER events_no_update;")
        db.execute("UPDATE events SET data = ? WHERE position = ?", (data, position))
        db.commit()
        db.close()

    async def sqlite_memory(position: int, data: bytes) -> None:
        writer = store.recorder._writer  # type: ignore[attr-defined]
        await writer.execute("DROP TRIGGER events_no_update")
        await writer.execute("UPDATE events SET data = ? WHERE position = ?", (data, position))

    async def postgres(position: int, data: bytes) -> None:
        import asyncpg

        schema = store.recorder.schema  # type: ignore[attr-defined]
        conn = await asyncpg.connect(PG_DSN)
        try:
            await conn.execute(f"ALTER TABLE {schema}.events DISABLE TRIGGER USER")
            await conn.execute(
                f"UPDATE {schema}.events SET data = $1 WHERE position = $2", data, position
            )
        finally:
            await conn.close()

    return {"sqlite-file": sqlite_file, "sqlite-memory": sqlite_memory, "postgres": postgres}[
        backend
    ]


@pytest.fixture(scope="module")
def checker(server: ServerProcess) -> Checker:
    """Checks answers against the OpenAPI document of the module's ``server``."""
    return openapi_checker(server)


@pytest.fixture
async def nodes(tmp_path: Path) -> AsyncIterator[Nodes]:
    """A deployment of ``ctxlog serve`` nodes on a fresh PostgreSQL schema; every node still
    running at the end must stop cleanly, without a traceback in its log."""
    assert PG_DSN
    deployment = Nodes(PG_DSN, tmp_path)
    try:
        yield deployment
    finally:
        codes = await deployment.close()
    assert all(code in (0, None) for code in codes), deployment.outputs()
    assert "Traceback" not in deployment.outputs(), deployment.outputs()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    """A client for the module's ``server`` (30 s per request at most)."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        yield session


@pytest.fixture
def permissive_umask() -> Iterator[None]:
    """A umask that lets group and others read new files (0o022, a common default): what
    ctxlog creates must be owner-only anyway."""
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def owner_only(directory: Path) -> dict[str, str]:
    """The files under ``directory`` that are not mode 0600, with their modes."""
    return {
        str(p.relative_to(directory)): oct(stat.S_IMODE(p.stat().st_mode))
        for p in sorted(directory.rglob("*"))
        if p.is_file() and stat.S_IMODE(p.stat().st_mode) != 0o600
    }
