"""What every ``ctxlog`` command shares: exit codes, the ``--db`` and ``--format`` options,
opening the database, and turning the layers' errors into one line and an exit code."""

from __future__ import annotations

import asyncio
import contextlib
import enum
import os
import sys
from collections.abc import AsyncIterator, Callable, Coroutine
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import click

import eventstore as es
import projections as pj
from eventstore.backup import check_log_file
from eventstore.continuity import ChainBroken
from eventstore.transfer import BadExport, PartialExport, TargetNotEmpty

from ..settings import DEFAULT_DB

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])


class Exit(enum.IntEnum):
    """The exit statuses scripts can rely on (also in ``ctxlog --help``)."""

    OK = 0
    FAILED = 1
    """Verification failed: a broken hash chain, a read model that differs from the fold or
    cannot be read (damaged), a tampered, truncated or unreadable export or row (the
    position is named)."""
    USAGE = 2
    """Bad arguments, options or settings (an ambiguous context id prefix among them)."""
    NOT_FOUND = 3
    """No such database, directory, context, version or input file; a context asked for as
    of a time before it was created; a subject to erase that only other tenants hold."""
    SCHEMA_TOO_NEW = 4
    """The database (or an event in it) was written by a newer ctxlog."""
    UNAVAILABLE = 5
    """The database cannot be used (an I/O error, locked too long, not a ctxlog database, in a
    directory that is not writable), or ``serve`` cannot listen on its address."""
    REFUSED = 6
    """The command would mix or overwrite data: an import into a database that holds
    events, an import of a partial export, a backup onto an existing file."""
    INTERNAL = 70
    """A bug in ctxlog (please report it)."""
    INTERRUPTED = 130
    """Stopped by Ctrl-C (``replay --follow`` ends with 0 instead)."""
    BROKEN_PIPE = 141
    """Whoever read the output stopped reading (``| head``), as a shell reports SIGPIPE."""


EXIT_CODES = """\b
Exit codes:
  0    ok
  1    verification failed (broken hash chain, read model differs from the fold
       or is damaged, tampered or truncated export); the first bad position is named
  2    usage error (bad arguments, options or settings; an id prefix
       that starts several contexts' ids)
  3    not found (database, directory, context, version, input file; a
       context before it was created; a subject to erase only other
       tenants hold)
  4    database written by a newer ctxlog (schema too new)
  5    unavailable (database: I/O error, locked, not a ctxlog database,
       directory not writable; serve: cannot listen on the address)
  6    refused (import into a non-empty database or of a partial export,
       backup onto an existing file)
  70   internal error
  130  interrupted (Ctrl-C)
  141  output closed early (| head)"""


class CliError(click.ClickException):
    """An error shown as one line on stderr, ending the command with ``code``."""

    def __init__(self, code: Exit, message: str) -> None:
        super().__init__(message)
        # click reads exit_code from the instance (ClickException.exit is per instance too);
        # its stubs declare it a class variable only because most subclasses fix one code.
        self.exit_code = int(code)  # type: ignore[misc]


def failure(e: BaseException) -> CliError | None:
    """The exit code and message for an error of the layers below, or None for a bug."""
    match e:
        case CliError():
            return e
        case ChainBroken() | es.CorruptEvent() | BadExport():
            return CliError(Exit.FAILED, str(e))
        case es.UnknownEventType():
            return CliError(Exit.SCHEMA_TOO_NEW, f"{e}: written by a newer ctxlog?")
        case es.SchemaTooNew():
            return CliError(Exit.SCHEMA_TOO_NEW, str(e))
        case TargetNotEmpty() | PartialExport() | FileExistsError() | pj.ReadModelInUse():
            return CliError(Exit.REFUSED, str(e))
        case pj.ProjectorElsewhere():
            return CliError(Exit.REFUSED, str(e))
        case pj.ContextNotFound() | pj.ContextIsDeleted() | pj.InvalidVersion():
            return CliError(Exit.NOT_FOUND, str(e))
        case es.InvalidStreamId():  # no context can have such an id
            return CliError(Exit.NOT_FOUND, f"context not found: {e}")
        case FileNotFoundError():
            return CliError(Exit.NOT_FOUND, f"{e.strerror or 'not found'}: {e.filename or e}")
        case es.InvalidEvent() | pj.InvalidCommand():
            return CliError(Exit.USAGE, str(e))
        case pj.UnknownModel() | pj.EncodingUnavailable():
            return CliError(Exit.USAGE, str(e))
        case es.StoreUnavailable() | es.StoreClosed() | es.EventStoreError() | OSError():
            return CliError(Exit.UNAVAILABLE, str(e))
        case pj.ProjectionError():
            return CliError(Exit.UNAVAILABLE, str(e))
    return None


