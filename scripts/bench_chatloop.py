"""Benchmark one turn of the chat loop through the service, with and without a precondition.

    .venv/bin/python scripts/bench_chatloop.py [--turns 300] [--repeats 5]

A turn: append the user's message, serve the window and record it, append the reply — with
``expected_version`` set to the window's version (what If-Match does), and, as the reference
measured in the same run, without one. Each figure is the median over ``--repeats`` runs of
the mean turn in a fresh context on a SQLite file (in a temporary directory).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from eventstore import EventStore
from projections import Caller, Contexts, NewMessage

CALLER = Caller(tenant="bench", actor="bench")


async def _turns(service: Contexts, turns: int, *, precondition: bool) -> float:
    """Seconds per turn, on average, over ``turns`` turns in a new context."""
    cid = (await service.create(CALLER)).context_id
    start = time.perf_counter()
    for turn in range(turns):
        await service.append(CALLER, cid, [NewMessage(role="user", content=f"question {turn}")])
        shown = await service.window(CALLER, cid, max_tokens=2000, record=True)
        reply = [NewMessage(role="assistant", content=f"answer {turn}")]
        expected = shown.version if precondition else None
        await service.append(CALLER, cid, reply, expected_version=expected)
    return (time.perf_counter() - start) / turns


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--turns", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        store = await EventStore.open_sqlite(str(Path(tmp) / "bench.db"))
        service = Contexts(store)
        await service.start()
        try:
            await _turns(service, 20, precondition=True)  # warm up
            with_if_match, without = [], []
            for _ in range(args.repeats):  # interleaved, so drift hits both alike
                with_if_match.append(await _turns(service, args.turns, precondition=True))
                without.append(await _turns(service, args.turns, precondition=False))
        finally:
            await service.close()
            await store.close()
    a, b = statistics.median(with_if_match), statistics.median(without)
    print(f"chat loop turn, {args.turns} turns x {args.repeats} repeats (median of means)")
    print(f"  with If-Match (expected_version)  {a * 1000:8.3f} ms")
    print(f"  without a precondition            {b * 1000:8.3f} ms")
    print(f"  ratio                             {a / b:8.2f}x")


if __name__ == "__main__":
    asyncio.run(main())
