"""The ``ctxlog`` group (click) with ``serve`` and ``mcp``; the audit and operations commands
join it from ``inspect`` (history, replay, show), ``audit`` (audit, stats), ``ops`` (verify,
export, import, backup, rebuild, erase) and ``copy``."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any

import click
from aiohttp import web

from eventstore.files import exposure

from ..config import masked
from .audit import audit, stats
from .config import config, resolve_flags, settings_options
from .copy import copy
from .inspect import history, replay, show
from .ops import backup, erase, export, import_, rebuild, verify
from .retention import retention
from .support import EXIT_CODES, CliError, Exit

log = logging.getLogger("ctxlog")

ALLOW_OPEN_HELP = (
    "Serve without API keys even though the database holds tenants' data: every caller then"
    " sees every tenant's (env CTXLOG_ALLOW_OPEN_WITH_TENANTS=1)."
)


@click.group(
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    epilog=EXIT_CODES,
)
@click.version_option(package_name="ctxlog", prog_name="ctxlog", message="%(prog)s %(version)s")
def cli() -> None:
    """ctxlog: an event-sourced context log for AI applications.

    Every command takes --db PATH (a SQLite file or a postgresql:// DSN; env CTXLOG_DB,
    default ./ctxlog.db). Commands that read refuse a database that does not exist rather
    than create an empty one. --format json|ndjson prints for scripts.
    """


@cli.command(
    epilog="\b\nExit codes:\n  0  stopped cleanly (SIGTERM/SIGINT)\n  2  bad settings",
    short_help="Run the HTTP API server.",
)
@settings_options
def serve(config: str | None, **flags: Any) -> None:
    """Run the HTTP API server until SIGTERM/SIGINT, then shut down cleanly.

    Every setting is a flag, a CTXLOG_* variable and a key of the --config file (precedence
    in that order); `ctxlog config` prints what they add up to."""
    # Imported here: the other commands need neither aiohttp's app nor its settings checks.
    from ..app import create_app  # noqa: PLC0415
    from ..logs import setup_logging  # noqa: PLC0415
    from ..settings import SettingsError  # noqa: PLC0415

    settings = resolve_flags(config, flags).settings
    setup_logging(settings.log_format, settings.log_level)
    try:
        app = create_app(settings)
    except SettingsError as e:
        raise CliError(Exit.USAGE, str(e)) from None
    if (warning := exposure(settings.db)) is not None:
        log.warning(warning)
    log.info(
        "ctxlog serving %s on http://%s:%d (%s)",
        masked("db", settings.db),
        settings.host,
        settings.port,
        "open, no API keys" if settings.open else f"{len(settings.api_keys)} API keys",
    )
    # run_app turns SIGTERM and SIGINT into a graceful shutdown: stop accepting, let in-flight
    # requests finish, run the cleanup contexts (which drain the writer), and return.
    try:
        web.run_app(
            app,
            host=settings.host,
            port=settings.port,
            shutdown_timeout=settings.shutdown_timeout,
            print=None,
            access_log=None,
        )
    except SettingsError as e:  # found at startup: an open server on tenants' data
        raise CliError(Exit.USAGE, str(e)) from None
    log.info("ctxlog stopped")


@cli.command(
    epilog="\b\nExit codes:\n  0  stdin closed\n  2  bad settings\n  5  unavailable",
    short_help="Serve MCP over stdin/stdout.",
)
@click.option("--db", help="SQLite file or postgresql:// DSN (env CTXLOG_DB; default ./ctxlog.db).")
@click.option(
    "--allow-open-with-tenants",
    is_flag=True,
    default=None,
    help=ALLOW_OPEN_HELP,
)
def mcp(db: str | None, allow_open_with_tenants: bool | None) -> None:
    """Serve the Model Context Protocol over stdin/stdout (for MCP clients that start
    ctxlog themselves); the API key comes from CTXLOG_API_KEY."""
    try:
        # Imported when asked for: the MCP server is a separate part of the API.
        from ..mcp.stdio import run_stdio  # noqa: PLC0415
    except ImportError as e:
        raise CliError(Exit.UNAVAILABLE, f"the MCP server is not available: {e}") from None
    raise click.exceptions.Exit(run_stdio(db, allow_open_with_tenants=allow_open_with_tenants))


for command in (
    history, replay, show, audit, verify, export, import_, copy, backup, rebuild, stats,
):  # fmt: skip
    cli.add_command(command)
cli.add_command(erase)
cli.add_command(config)
cli.add_command(retention)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``ctxlog`` console script (and ``python -m api``); returns the exit
    status."""
    # Owner-only whatever this process creates (the files ctxlog writes are made 0600 anyway;
    # this covers the rest, SQLite's temporary files among them): it holds keys and content.
    os.umask(0o077)
    try:
        cli.main(args=None if argv is None else list(argv), prog_name="ctxlog")
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
