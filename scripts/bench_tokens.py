"""Benchmark token counting: cl100k_base and o200k_base in the same run, same texts.

    .venv/bin/python scripts/bench_tokens.py [--messages 20000] [--repeats 5]

Counts a fixed corpus of chat messages (English prose, code, and some text in other
scripts, as in ``tests/test_projections_tokens.py``) with ``TokenCounter.count_message``, the
call the projector makes on every append and a window makes when it recounts. Prints one
table; every figure is the median over ``--repeats`` runs. Loading an encoding is timed in a
fresh interpreter each run (it happens once per process).
"""

from __future__ import annotations

import argparse
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

from projections import TokenCounter

ROOT = Path(__file__).resolve().parent.parent
ENCODINGS = ("cl100k_base", "o200k_base")
PROSE = (
    "the quick brown fox jumps over the lazy dog and keeps running far away while the "
    "quarterly report shows unexpected changes in operating expenses compared with last year"
)
CODE = "def fold(events):\n    return reduce(evolve, events, None)  # O(events)\n"
OTHER = ("naïve café", "東京タワーは日本の電波塔です", "مرحبا بالعالم", "Привет, мир", "🚀✨")


def corpus(messages: int) -> list[tuple[str, str]]:
    """(role, content) pairs: mostly prose, one in 10 code, one in 10 another script."""
    rng = random.Random(5)
    words = PROSE.split()
    out = []
    for i in range(messages):
        text = " ".join(rng.choices(words, k=rng.randint(5, 60)))
        if i % 10 == 3:
            text += "\n" + CODE * rng.randint(1, 4)
        elif i % 10 == 7:
            text += " " + " ".join(rng.choices(OTHER, k=rng.randint(1, 6)))
        out.append(("user" if i % 2 else "assistant", text))
    return out


def run(counter: TokenCounter, texts: list[tuple[str, str]]) -> tuple[float, int]:
    """Seconds to count every message, and the tokens counted."""
    start = time.perf_counter()
    tokens = sum(counter.count_message(role, content) for role, content in texts)
    return time.perf_counter() - start, tokens


def load_seconds(encoding: str) -> float:
    """Seconds a fresh interpreter takes to load ``encoding`` (imports excluded)."""
    code = (
        "import time; from projections.tokens import load_encoding; "
        f"t = time.perf_counter(); load_encoding({encoding!r}); "
        "print(time.perf_counter() - t)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    return float(done.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    texts = corpus(args.messages)
    size = sum(len(c.encode()) for _, c in texts)
    rows: list[tuple[str, str]] = []
    counters = {e: TokenCounter(e) for e in ENCODINGS}
    seconds: dict[str, list[float]] = {e: [] for e in ENCODINGS}
    tokens: dict[str, int] = {}
    for _ in range(args.repeats):
        for encoding in ENCODINGS:  # interleaved, so both see the same machine
            took, tokens[encoding] = run(counters[encoding], texts)
            seconds[encoding].append(took)
    for encoding in ENCODINGS:
        took = statistics.median(seconds[encoding])
        rows.append((
            f"count_message, {encoding} ({args.messages:,} messages, {size / 1e6:.1f} MB)",
            f"{args.messages / took:,.0f} messages/s, {tokens[encoding] / took / 1e6:.2f} M "
            f"tokens/s, {size / took / 1e6:.1f} MB/s ({tokens[encoding]:,} tokens)",
        ))  # fmt: skip
    for encoding in ENCODINGS:
        loads = [load_seconds(encoding) for _ in range(args.repeats)]
        rows.append((f"load {encoding} (fresh process)", f"{statistics.median(loads):.2f} s"))
    width = max(len(name) for name, _ in rows)
    print(f"{'measure':<{width}}  result (median of {args.repeats} runs)")
    print("-" * (width + 40))
    for name, value in rows:
        print(f"{name:<{width}}  {value}")


if __name__ == "__main__":
    main()
