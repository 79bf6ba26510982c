#!/usr/bin/env python3
"""Load and soak against the real server: a mixed workload at a fixed concurrency.

Starts ``ctxlog serve`` as a subprocess on loopback and drives it for a bounded time with
``--concurrency`` workers, each looping over a weighted mix: durable appends (to the worker's
own context, ``Prefer: return=minimal``), window reads and history reads (of random contexts);
meanwhile WebSocket and SSE subscribers follow the log. Reports per-operation throughput,
p50/p99/p999 latency and errors, the events the subscribers received, and the server's
resident memory (VmRSS from /proc/PID/status) sampled over the run.

Modes:
  (default)            a short run on a fresh database
  --preload N          first write N events straight into the log (EventStore, in batches),
                       so the server starts on (and catches its read model up with) a big log;
                       with --seconds 300 this is the soak: RSS should stop growing
  --rate-limit-demo    one greedy key against two polite ones with CTXLOG_RATE_LIMIT set:
                       the greedy one gets 429s (with Retry-After), the polite ones none

Targets: zero errors; p99 append latency under 50 ms at concurrency 64.

Usage: .venv/bin/python scripts/load.py [--seconds 30] [--concurrency 64] [--preload N]
       [--subscribers 8] [--rate-limit-demo]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import random
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: make the repository importable
    sys.path.insert(0, str(ROOT))

from eventstore import (  # noqa: E402
    ContextCreated,
    EventBase,
    EventMetadata,
    EventStore,
    MessageAppended,
)
from tests.support.server_process import ServerProcess  # noqa: E402

V1 = "/api/v1"
CTX = f"{V1}/contexts"
KEYS = ("key-alice", "key-ann")
MIX = (("append", 0.5), ("window", 0.3), ("history", 0.2))
TEXT = "The quick brown fox jumps over the lazy dog. " * 3


@dataclass
class Stats:
    """Latencies (s) and errors per operation, and what subscribers received."""

    latencies: dict[str, list[float]] = field(default_factory=lambda: collections.defaultdict(list))
    errors: collections.Counter[str] = field(default_factory=collections.Counter)
    statuses: collections.Counter[tuple[str, int]] = field(default_factory=collections.Counter)
    received: collections.Counter[str] = field(default_factory=collections.Counter)
    rss: list[tuple[float, int]] = field(default_factory=list)
    server_cpu: float = 0.0
    client_cpu: float = 0.0


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (/proc/PID/stat, clock ticks)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], q: float) -> float:
    """The ``q`` quantile (0..1) of ``values``, nearest rank."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def preload(db: Path, events: int, per_context: int = 1000) -> list[str]:
    """Write ``events`` events (contexts of ``per_context`` events) straight into the log."""
    meta = EventMetadata(actor="alice", tenant="tenant-a", request_id="preload")
    started = time.monotonic()

    async def fill(store: EventStore, cid: str, count: int) -> None:
        batch: list[EventBase] = [ContextCreated(metadata={"preloaded": True})]
        batch += [
            MessageAppended(
                message_id=str(uuid.uuid4()),
                role="user" if i % 2 else "assistant",
                content=f"{i} {TEXT}",
            )
            for i in range(count - 1)
        ]
        for i in range(0, len(batch), 500):
            await store.append(cid, batch[i : i + 500], metadata=meta)

    ids: list[str] = []
    async with await EventStore.open_sqlite(str(db)) as store:
        written = 0
        while written < events:
            # Several contexts at once: their appends share commits (group commit).
            group = []
            for _ in range(8):
                count = min(per_context, events - written)
                if count <= 0:
                    break
                ids.append(str(uuid.uuid4()))
                group.append(fill(store, ids[-1], count))
                written += count
            await asyncio.gather(*group)
            if len(ids) % 100 < 8:
                rate = written / (time.monotonic() - started)
                print(f"  preloaded {written:,} events ({rate:,.0f}/s)", flush=True)
    print(f"preload: {written:,} events in {time.monotonic() - started:.0f} s", flush=True)
    return ids


async def _request(
    session: aiohttp.ClientSession,
    stats: Stats,
    op: str,
    method: str,
    url: str,
    expect: int,
    **kwargs: object,
) -> None:
    started = time.perf_counter()
    try:
        async with session.request(method, url, **kwargs) as r:  # type: ignore[arg-type]
            await r.read()
            status = r.status
    except (TimeoutError, aiohttp.ClientError) as e:
        stats.errors[f"{op}: {type(e).__name__}"] += 1
        return
    stats.latencies[op].append(time.perf_counter() - started)
    stats.statuses[op, status] += 1
    if status != expect:
        stats.errors[f"{op}: HTTP {status}"] += 1


