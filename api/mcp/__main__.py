"""``python -m api.mcp [--db PATH]``: the MCP server over stdio (see ``stdio.py``)."""

from __future__ import annotations

import argparse
import os
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
    parser.add_argument(
        "--allow-open-with-tenants",
        action="store_true",
        default=None,
        help="serve without API keys even though the database holds tenants' data"
        " (env CTXLOG_ALLOW_OPEN_WITH_TENANTS=1)",
    )
    args = parser.parse_args(argv)
    os.umask(0o077)  # as the ctxlog command: whatever it creates is the owner's alone
    return run_stdio(args.db, allow_open_with_tenants=args.allow_open_with_tenants)


if __name__ == "__main__":
    sys.exit(main())