def translated(e: Exception) -> CliError:
    """The CliError for any error: the layers' with their exit code, a bug's as internal."""
    return failure(e) or CliError(Exit.INTERNAL, f"internal error: {type(e).__name__}: {e}")


def run(main: Coroutine[Any, Any, T], *, interrupt_ok: bool = False) -> T:
    """Run a command's coroutine; errors of the layers below end it with their exit code."""
    try:
        return asyncio.run(main)
    except KeyboardInterrupt:
        if interrupt_ok:
            raise click.exceptions.Exit(Exit.OK) from None
        raise CliError(Exit.INTERRUPTED, "interrupted") from None
    except BrokenPipeError:
        # The reader went away (| head): end quietly, as a shell would on SIGPIPE, and keep
        # the interpreter's final flush of stdout from failing again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise click.exceptions.Exit(Exit.BROKEN_PIPE) from None
    except Exception as e:
        raise translated(e) from e


def is_postgres(db: str) -> bool:
    """Whether ``db`` is a PostgreSQL DSN rather than a SQLite file."""
    return db.startswith(("postgres://", "postgresql://"))


def readmodel_path(db: str) -> str | None:
    """Where the server keeps the read model of ``db``: beside a SQLite file; None for
    PostgreSQL, whose nodes share one in the schema beside the log's (``pgreadmodel``)."""
    return None if is_postgres(db) else f"{db}.readmodel"


def check_sqlite_path(db: str, *, must_exist: bool) -> None:
    """Refuse ``:memory:`` (a command's own database would be empty); for commands that
    read, a file that does not exist or is empty (opening it would create the log's tables);
    for those that may create one, a directory that does not exist; and a file that is not a
    ctxlog log (opening it would add the log's tables to it)."""
    if db == ":memory:" or db.startswith("file:"):
        raise CliError(Exit.USAGE, f"give the database as a file path, not {db!r}")
    if must_exist and not Path(db).is_file():
        raise CliError(Exit.NOT_FOUND, f"no database at {db} (give --db PATH or set CTXLOG_DB)")
    if must_exist and Path(db).stat().st_size == 0:
        # SQLite takes an empty file for an empty database: reading it would write the
        # log's tables into whatever file was named.
        raise CliError(Exit.NOT_FOUND, f"{db} is empty (0 bytes): there is no ctxlog log in it")
    if Path(db).is_dir():
        raise CliError(Exit.USAGE, f"{db} is a directory: give the database file in it")
    parent = Path(db).parent
    if not Path(db).exists():
        if not parent.is_dir():
            raise CliError(Exit.NOT_FOUND, f"no directory {parent} for a new database {db}")
        if not os.access(parent, os.W_OK):
            raise CliError(Exit.UNAVAILABLE, f"cannot create {db}: {parent} is not writable")
    if Path(db).is_file() and Path(db).stat().st_size > 0:
        try:
            check_log_file(db)
        except (es.EventStoreError, OSError) as e:
            error = failure(e) or CliError(Exit.UNAVAILABLE, str(e))
            if not os.access(parent, os.W_OK):  # SQLite says "unable to open database file"
                error = CliError(
                    Exit(error.exit_code),
                    f"{error.message} ({parent} is not writable, and SQLite keeps its -wal and"
                    " -shm files beside the database)",
                )
            raise error from e