async def worker(
    n: int,
    url: str,
    session: aiohttp.ClientSession,
    own: str,
    readable: list[str],
    stats: Stats,
    until: float,
) -> None:
    """Loop over the weighted mix until ``until``."""
    rng = random.Random(n)
    key = {"X-API-Key": KEYS[n % len(KEYS)]}
    ops = [op for op, _ in MIX]
    weights = [weight for _, weight in MIX]
    i = 0
    while time.monotonic() < until:
        op = rng.choices(ops, weights)[0]
        if op == "append":
            i += 1
            body = {"role": "user", "content": f"worker {n} message {i}: {TEXT}"}
            headers = {**key, "Prefer": "return=minimal"}
            await _request(
                session, stats, op, "POST", f"{url}{CTX}/{own}/messages", 201,
                json=body, headers=headers,
            )  # fmt: skip
        elif op == "window":
            cid = rng.choice(readable)
            await _request(
                session, stats, op, "GET", f"{url}{CTX}/{cid}/window?max_tokens=2000", 200,
                headers=key,
            )  # fmt: skip
        else:
            cid = rng.choice(readable)
            await _request(
                session, stats, op, "GET",
                f"{url}{CTX}/{cid}/events?limit=50&direction=backward", 200, headers=key,
            )  # fmt: skip


async def websocket_subscriber(
    url: str, session: aiohttp.ClientSession, cid: str, stats: Stats, until: float
) -> None:
    """Follow one context; count the events it is sent."""
    try:
        async with session.ws_connect(
            f"{url}{V1}/ws/{cid}", headers={"X-API-Key": "key-alice"}, heartbeat=20
        ) as ws:
            while time.monotonic() < until:
                try:
                    msg = await ws.receive(timeout=max(0.1, until - time.monotonic()))
                except TimeoutError:
                    break
                if msg.type != aiohttp.WSMsgType.TEXT:
                    stats.errors[f"websocket: {msg.type.name}"] += 1
                    return
                stats.received["websocket"] += 1
    except (aiohttp.ClientError, aiohttp.WSServerHandshakeError) as e:
        stats.errors[f"websocket: {type(e).__name__}"] += 1


async def sse_subscriber(
    url: str, session: aiohttp.ClientSession, stats: Stats, until: float
) -> None:
    """Tail the tenant's log; count the events it is sent."""
    try:
        async with session.get(
            f"{url}{V1}/events/stream", headers={"X-API-Key": "key-alice"}
        ) as stream:
            while time.monotonic() < until:
                try:
                    line = await asyncio.wait_for(
                        stream.content.readline(), max(0.1, until - time.monotonic())
                    )
                except TimeoutError:
                    break
                if line.startswith(b"data: "):
                    stats.received["sse"] += 1
                elif not line:
                    stats.errors["sse: stream ended"] += 1
                    return
    except aiohttp.ClientError as e:
        stats.errors[f"sse: {type(e).__name__}"] += 1


async def sample_rss(server: ServerProcess, stats: Stats, until: float, every: float) -> None:
    """VmRSS of the server every ``every`` seconds."""
    started = time.monotonic()
    while time.monotonic() < until:
        stats.rss.append((time.monotonic() - started, server.rss_kib()))
        await asyncio.sleep(min(every, max(0.0, until - time.monotonic())))
    stats.rss.append((time.monotonic() - started, server.rss_kib()))


async def create(session: aiohttp.ClientSession, url: str, key: str) -> str:
    async with session.post(f"{url}{CTX}", json={}, headers={"X-API-Key": key}) as r:
        assert r.status == 201, await r.text()
        return str((await r.json())["id"])


async def run_mix(server: ServerProcess, args: argparse.Namespace, preloaded: list[str]) -> Stats:
    stats = Stats()
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        own = [await create(session, server.url, "key-alice") for _ in range(args.concurrency)]
        for cid in own:  # something to read from the start
            async with session.post(
                f"{server.url}{CTX}/{cid}/messages", json={"role": "system", "content": TEXT},
                headers={"X-API-Key": "key-alice"},
            ) as r:  # fmt: skip
                assert r.status == 201
        readable = own + preloaded[:1000]
        start = time.monotonic()
        until = start + args.seconds
        server_cpu, client_cpu = cpu_seconds(server.pid), time.process_time()
        tasks = [sample_rss(server, stats, until, args.rss_every)]
        tasks += [
            websocket_subscriber(server.url, session, own[i % len(own)], stats, until)
            for i in range(args.subscribers)
        ]
        tasks += [sse_subscriber(server.url, session, stats, until) for _ in range(2)]
        tasks += [
            worker(n, server.url, session, own[n], readable, stats, until)
            for n in range(args.concurrency)
        ]
        await asyncio.gather(*tasks)
        stats.rss.append((time.monotonic() - start, server.rss_kib()))
        wall = time.monotonic() - start
        stats.server_cpu = (cpu_seconds(server.pid) - server_cpu) / wall
        stats.client_cpu = (time.process_time() - client_cpu) / wall
    return stats


