"""The ``ctxlog`` command. Each subcommand is a ``(configure, run)`` pair in ``COMMANDS``, so
later ones (history, replay, audit, verify, export, …) are one function pair each."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence

from aiohttp import web

from .app import create_app
from .settings import Settings, SettingsError

log = logging.getLogger("ctxlog")


def _configure_serve(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", help="address to bind (env CTXLOG_HOST; default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port (env CTXLOG_PORT; default 8080)")
    parser.add_argument(
        "--db", help="SQLite file or postgresql:// DSN (env CTXLOG_DB; default ./ctxlog.db)"
    )
    parser.add_argument(
        "--api-keys-file",
        help="file of key:tenant:actor lines (env CTXLOG_API_KEYS_FILE; keys may also come"
        " from CTXLOG_API_KEYS)",
    )
    parser.add_argument(
        "--max-body-bytes", type=int, help="request body limit (env CTXLOG_MAX_BODY_BYTES)"
    )


def serve(args: argparse.Namespace) -> int:
    """Run the API server until SIGTERM/SIGINT, then shut down cleanly (exit status 0)."""
    try:
        settings = Settings.load(
            host=args.host,
            port=args.port,
            db=args.db,
            api_keys_file=args.api_keys_file,
            max_body_bytes=args.max_body_bytes,
        )
        app = create_app(settings)
    except SettingsError as e:
        print(f"ctxlog serve: {e}", file=sys.stderr)
        return 2
    log.info(
        "ctxlog serving %s on http://%s:%d (%s)",
        settings.db,
        settings.host,
        settings.port,
        "open, no API keys" if settings.open else f"{len(settings.api_keys)} API keys",
    )
    # run_app turns SIGTERM and SIGINT into a graceful shutdown: stop accepting, let in-flight
    # requests finish, run the cleanup contexts (which drain the writer), and return.
    web.run_app(
        app,
        host=settings.host,
        port=settings.port,
        shutdown_timeout=settings.shutdown_timeout,
        print=None,
        access_log=None,
    )
    log.info("ctxlog stopped")
    return 0


Configure = Callable[[argparse.ArgumentParser], None]
Run = Callable[[argparse.Namespace], int]

COMMANDS: dict[str, tuple[str, Configure, Run]] = {
    "serve": ("run the HTTP API server", _configure_serve, serve),
}


def parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    top = argparse.ArgumentParser(prog="ctxlog", description="An event-sourced context log.")
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (help_text, configure, run) in COMMANDS.items():
        command = sub.add_parser(name, help=help_text, description=help_text)
        configure(command)
        command.set_defaults(run=run)
    return top


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``ctxlog`` console script."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    args = parser().parse_args(argv)
    return int(args.run(args))


if __name__ == "__main__":
    sys.exit(main())
