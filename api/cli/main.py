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
from .listen import listen
from .loop import new_loop
from .ops import backup, erase, export, import_, rebuild, verify
from .retention import retention
from .support import EXIT_CODES, CliError, Exit, check_sqlite_path, is_postgres, translated

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
    epilog="\b\nExit codes:\n  0  stopped cleanly (SIGTERM/SIGINT)\n  2  bad settings (also a"
    " --host that does not resolve)\n  5  cannot listen on --host/--port (in use, not allowed)",
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
    if settings.db != ":memory:" and not is_postgres(settings.db):
        check_sqlite_path(settings.db, must_exist=False)  # a missing directory, a foreign file
    try:
        loop, loop_name = new_loop(settings.loop)
    except SettingsError as e:
        raise CliError(Exit.USAGE, str(e)) from None
    # Before the database is opened: a port in use ends here, with nothing touched.
    try:
        sockets = listen(settings.host, settings.port)
    except CliError:
        loop.close()
        raise
    if (warning := exposure(settings.db)) is not None:
        log.warning(warning)
    log.info(
        "ctxlog serving %s on http://%s:%d (%s, %s)",
        masked("db", settings.db),
        settings.host,
        sockets[0].getsockname()[1],
        "open, no API keys" if settings.open else f"{len(settings.api_keys)} API keys",
        loop_name,
    )
    # run_app turns SIGTERM and SIGINT into a graceful shutdown: stop accepting, let in-flight
    # requests finish, run the cleanup contexts (which drain the writer), and return.
    try:
        web.run_app(
            app,
            sock=sockets,
            loop=loop,
            shutdown_timeout=settings.shutdown_timeout,
            print=None,
            access_log=None,
        )
    except SettingsError as e:  # found at startup: an open server on tenants' data
        raise CliError(Exit.USAGE, str(e)) from None
    except Exception as e:  # at startup: a database that cannot be opened, among others
        raise translated(e) from e
    log.info("ctxlog stopped")


@cli.command(
    epilog="\b\nExit codes:\n  0  stdin closed\n  2  bad settings\n  3  no database at --db"
    " (see --create)\n  4  database from a newer ctxlog\n  5  unavailable",
    short_help="Serve MCP over stdin/stdout.",
)
@click.option("--db", help="SQLite file or postgresql:// DSN (env CTXLOG_DB; default ./ctxlog.db).")
@click.option(
    "--create",
    is_flag=True,
    help="Create the SQLite database if it does not exist (else exit 3, as a mistyped path).",
)
@click.option(
    "--allow-open-with-tenants",
    is_flag=True,
    default=None,
    help=ALLOW_OPEN_HELP,
)
def mcp(db: str | None, create: bool, allow_open_with_tenants: bool | None) -> None:
    """Serve the Model Context Protocol over stdin/stdout (for MCP clients that start
    ctxlog themselves); the API key comes from CTXLOG_API_KEY. Like the other commands it
    refuses a database that does not exist (a mistyped --db would be served empty);
    --create makes a new one."""
    from ..config import load_settings  # noqa: PLC0415
    from ..settings import SettingsError  # noqa: PLC0415

    try:
        # Imported when asked for: the MCP server is a separate part of the API.
        from ..mcp.stdio import run_stdio  # noqa: PLC0415
    except ImportError as e:
        raise CliError(Exit.UNAVAILABLE, f"the MCP server is not available: {e}") from None
    try:
        path = load_settings(db=db).db  # as run_stdio resolves it: flag, CTXLOG_DB, config
    except SettingsError as e:
        raise CliError(Exit.USAGE, str(e)) from None
    if not is_postgres(path):
        check_sqlite_path(path, must_exist=not create)
    try:
        status = run_stdio(path, allow_open_with_tenants=allow_open_with_tenants)
    except Exception as e:  # a database that cannot be opened, among others
        raise translated(e) from e
    raise click.exceptions.Exit(status)


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
