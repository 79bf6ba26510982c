"""``ctxlog copy``: move a whole log to another database, SQLite and PostgreSQL either way,
every row as it is (positions, ids, times, hashes) with the data subjects' keys.

It is an export piped into an import (``eventstore.transfer``), so the copy is checked as an
import is: the hash chain, gap-free positions, every event readable, before anything is
written; then the target's head hash must equal the source's."""

from __future__ import annotations

import tempfile
from pathlib import Path

import click
import msgspec

from eventstore.transfer import TargetNotEmpty, export_log, import_log
from projections.openmarks import remove_files

from ..config import masked
from .output import Output
from .support import (
    EXIT_CODES,
    CliError,
    Exit,
    format_option,
    is_postgres,
    open_store,
    readmodel_path,
    run,
)


class Copied(msgspec.Struct, frozen=True):
    """What ``ctxlog copy`` stored: events, subject keys, the head position and its hash."""

    events: int
    keys: int
    through: int
    head_hash: str


@click.command("copy", epilog=EXIT_CODES, short_help="Copy a whole log into an empty database.")
@click.argument("source")
@click.argument("target")
@format_option
def copy(source: str, target: str, fmt: str) -> None:
    """Copy the whole log of SOURCE into TARGET, an empty database (a SQLite file, created if
    missing, or a postgresql:// DSN; ?schema=NAME picks the schema): every position, version,
    id, timestamp and hash, and every data subject's key. A TARGET that holds anything is
    refused before anything is read. Stop the servers writing to SOURCE first: events written
    after the copy begins are not in it.

    The rows pass through a private temporary file (about the size of an export), checked
    whole before the first row is written; `ctxlog verify --db TARGET` passes on the copy."""
    created = not is_postgres(target) and not Path(target).exists()
    try:
        run(_copy(source, target, Output(fmt)))
    except BaseException:
        if created:  # leave no empty database behind for a refused copy
            remove_files(target)
        raise


async def _copy(source: str, target: str, out: Output) -> None:
    async with open_store(source) as src, open_store(target, must_exist=False) as dst:
        if (await dst.recorder.head())[0] != 0 or await dst.recorder.read_keys("", 1):
            raise TargetNotEmpty(f"{_name(target)} is not empty: copy into an empty database")
        if (found := readmodel_path(target)) is not None:
            remove_files(found)  # one of an earlier log would be taken as this one's
        # Owner-only and already unlinked: it carries the subject keys.
        with tempfile.TemporaryFile() as spool, out.progress("export", "check", "import") as (
            exported, checked, imported,
        ):  # fmt: skip
            sent = await export_log(src, spool, progress=exported)
            spool.seek(0)
            done = await import_log(dst, spool, checked=checked, imported=imported)
    if done.head_hash != sent.head_hash or done.through != sent.through:
        raise CliError(
            Exit.FAILED,
            f"the copy ends at position {done.through} ({done.head_hash}), the source at"
            f" {sent.through} ({sent.head_hash})",
        )
    copied = Copied(done.events, done.keys, done.through, done.head_hash)
    if out.text:
        out.print(
            f"copied {copied.events:,} events and {copied.keys:,} subject keys;"
            f" head {copied.head_hash}",
            style="green",
        )
    else:
        out.document(msgspec.to_builtins(copied))


def _name(db: str) -> str:
    """A database as it may be printed: a DSN without its password."""
    return str(masked("db", db))
