"""Several real ``ctxlog serve`` nodes on one PostgreSQL schema, as a deployment behind a load
balancer runs them: each a process of its own on a loopback port, the schema fresh per test
and dropped after it."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from eventstore import EventStore, MessageAppended

from .server_process import ServerProcess


def schema_dsn(dsn: str, schema: str) -> str:
    """``dsn`` naming ``schema`` (``?schema=``, as ``--db`` reads it)."""
    parts = urlsplit(dsn)
    query = [*parse_qsl(parts.query), ("schema", schema)]
    return urlunsplit(parts._replace(query=urlencode(query)))


class Nodes:
    """Nodes on one fresh schema of ``dsn``; ``add`` starts one more, ``close`` stops every
    node still running (SIGTERM) and drops the schema."""

    def __init__(self, dsn: str, directory: Path, env: Mapping[str, str] | None = None) -> None:
        self.admin_dsn = dsn
        self.schema = "t_nodes_" + os.urandom(5).hex()
        self.db = schema_dsn(dsn, self.schema)
        self.directory = directory
        self.env = dict(env or {})
        self.nodes: list[ServerProcess] = []

    def __getitem__(self, index: int) -> ServerProcess:
        return self.nodes[index]

    async def add(self, count: int = 1, **env: str) -> list[ServerProcess]:
        """Start ``count`` more nodes at once and wait until each is ready."""
        started = []
        for _ in range(count):
            log = self.directory / f"node{len(self.nodes)}.log"
            node = ServerProcess(self.db, env={**self.env, **env}, log=log)
            node.start()
            self.nodes.append(node)
            started.append(node)
        await asyncio.gather(*(node.ready() for node in started))
        return started

    def outputs(self) -> str:
        """Every node's log, for a failure message."""
        return "\n".join(f"--- {node.log.name}\n{node.output()[-2000:]}" for node in self.nodes)

    async def close(self) -> list[int | None]:
        """SIGTERM every node still running (None for one already gone); drop the schema (and
        the read model's beside it)."""
        import asyncpg

        codes: list[int | None] = []
        for node in self.nodes:
            running = node.proc is not None and node.proc.poll() is None
            codes.append(await asyncio.to_thread(node.stop) if running else None)
        conn = await asyncpg.connect(self.admin_dsn)
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE')
            await conn.execute(f'DROP SCHEMA IF EXISTS "{self.schema}_readmodel" CASCADE')
        finally:
            await conn.close()
        return codes


async def appended_in_log(db: str, contexts: list[str]) -> tuple[dict[str, int], dict[str, int]]:
    """How many times each message id was appended in the whole log, and each context's
    version there (what an acknowledged append must be found in exactly once)."""
    store = await EventStore.open_url(db)
    try:
        found: dict[str, int] = {}
        after = 0
        while True:
            events, after_next = await store.read_all(after, 1000)
            for rec in events:
                if isinstance(rec.event, MessageAppended):
                    found[rec.event.message_id] = found.get(rec.event.message_id, 0) + 1
            if after_next == after:
                break
            after = after_next
        versions = {cid: await store.stream_version(cid) for cid in contexts}
    finally:
        await store.close()
    return found, versions