def report(stats: Stats, seconds: float, concurrency: int) -> None:
    print(f"\nmixed workload, concurrency {concurrency}, {seconds:.0f} s")
    print("| operation | requests | req/s | p50 ms | p99 ms | p999 ms | errors |")
    print("|---|---|---|---|---|---|---|")
    for op, _ in MIX:
        values = stats.latencies.get(op, [])
        errors = sum(n for k, n in stats.errors.items() if k.startswith(op))
        if not values:
            print(f"| {op} | 0 | 0 | - | - | - | {errors} |")
            continue
        print(
            f"| {op} | {len(values)} | {len(values) / seconds:,.0f} |"
            f" {percentile(values, 0.5) * 1000:.1f} | {percentile(values, 0.99) * 1000:.1f} |"
            f" {percentile(values, 0.999) * 1000:.1f} | {errors} |"
        )
    total = sum(len(v) for v in stats.latencies.values())
    print(f"all: {total / seconds:,.0f} req/s; errors: {dict(stats.errors) or 'none'}")
    print(f"subscribers received: {dict(stats.received)}")
    print(
        f"CPU (cores busy, of 2): server {stats.server_cpu:.2f}, this load generator"
        f" {stats.client_cpu:.2f}"
    )
    rss = [kib for _, kib in stats.rss]
    print(
        "server RSS MiB over time: "
        + ", ".join(f"{t:.0f}s={kib / 1024:.0f}" for t, kib in stats.rss[:: max(1, len(rss) // 12)])
    )
    if len(rss) >= 4:
        half = len(rss) // 2
        first, second = rss[:half], rss[half:]
        print(
            f"RSS: start {rss[0] / 1024:.0f} MiB, peak {max(rss) / 1024:.0f} MiB, end"
            f" {rss[-1] / 1024:.0f} MiB; first-half max {max(first) / 1024:.0f} MiB,"
            f" second-half max {max(second) / 1024:.0f} MiB"
            f" (growth in the second half: {(max(second) - max(first)) / 1024:+.1f} MiB)"
        )


async def rate_limit_demo(tmp: Path, seconds: float, limit: int) -> None:
    """A greedy key hammering at concurrency 32 beside two polite keys at ~5 req/s each,
    with ``CTXLOG_RATE_LIMIT=limit`` (0: no rate limiting, for comparison)."""
    keys = "key-greedy:tenant-g:greedy,key-polite1:tenant-p:p1,key-polite2:tenant-p:p2"
    env = {"CTXLOG_RATE_LIMIT": str(limit), "CTXLOG_RATE_BURST": str(limit)}
    server = ServerProcess(tmp / f"ratelimit-{limit}.db", keys=keys, env=env)
    await server.started()
    counts: dict[str, collections.Counter[int]] = collections.defaultdict(collections.Counter)
    latencies: dict[str, list[float]] = collections.defaultdict(list)
    retry_after: set[str] = set()
    try:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
            cids = {
                k: await create(session, server.url, k)
                for k in ("key-greedy", "key-polite1", "key-polite2")
            }
            until = time.monotonic() + seconds

            async def client(key: str, pause: float) -> None:
                while time.monotonic() < until:
                    started = time.perf_counter()
                    async with session.get(
                        f"{server.url}{CTX}/{cids[key]}/window", headers={"X-API-Key": key}
                    ) as r:
                        await r.read()
                        counts[key][r.status] += 1
                        if r.status == 429:
                            retry_after.add(r.headers.get("Retry-After", "missing"))
                    latencies[key].append(time.perf_counter() - started)
                    await asyncio.sleep(pause)

            await asyncio.gather(
                *(client("key-greedy", 0) for _ in range(32)),
                client("key-polite1", 0.2),
                client("key-polite2", 0.2),
            )
    finally:
        server.stop()
    what = f"CTXLOG_RATE_LIMIT={limit}/s per key (burst {limit})" if limit else "no rate limit"
    print(f"\n{what}, {seconds:.0f} s")
    for key in ("key-greedy", "key-polite1", "key-polite2"):
        c = counts[key]
        p99 = percentile(latencies[key], 0.99) * 1000
        print(
            f"  {key:12} 200: {c[200]:6}  429: {c[429]:6}  ({c[200] / seconds:.0f} served/s,"
            f" p99 {p99:.1f} ms)"
        )
    print(f"  Retry-After values seen: {sorted(retry_after)}")


async def main_async(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="ctxlog-load-") as tmp:
        if args.rate_limit_demo:
            await rate_limit_demo(Path(tmp), args.seconds, 0)
            await rate_limit_demo(Path(tmp), args.seconds, 50)
            return
        db = Path(tmp) / "load.db"
        preloaded = await preload(db, args.preload) if args.preload else []
        server = ServerProcess(db)
        started = time.monotonic()
        await server.started(within=1800)
        print(
            f"server ready in {time.monotonic() - started:.0f} s"
            f" (RSS {server.rss_kib() / 1024:.0f} MiB)"
        )
        try:
            stats = await run_mix(server, args, preloaded)
        finally:
            code = server.stop()
        report(stats, args.seconds, args.concurrency)
        log = server.output()
        print(f"server exit status {code}; tracebacks in its log: {log.count('Traceback')}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--subscribers", type=int, default=8, help="WebSocket subscribers")
    parser.add_argument("--preload", type=int, default=0, help="events written before start")
    parser.add_argument("--rss-every", type=float, default=5.0)
    parser.add_argument("--rate-limit-demo", action="store_true")
    args = parser.parse_args()
    asyncio.run(main_async(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
