"""``python -m api.mcp [--db PATH] [--create] [--allow-open-with-tenants]``: the MCP server
over stdio (see ``stdio.py``), exactly as ``ctxlog mcp``: the same options, checks of the
database, messages and exit statuses."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    """Run ``ctxlog mcp`` with ``argv`` (default: this process's arguments)."""
    # Imported here: the command line imports this package's server when it is asked for.
    from ..cli import main as ctxlog  # noqa: PLC0415

    return ctxlog(["mcp", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
