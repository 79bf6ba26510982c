"""Benchmark windows in the providers' formats against the native window, and token counting
in cl100k_base and o200k_base, in one run.

    .venv/bin/python scripts/bench_formats.py [--reads 200] [--repeats 3]

A window read here is what the API answers with, less HTTP: the service's window (uncached,
so computed each time), rendered as the API's body (``render_window``) and encoded as JSON.
The native read is the body without ``format``; a formatted read asks for ``openai``,
``responses`` or ``anthropic`` (its framing counted, its ``messages`` rendered beside the
entries). Contexts of 100, 10,000 and 100,000 messages are conversations with tool calls (one
turn in four calls a tool). Reads alternate between the native and the formatted ones so both
see the same machine. Every figure is the median over ``--repeats`` runs.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import tempfile
import time
from pathlib import Path

import msgspec
from bench_tokens import ENCODINGS, corpus, run

from api.formats import NAMES
from api.rest.render import render_window
from eventstore import ContextCreated, EventMetadata, EventStore, MessageAppended, ToolCallPart
from eventstore import ToolResultPart as Result
from eventstore.events import Role
from projections import Caller, Contexts, TokenCounter

CALLER = Caller(tenant="bench")
META = EventMetadata(tenant="bench", actor="bench")
SIZES = (100, 10_000, 100_000)
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
BUDGET = 4000
encode = msgspec.json.Encoder().encode


def text(rng: random.Random) -> str:
    return " ".join(rng.choices(WORDS, k=rng.randint(5, 30)))


async def fill(store: EventStore, stream: str, messages: int, rng: random.Random) -> None:
    """A conversation of ``messages`` messages: user, then an answer or a tool call and its
    result."""
    await store.append(stream, [ContextCreated()], metadata=META)
    batch: list[MessageAppended] = []
    i = 0
    while i < messages:
        kind = i % 4
        if kind == 2 and i + 1 < messages:
            call = ToolCallPart(id=f"call_{i}", name="lookup", arguments={"q": text(rng)})
            batch.append(MessageAppended(message_id=f"m{i}", role="assistant", content=[call]))
            result = Result(call_id=f"call_{i}", content=text(rng))
            batch.append(MessageAppended(message_id=f"m{i + 1}", role="tool", content=[result]))
            i += 2
            continue
        role: Role = "user" if kind == 0 else "assistant"
        batch.append(MessageAppended(message_id=f"m{i}", role=role, content=text(rng)))
        i += 1
        if len(batch) >= 1000:
            await store.append(stream, batch, metadata=META)
            batch = []
    if batch:
        await store.append(stream, batch, metadata=META)


Kind = tuple[str, str | None]
"""(framing counted, format rendered; None: the native body)."""
NATIVE: Kind = ("openai", None)
KINDS: tuple[Kind, ...] = (NATIVE, *((f, f) for f in NAMES), ("anthropic", None))


async def read(svc: Contexts, cid: str, kind: Kind) -> float:
    """Seconds for one window answer's body of ``kind``."""
    framing, fmt = kind
    start = time.perf_counter()
    window = await svc.window(CALLER, cid, max_tokens=BUDGET, format_name=framing)
    encode(render_window(window, fmt))
    return time.perf_counter() - start


async def bench_windows(root: Path, repeats: int, reads: int) -> list[tuple[str, str]]:
    rng = random.Random(7)
    store = await EventStore.open_sqlite(str(root / "formats.db"), synchronous="NORMAL")
    for size in SIZES:
        await fill(store, f"c{size}", size, rng)
    svc = Contexts(store, window_cache=0)
    await svc.start()
    medians: dict[tuple[int, Kind], list[float]] = {}
    try:
        for _ in range(repeats):
            for size in SIZES:
                samples: dict[Kind, list[float]] = {k: [] for k in KINDS}
                for _ in range(reads):
                    for kind in KINDS:
                        samples[kind].append(await read(svc, f"c{size}", kind))
                for kind in KINDS:
                    medians.setdefault((size, kind), []).append(statistics.median(samples[kind]))
    finally:
        await svc.close()
        await store.close()
    rows: list[tuple[str, str]] = []
    for size in SIZES:
        native = statistics.median(medians[size, NATIVE])
        rows.append((f"window, {size:,} messages, native", f"p50 {native * 1000:.2f} ms"))
        for fmt in NAMES:
            took = statistics.median(medians[size, (fmt, fmt)])
            line = f"p50 {took * 1000:.2f} ms, {took / native:.2f}x native"
            if fmt == "anthropic":
                # No framing per message: the same budget holds more messages. Against the
                # native body of that same window, the ratio is what rendering costs.
                same = statistics.median(medians[size, ("anthropic", None)])
                line += f", {took / same:.2f}x the native body of the same window"
            rows.append((f"window, {size:,} messages, format={fmt} (target <= 1.3x)", line))
    return rows


def bench_tokens(repeats: int, messages: int) -> list[tuple[str, str]]:
    texts = corpus(messages)
    counters = {e: TokenCounter(e) for e in ENCODINGS}
    seconds: dict[str, list[float]] = {e: [] for e in ENCODINGS}
    tokens: dict[str, int] = {}
    for _ in range(repeats):
        for encoding in ENCODINGS:  # interleaved, so both see the same machine
            took, tokens[encoding] = run(counters[encoding], texts)
            seconds[encoding].append(took)
    rows = []
    for encoding in ENCODINGS:
        took = statistics.median(seconds[encoding])
        rows.append((
            f"count_message, {encoding} ({messages:,} messages)",
            f"{messages / took:,.0f} messages/s, {tokens[encoding] / took / 1e6:.2f} M tokens/s",
        ))  # fmt: skip
    return rows


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--reads", type=int, default=200, help="reads per sample and kind")
    parser.add_argument("--messages", type=int, default=20_000, help="messages to count")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        rows = await bench_windows(Path(tmp), args.repeats, args.reads)
    rows += bench_tokens(args.repeats, args.messages)
    width = max(len(name) for name, _ in rows)
    print(f"{'measure':<{width}}  result (median of {args.repeats} runs)")
    print("-" * (width + 40))
    for name, value in rows:
        print(f"{name:<{width}}  {value}")


if __name__ == "__main__":
    asyncio.run(main())