def check_output(path: str) -> None:
    """Refuse to start work whose output ``path`` cannot be written: in a directory that
    does not exist (it would fail at the end, naming a temporary file)."""
    parent = Path(path).parent
    if not parent.is_dir():
        raise CliError(Exit.NOT_FOUND, f"no directory {parent} for {path}")
    if Path(path).is_dir():
        raise CliError(Exit.USAGE, f"{path} is a directory: give a file name in it")


@contextlib.asynccontextmanager
async def open_store(db: str, *, must_exist: bool = True) -> AsyncIterator[es.EventStore]:
    """The event store at ``db`` (a SQLite file or a ``postgresql://`` DSN), closed after."""
    if not is_postgres(db):
        check_sqlite_path(db, must_exist=must_exist)
    store = await es.EventStore.open_url(db)
    try:
        yield store
    finally:
        await store.close()


@contextlib.asynccontextmanager
async def shared_readmodel(store: es.EventStore) -> AsyncIterator[tuple[Any, bool]]:
    """The read model the nodes of a PostgreSQL log share, attached as it is (nothing is
    created, changed or emptied), and whether it exists; closed after."""
    from projections.pgreadmodel import PgReadModel, schema_of  # noqa: PLC0415 (postgres extra)

    recorder: Any = store.recorder
    model = PgReadModel(recorder.dsn, schema_of(recorder.schema), readers=1)
    try:
        yield model, await model.attach()
    finally:
        await model.close()


MIN_PREFIX = 4
"""The fewest first characters of a context id that a command takes for the id (as git)."""
_SHOWN = 5


async def resolve_context(store: es.EventStore, given: str) -> str:
    """The context ``given`` names: that id, else the one context whose id starts with it (at
    least MIN_PREFIX characters); CliError (usage) when several do. Otherwise ``given``, for
    the command to find missing."""
    if len(given) < MIN_PREFIX or await store.stream_version(given) > 0:
        return given
    found = await store.streams_starting_with(given, limit=_SHOWN + 1)
    if len(found) == 1:
        return found[0]
    if found:
        count = f"{_SHOWN} or more" if len(found) > _SHOWN else f"{len(found)}"
        listed = ", ".join(found[:_SHOWN]) + (", …" if len(found) > _SHOWN else "")
        raise CliError(
            Exit.USAGE,
            f"{given!r} is ambiguous: the ids of {count} contexts start with it ({listed});"
            " give more of the id",
        )
    return given


def db_option(fn: F) -> F:
    """``--db PATH``: as for ``serve``, env CTXLOG_DB, else ./ctxlog.db."""
    return click.option(
        "--db",
        metavar="PATH",
        envvar="CTXLOG_DB",
        default=DEFAULT_DB,
        show_default=True,
        help="SQLite file or postgresql:// DSN (env CTXLOG_DB).",
    )(fn)


def format_option(fn: F) -> F:
    """``--format text|json|ndjson``."""
    return click.option(
        "--format",
        "fmt",
        type=click.Choice(["text", "json", "ndjson"]),
        default="text",
        show_default=True,
        help="text for people (tables, colours on a terminal); json or ndjson for scripts.",
    )(fn)


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


class TimeParam(click.ParamType[datetime, Any]):
    """A point in time: ISO 8601 (``2026-05-01``, ``2026-05-01T12:00:00Z``; UTC unless an
    offset is given) or a time ago (``90s``, ``15m``, ``2h``, ``7d``, ``1w``)."""

    name = "TIME"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> datetime:
        """The value as an aware datetime."""
        if isinstance(value, datetime):
            return value
        text = str(value).strip()
        unit = _UNITS.get(text[-1:].lower())
        if unit is not None and text[:-1].isdigit():
            return datetime.now(UTC) - timedelta(seconds=int(text[:-1]) * unit)
        try:
            at = datetime.fromisoformat(text)
        except ValueError:
            self.fail(f"{text!r} is neither ISO 8601 nor a time ago like 15m, 2h, 7d", param, ctx)
        return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


TIME = TimeParam()
