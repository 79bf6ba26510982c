"""Benchmark the read side: window reads, projector catch-up and rebuild, time travel.

    .venv/bin/python scripts/bench_projections.py [--events 1000000] [--repeats 3]

Prints one table; every figure is the median over ``--repeats`` runs. Setup writes straight
to the event store (synchronous=NORMAL, batches of 1,000 events), which is not measured.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import tempfile
import time
from pathlib import Path

from eventstore import ContextCreated, EventMetadata, EventStore, MessageAppended, MessageEdited
from projections import Caller, Contexts, runner

CALLER = Caller(tenant="bench")
META = EventMetadata(tenant="bench", actor="bench")
WORDS = [
    "the",
    "quick",
    "brown",
    "fox",
    "jumps",
    "over",
    "the",
    "lazy",
    "dog",
    "and",
    "keeps",
    "running",
    "far",
    "away",
]


def text(rng: random.Random) -> str:
    return " ".join(rng.choices(WORDS, k=rng.randint(5, 30)))


async def fill(store: EventStore, stream: str, messages: int, rng: random.Random) -> None:
    """A context of ``messages`` messages, with an edit of an older message every 50."""
    await store.append(stream, [ContextCreated()], metadata=META)
    batch: list[MessageAppended | MessageEdited] = []
    for i in range(messages):
        batch.append(MessageAppended(message_id=f"m{i}", role="user", content=text(rng)))
        if i % 50 == 49 and len(batch) < 1000:
            batch.append(MessageEdited(message_id=f"m{rng.randrange(i)}", content=text(rng)))
        if len(batch) >= 1000:
            await store.append(stream, batch, metadata=META)
            batch = []
    if batch:
        await store.append(stream, batch, metadata=META)


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def window_latency(
    svc: Contexts, cid: str, reads: int, model: str | None = None
) -> tuple[float, float]:
    samples = []
    for _ in range(reads):
        start = time.perf_counter()
        await svc.window(CALLER, cid, max_tokens=4000, model=model)
        samples.append(time.perf_counter() - start)
    return pct(samples, 0.5) * 1000, pct(samples, 0.99) * 1000


async def time_travel(svc: Contexts, cid: str, reads: int, rng: random.Random) -> list[float]:
    top = await svc.store.stream_version(cid)
    samples = []
    for _ in range(reads):
        version = rng.randint(1, top)
        start = time.perf_counter()
        await svc.get(CALLER, cid, version=version)
        samples.append(time.perf_counter() - start)
    return samples


async def bench_reads(root: Path, repeats: int, reads: int) -> list[tuple[str, str]]:
    rng = random.Random(7)
    store = await EventStore.open_sqlite(str(root / "reads.db"), synchronous="NORMAL")
    sizes = (100, 10_000, 100_000)
    for size in sizes:
        await fill(store, f"c{size}", size, rng)
    # No window cache: every read computes its window, which is what a read right after a
    # write costs (a repeated read of an unchanged context is a dictionary lookup).
    svc = Contexts(store, window_cache=0)
    await svc.start()
    rows: list[tuple[str, str]] = []
    try:
        p50s: dict[int, list[float]] = {s: [] for s in sizes}
        p99s: dict[int, list[float]] = {s: [] for s in sizes}
        # The stored counts are cl100k_base: gpt-4o's windows recount in o200k_base as
        # they read, claude's estimate from characters.
        models = ("gpt-4o", "claude-sonnet-4")
        m50s: dict[str, list[float]] = {m: [] for m in models}
        m99s: dict[str, list[float]] = {m: [] for m in models}
        for _ in range(repeats):
            for size in sizes:
                p50, p99 = await window_latency(svc, f"c{size}", reads)
                p50s[size].append(p50)
                p99s[size].append(p99)
            for model in models:
                p50, p99 = await window_latency(svc, "c10000", reads, model)
                m50s[model].append(p50)
                m99s[model].append(p99)
        for size in sizes:
            rows.append((
                f"window read, {size:,} messages (4000-token budget, uncached)",
                f"p50 {statistics.median(p50s[size]):.2f} ms, "
                f"p99 {statistics.median(p99s[size]):.2f} ms",
            ))  # fmt: skip
        for model, how in zip(models, ("recounted in o200k_base", "estimated"), strict=True):
            rows.append((
                f"window read, 10,000 messages, model {model} ({how})",
                f"p50 {statistics.median(m50s[model]):.2f} ms, "
                f"p99 {statistics.median(m99s[model]):.2f} ms",
            ))  # fmt: skip
        ratio = statistics.median(p50s[100_000]) / statistics.median(p50s[100])
        rows.append(("window p50 ratio 100,000 / 100 messages (target <= 2x)", f"{ratio:.2f}x"))
        events = await svc.store.stream_version("c100000")
        cold_start = time.perf_counter()
        await svc.get(CALLER, "c100000", version=events // 2)
        cold = (time.perf_counter() - cold_start) * 1000
        tt50, tt99 = [], []
        for r in range(repeats):
            samples = await time_travel(svc, "c100000", reads, random.Random(r))
            tt50.append(pct(samples, 0.5) * 1000)
            tt99.append(pct(samples, 0.99) * 1000)
        rows.append((
            f"time travel, random version of a {events:,}-event context",
            f"p50 {statistics.median(tt50):.1f} ms, p99 {statistics.median(tt99):.1f} ms "
            f"(first, cold-cache read: {cold:.0f} ms)",
        ))  # fmt: skip
    finally:
        await svc.close()
        await store.close()
    return rows


async def bench_projector(root: Path, total: int, repeats: int) -> list[tuple[str, str]]:
    rng = random.Random(11)
    log = str(root / "million.db")
    store = await EventStore.open_sqlite(log, synchronous="NORMAL")
    per_context = 1000
    for c in range(total // per_context):
        await fill(store, f"ctx{c}", per_context - per_context // 50 - 1, rng)
    events = await store.head()
    first, catch_up, rebuild = [], [], []
    try:
        for r in range(repeats):
            # An empty read model file on a log of many events: built beside, swapped in.
            svc = Contexts(store, readmodel_path=str(root / f"first{r}.db"))
            start = time.perf_counter()
            await svc.start()
            first.append(events / (time.perf_counter() - start))
            await svc.close()
            # The projector catching up, as a node does that was stopped a while (here from
            # position 0, with first builds switched off): pages, tokens counted by the
            # helper process, applied in place as the live loop applies them.
            runner.FIRST_BUILD, first_build = events, runner.FIRST_BUILD
            try:
                svc = Contexts(store, readmodel_path=str(root / f"rm{r}.db"))
                start = time.perf_counter()
                await svc.start()
                catch_up.append(events / (time.perf_counter() - start))
            finally:
                runner.FIRST_BUILD = first_build
            start = time.perf_counter()
            await svc.rebuild()
            rebuild.append(events / (time.perf_counter() - start))
            await svc.close()
    finally:
        await store.close()
    return [
        (f"first build of an empty read model, {events:,} events", rates(first)),
        (f"projector catch-up, {events:,} events", rates(catch_up)),
        (f"rebuild, {events:,} events (target >= 50,000/s)", rates(rebuild)),
    ]


def rates(runs: list[float]) -> str:
    """The median, and every run in order: the spread is part of the figure."""
    each = ", ".join(f"{r:,.0f}" for r in runs)
    return f"{statistics.median(runs):,.0f} events/s (runs: {each})"


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--reads", type=int, default=200, help="reads per latency sample")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        rows = await bench_reads(root, args.repeats, args.reads)
        rows += await bench_projector(root, args.events, args.repeats)
    width = max(len(name) for name, _ in rows)
    print(f"{'measure':<{width}}  result (median of {args.repeats} runs)")
    print("-" * (width + 40))
    for name, value in rows:
        print(f"{name:<{width}}  {value}")


if __name__ == "__main__":
    asyncio.run(main())
