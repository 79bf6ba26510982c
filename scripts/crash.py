#!/usr/bin/env python3
"""Crash cycles against the real server (``tests/support/crash_cycles.py`` says what each checks):
SIGKILL ``ctxlog serve`` at random moments under concurrent writes, restart it on the same
file, and check that nothing answered 2xx is lost or doubled, the log is gap-free and its hash
chain verifies, the read model equals a fresh fold, and idempotent retries replay.

Usage: .venv/bin/python scripts/crash.py [--cycles 20] [--writers 16] [--contexts 8] [--seed N]
Prints a summary; exit status 1 if any check failed.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: make the repository importable
    sys.path.insert(0, str(ROOT))

from tests.support.crash_cycles import run  # noqa: E402


def main() -> int:
    """Run the cycles in a temporary directory and print the summary."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cycles", type=int, default=20)
    parser.add_argument("--writers", type=int, default=16)
    parser.add_argument("--contexts", type=int, default=8)
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    print(f"crash.py: {args.cycles} cycles, {args.writers} writers, seed {seed}")
    with tempfile.TemporaryDirectory(prefix="ctxlog-crash-") as tmp:
        report = asyncio.run(
            run(
                Path(tmp) / "crash.db",
                cycles=args.cycles,
                writers=args.writers,
                contexts=args.contexts,
                seed=seed,
            )
        )
    print(report.summary())
    return 1 if report.failures else 0


if __name__ == "__main__":
    sys.exit(main())
