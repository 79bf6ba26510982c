"""Benchmark the event store against raw sqlite3 on the same machine, in the same run.

    .venv/bin/python scripts/bench_eventstore.py [--seconds 3] [--repeats 3] [--stream 100000]

Prints a table of medians over repeats: durable single-event appends/s at 1, 16 and 64
concurrent appenders, 100-event batch appends, read_stream and global-log reads, and the
raw-sqlite3 references (same schema and ~1 KB payloads; 1,000 rows a transaction, and one
row a transaction) with our ratio to them. synchronous=FULL unless --normal.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import platform
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import msgspec

from eventstore import EventMetadata, EventStore, MessageAppended
from eventstore.ids import new_id
from eventstore.sqlite_schema import INSERT, SCHEMA

CONTENT = "lorem ipsum dolor sit amet " * 36  # ~1 KB encoded event


def event() -> MessageAppended:
    return MessageAppended(message_id=new_id(), role="user", content=CONTENT)


def median_of(values: list[float]) -> float:
    return statistics.median(values)


async def appenders(path: str, concurrency: int, seconds: float, batch: int, sync: str) -> float:
    """Events/s with ``concurrency`` tasks appending ``batch`` events at a time."""
    store = await EventStore.open_sqlite(path, synchronous=sync)  # type: ignore[arg-type]
    meta = EventMetadata(actor="bench", tenant="bench")
    count = 0
    stop = time.perf_counter() + seconds

    async def run(n: int) -> None:
        nonlocal count
        while time.perf_counter() < stop:
            await store.append(f"bench-{n}", [event() for _ in range(batch)], metadata=meta)
            count += batch

    start = time.perf_counter()
    await asyncio.gather(*(run(n) for n in range(concurrency)))
    elapsed = time.perf_counter() - start
    await store.close()
    return count / elapsed


async def fill(path: str, stream: str, events: int) -> None:
    store = await EventStore.open_sqlite(path, synchronous="NORMAL")
    for _ in range(0, events, 1000):
        await store.append(stream, [event() for _ in range(1000)])
    await store.close()


async def read_stream_rate(path: str, stream: str) -> float:
    store = await EventStore.open_sqlite(path)
    start = time.perf_counter()
    n = 0
    async for _ in store.iter_stream(stream):
        n += 1
    elapsed = time.perf_counter() - start
    await store.close()
    return n / elapsed


async def read_all_rate(path: str) -> float:
    store = await EventStore.open_sqlite(path)
    start = time.perf_counter()
    n, after = 0, 0
    while True:
        events, after = await store.read_all(after, 5000)
        n += len(events)
        if len(events) < 5000:
            break
    elapsed = time.perf_counter() - start
    await store.close()
    return n / elapsed


def raw_sqlite(path: str, seconds: float, per_transaction: int, sync: str) -> float:
    """The reference: plain sqlite3, same schema, payloads and ids (``new_id``, as the store
    mints them: a random id would cost the reference an index page per row), N rows a
    transaction."""
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode = WAL")
    db.execute(f"PRAGMA synchronous = {sync}")
    db.executescript(SCHEMA)
    data = msgspec.json.encode(event())
    meta = msgspec.json.encode(EventMetadata(actor="bench", tenant="bench"))
    position, count = 0, 0
    stop = time.perf_counter() + seconds
    start = time.perf_counter()
    while time.perf_counter() < stop:
        rows = []
        for _ in range(per_transaction):
            position += 1
            rows.append(
                (position, "raw", position, new_id(), "message.appended", data, meta,
                 "bench", "bench", time.time_ns() // 1000, os.urandom(32))
            )  # fmt: skip
        db.execute("BEGIN IMMEDIATE")
        db.executemany(INSERT, rows)
        db.execute("COMMIT")
        count += per_transaction
    elapsed = time.perf_counter() - start
    db.close()
    return count / elapsed


def repeat(times: int, make: Callable[[str], Awaitable[float] | float]) -> float:
    results = []
    for _ in range(times):
        with tempfile.TemporaryDirectory() as tmp:
            result = make(str(Path(tmp) / "bench.db"))
            if asyncio.iscoroutine(result):
                result = asyncio.run(result)
            results.append(float(result))  # type: ignore[arg-type]
    return median_of(results)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="length of each timed run")
    parser.add_argument("--repeats", type=int, default=3, help="runs per figure (median)")
    parser.add_argument("--stream", type=int, default=100_000, help="events in the read test")
    parser.add_argument("--normal", action="store_true", help="synchronous=NORMAL")
    args = parser.parse_args()
    sync = "NORMAL" if args.normal else "FULL"
    s, r = args.seconds, args.repeats

    print(
        f"ctxlog event store benchmark: {os.cpu_count()} cores, Python"
        f" {platform.python_version()}, SQLite {sqlite3.sqlite_version}, synchronous={sync},"
        f" ~{len(msgspec.json.encode(event()))} B events, median of {r} x {s:g} s"
    )
    ref_batch = repeat(r, lambda p: raw_sqlite(p, s, 1000, sync))
    ref_single = repeat(r, lambda p: raw_sqlite(p, s, 1, sync))
    rows: list[tuple[str, float, float | None]] = [
        ("raw sqlite3, 1,000 rows/transaction (reference)", ref_batch, 1.0),
        ("raw sqlite3, 1 row/transaction", ref_single, ref_single / ref_batch),
    ]
    for concurrency in (1, 16, 64):
        make = functools.partial(appenders, concurrency=concurrency, seconds=s, batch=1, sync=sync)
        rate = repeat(r, make)
        rows.append((f"append 1 event, {concurrency} concurrent appenders", rate, rate / ref_batch))
    rate = repeat(r, lambda p: appenders(p, 4, s, 100, sync))
    rows.append(("append 100-event batches, 4 appenders", rate, rate / ref_batch))

    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "read.db")
        asyncio.run(fill(path, "long", args.stream))
        stream_rate = median_of([asyncio.run(read_stream_rate(path, "long")) for _ in range(r)])
        all_rate = median_of([asyncio.run(read_all_rate(path)) for _ in range(r)])
    rows.append((f"read_stream, {args.stream:,}-event stream", stream_rate, None))
    rows.append((f"read_all (global log), {args.stream:,} events", all_rate, None))

    width = max(len(name) for name, _, _ in rows)
    print(f"{'measure':<{width}}  {'events/s':>10}  {'vs reference':>12}")
    for name, value, ratio in rows:
        shown = f"{ratio:>11.0%}" if ratio is not None else f"{'':>11}-"
        print(f"{name:<{width}}  {value:>10,.0f}  {shown:>12}")


if __name__ == "__main__":
    main()
