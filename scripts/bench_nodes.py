#!/usr/bin/env python3
"""Several nodes on one PostgreSQL, measured against one node and against SQLite, same run.

Real ``ctxlog serve`` processes on loopback: one on a SQLite file, one on a PostgreSQL schema,
and two on another schema. Each round drives every deployment in turn (alternating order)
for ``--seconds``: durable appends/s (``--concurrency`` workers, each on its own context,
spread over the deployment's nodes), then window reads/s the same way. Medians over
``--repeats`` rounds, and each figure as a ratio to SQLite's in the same round.

Then cross-node visibility: a WebSocket on node B follows a context that node A appends to,
one append at a time; the latency is from sending the append to B's frame (p50/p99), beside
the same with the WebSocket on A itself.

Then node start: the time until ``/healthz`` answers 200 for a new node on a log of each size
in ``--start-events`` (written straight through the event store). On PostgreSQL the nodes
share one read model beside the log: the first node builds it (it applies the whole log),
then each further node started beside it opens it and is ready without a replay (median of
``--repeats``), and so is a node restarted after every node stopped. On SQLite the read
model file is beside the log: the first start builds it, a restart resumes from its
checkpoint.

Usage: .venv/bin/python scripts/bench_nodes.py [--dsn postgresql://...] [--seconds 4]
       [--concurrency 32] [--repeats 3] [--start-events 10000,100000]
       [--phases throughput,start] [--start-engines postgresql,sqlite]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: make the repository importable
    sys.path.insert(0, str(ROOT))

from eventstore import ContextCreated, EventMetadata, EventStore, MessageAppended  # noqa: E402
from tests.support.nodes import schema_dsn  # noqa: E402
from tests.support.server_process import ServerProcess  # noqa: E402

KEY = "bench-key"
KEYS = f"{KEY}:bench:bencher"
HEADERS = {"X-API-Key": KEY}
V1 = "/api/v1"
TEXT = "a message of about the length people send to a model, give or take a few words"


class Deployment:
    """Nodes on one database, started once for the whole run."""

    def __init__(self, name: str, db: str, count: int, directory: Path) -> None:
        self.name = name
        self.db = db
        self.nodes = [
            ServerProcess(db, keys=KEYS, log=directory / f"{name.replace(' ', '_')}-{n}.log")
            for n in range(count)
        ]

    async def start(self) -> None:
        for node in self.nodes:
            node.start()
        await asyncio.gather(*(node.ready(120) for node in self.nodes))

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


async def _create(session: aiohttp.ClientSession, node: ServerProcess) -> str:
    async with session.post(f"{node.url}{V1}/contexts", json={}, headers=HEADERS) as r:
        assert r.status == 201, await r.text()
        return str((await r.json())["id"])


async def _append(session: aiohttp.ClientSession, node: ServerProcess, cid: str) -> int:
    headers = {**HEADERS, "Prefer": "return=minimal"}
    body = {"role": "user", "content": TEXT}
    async with session.post(
        f"{node.url}{V1}/contexts/{cid}/messages", json=body, headers=headers
    ) as r:
        assert r.status == 201, await r.text()
        return int((await r.json())["version"])


async def _read(session: aiohttp.ClientSession, node: ServerProcess, cid: str) -> None:
    async with session.get(f"{node.url}{V1}/contexts/{cid}/window", headers=HEADERS) as r:
        assert r.status == 200, await r.text()
        await r.read()


async def _rate(
    session: aiohttp.ClientSession, dep: Deployment, contexts: list[str], seconds: float, op: str
) -> float:
    """Requests/s of ``op`` (append or read) by one worker per context, spread over the nodes."""
    done = 0
    deadline = time.perf_counter() + seconds

    async def worker(n: int) -> None:
        nonlocal done
        node = dep.nodes[n % len(dep.nodes)]
        while time.perf_counter() < deadline:
            if op == "append":
                await _append(session, node, contexts[n])
            else:
                await _read(session, node, contexts[n])
            done += 1

    start = time.perf_counter()
    await asyncio.gather(*(worker(n) for n in range(len(contexts))))
    return done / (time.perf_counter() - start)


async def throughput(
    deployments: list[Deployment], seconds: float, concurrency: int, repeats: int
) -> None:
    connector = aiohttp.TCPConnector(limit=concurrency * 2)
    async with aiohttp.ClientSession(connector=connector) as session:
        contexts = {}
        for dep in deployments:
            contexts[dep.name] = [
                await _create(session, dep.nodes[n % len(dep.nodes)]) for n in range(concurrency)
            ]
            for cid in contexts[dep.name]:  # a window has something to show
                await _append(session, dep.nodes[0], cid)
        results: dict[tuple[str, str], list[float]] = {}
        for round_ in range(repeats):
            order = deployments if round_ % 2 == 0 else deployments[::-1]
            for op in ("append", "read"):
                for dep in order:
                    rate = await _rate(session, dep, contexts[dep.name], seconds, op)
                    results.setdefault((dep.name, op), []).append(rate)
    reference = deployments[0].name
    print(f"\nthroughput at c={concurrency}, {seconds:g} s per phase, median of {repeats}:")
    for op, label in (("append", "appends/s"), ("read", "window reads/s")):
        for dep in deployments:
            rates = results[(dep.name, op)]
            ratios = [r / ref for r, ref in zip(rates, results[(reference, op)], strict=True)]
            print(
                f"  {label:15} {dep.name:22} {statistics.median(rates):8.0f}"
                f"   x{statistics.median(ratios):.2f} of {reference}"
                f"   (rounds: {', '.join(f'{r:.0f}' for r in rates)})"
            )


def _percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p * len(ordered)))]


async def visibility(writer: ServerProcess, follower: ServerProcess, samples: int) -> list[float]:
    """Milliseconds from sending an append on ``writer`` to its frame on ``follower``."""
    latencies = []
    async with aiohttp.ClientSession() as session:
        cid = await _create(session, writer)
        async with session.ws_connect(f"{follower.ws_url}{V1}/ws/{cid}", headers=HEADERS) as ws:
            first = await ws.receive_json(timeout=30)
            assert first["type"] == "context"
            for _ in range(samples):
                sent = time.perf_counter()
                appending = asyncio.create_task(_append(session, writer, cid))
                frame = await ws.receive_json(timeout=30)
                latencies.append((time.perf_counter() - sent) * 1000)
                assert frame["type"] == "event"
                await appending
    return latencies


async def fill(db: str, events: int) -> None:
    """``events`` events straight through the store: contexts of 1,000 messages each."""
    store = await EventStore.open_url(db)
    meta = EventMetadata(tenant="bench", actor="bencher")
    try:
        written = 0
        while written < events:
            cid = str(uuid.uuid4())
            await store.append(cid, [ContextCreated()], metadata=meta)
            written += 1
            for _ in range(10):
                batch = min(100, events - written)
                if batch <= 0:
                    break
                messages = [
                    MessageAppended(message_id=str(uuid.uuid4()), role="user", content=TEXT)
                    for _ in range(batch)
                ]
                await store.append(cid, messages, metadata=meta)
                written += batch
    finally:
        await store.close()


async def start_time(db: str, log: Path) -> float:
    """Seconds from spawning a node on ``db`` to its first 200 from /healthz."""
    node = ServerProcess(db, keys=KEYS, log=log)
    began = time.perf_counter()
    node.start()
    try:
        await node.ready(3600)
        return time.perf_counter() - began
    finally:
        node.stop()


async def pg_start(db: str, directory: Path, repeats: int) -> tuple[float, list[float], float]:
    """Seconds to ready on a PostgreSQL log: the first node (it builds the shared read
    model), each of ``repeats`` nodes started beside it, and a node started after all
    stopped."""
    first = ServerProcess(db, keys=KEYS, log=directory / "start-pg-first.log")
    began = time.perf_counter()
    first.start()
    try:
        await first.ready(7200)
        build = time.perf_counter() - began
        beside = [await start_time(db, directory / "start-pg.log") for _ in range(repeats)]
    finally:
        first.stop()
    restart = await start_time(db, directory / "start-pg.log")
    return build, beside, restart


async def _throughput_phase(
    args: argparse.Namespace, schema: Callable[[], str], directory: Path
) -> None:
    deployments = [
        Deployment("sqlite, 1 node", str(directory / "bench.db"), 1, directory),
        Deployment("postgresql, 1 node", schema(), 1, directory),
        Deployment("postgresql, 2 nodes", schema(), 2, directory),
    ]
    try:
        for dep in deployments:
            await dep.start()
        await throughput(deployments, args.seconds, args.concurrency, args.repeats)
        a, b = deployments[2].nodes
        across = await visibility(a, b, args.samples)
        same = await visibility(a, a, args.samples)
        print(f"\nvisibility, append sent -> WebSocket frame, {args.samples} appends:")
        for label, values in (("node A -> node B", across), ("node A -> node A", same)):
            print(
                f"  {label}: p50 {_percentile(values, 0.5):6.1f} ms"
                f"   p99 {_percentile(values, 0.99):6.1f} ms"
            )
    finally:
        for dep in deployments:
            dep.stop()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--dsn", default=os.environ.get("CTXLOG_TEST_PG_DSN", ""), help="PostgreSQL DSN"
    )
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--start-events", default="10000,100000")
    parser.add_argument(
        "--phases", default="throughput,start", help="throughput (with visibility), start"
    )
    parser.add_argument(
        "--start-engines", default="postgresql,sqlite", help="engines the start phase measures"
    )
    args = parser.parse_args()
    phases = set(args.phases.split(","))
    engines = set(args.start_engines.split(","))
    if not args.dsn:
        parser.error("give --dsn (or set CTXLOG_TEST_PG_DSN)")
    import asyncpg

    schemas: list[str] = []

    def schema() -> str:
        schemas.append("bench_nodes_" + os.urandom(4).hex())
        return schema_dsn(args.dsn, schemas[-1])

    try:
        with tempfile.TemporaryDirectory() as tmp:
            directory = Path(tmp)
            if "throughput" in phases:
                await _throughput_phase(args, schema, directory)
            if "start" in phases:
                print("\nnode start (spawn -> /healthz 200):")
                for size in (int(n) for n in args.start_events.split(",")):
                    parts = [f"  {size:>9,} events:"]
                    if "postgresql" in engines:
                        pg = schema()
                        filled = time.perf_counter()
                        await fill(pg, size)
                        filled = time.perf_counter() - filled
                        build, beside, restart = await pg_start(pg, directory, args.repeats)
                        parts.append(
                            f"postgresql (log written in {filled:.0f} s): first node"
                            f" {build:6.2f} s (builds the shared read model), another node"
                            f" {statistics.median(beside):5.2f} s (median of {len(beside)}:"
                            f" {', '.join(f'{t:.2f}' for t in beside)}),"
                            f" restart {restart:5.2f} s;"
                        )
                    if "sqlite" in engines:
                        sqlite = str(directory / f"start-{size}.db")
                        await fill(sqlite, size)
                        first = await start_time(sqlite, directory / "start-sqlite.log")
                        again = await start_time(sqlite, directory / "start-sqlite.log")
                        parts.append(
                            f"sqlite first start {first:6.2f} s (builds the read model file),"
                            f" restart {again:6.2f} s"
                        )
                    print(" ".join(parts), flush=True)
    finally:  # the schemas go even when a phase fails
        conn = await asyncpg.connect(args.dsn)
        try:
            for name in schemas:
                await conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
                await conn.execute(f'DROP SCHEMA IF EXISTS "{name}_readmodel" CASCADE')
        finally:
            await conn.close()


if __name__ == "__main__":
    asyncio.run(main())
