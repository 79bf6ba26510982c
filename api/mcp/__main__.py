"""``python -m api.mcp [--db PATH]``: the MCP server over stdio (see ``stdio.py``)."""

from __future__ import annotations

import argparse
import sys

from .stdio import run_stdio


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and serve until stdin closes."""
    parser = argparse.ArgumentParser(
        prog="python -m api.mcp",
        description="Serve ctxlog over the Model Context Protocol on stdin/stdout.",
    )
    parser.add_argument(
        "--db", help="SQLite file or postgresql:// DSN (env CTXLOG_DB; default ./ctxlog.db)"
    )
    args = parser.parse_args(argv)
    return run_stdio(args.db)


if __name__ == "__main__":
    sys.exit(main())
