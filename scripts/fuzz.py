#!/usr/bin/env python3
"""A longer schemathesis run than CI's: the same test (``tests/test_rest_fuzz.py``: requests
generated from the OpenAPI document against a real ``ctxlog serve``, no 5xx, every answer as
documented, invalid data refused) with many more examples per operation and fresh random
ones each run, then the check that every documented status is reachable
(``tests/test_rest_statuses.py``).

Usage: .venv/bin/python scripts/fuzz.py [--examples 1000] [-- extra pytest args]
Exit status: pytest's (0 when everything held).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    """Run the fuzz tests with ``--examples`` examples per operation; print what ran."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=1000)
    parser.add_argument("pytest_args", nargs="*")
    args = parser.parse_args()
    env = {**os.environ, "CTXLOG_FUZZ_EXAMPLES": str(args.examples)}
    command = [
        sys.executable, "-m", "pytest", "tests/test_rest_fuzz.py", "tests/test_rest_statuses.py",
        "-q", "-p", "no:cacheprovider", *args.pytest_args,
    ]  # fmt: skip
    print(f"fuzz.py: up to {args.examples} examples per operation (random seed each run)")
    started = time.monotonic()
    code = subprocess.call(command, cwd=ROOT, env=env)
    print(f"fuzz.py: pytest exited {code} after {time.monotonic() - started:.0f} s")
    return code


if __name__ == "__main__":
    sys.exit(main())
