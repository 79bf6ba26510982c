"""A consistent copy of a SQLite log while a server keeps writing to it.

SQLite's online backup API copies pages a step at a time; a write by another connection
between steps makes it start over, so against a busy server it may never finish. Holding a
read transaction on the source connection for the whole copy pins one WAL snapshot: every
step reads that snapshot, the copy is the log exactly as of one commit, and writers go on
(the WAL only grows until the copy is done). The copy is written beside the destination and
renamed into place once complete, so a failed backup never leaves a half-written file there.

The read model (``<db>.readmodel``) is not copied: it is derived, and rebuilds from the log.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
from pathlib import Path
from urllib.parse import quote

import msgspec

from .errors import SchemaTooNew, StoreUnavailable
from .files import create_private
from .recorder import Progress
from .sqlite_schema import SCHEMA_VERSION

SELECT_HEAD = "SELECT position FROM events ORDER BY position DESC LIMIT 1"
HAS_EVENTS = "SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = 'events'"


class BackupResult(msgspec.Struct, frozen=True):
    """A finished copy: the last position it holds, and its size."""

    through: int
    pages: int
    bytes: int


async def backup_sqlite(
    source: str, dest: str, *, progress: Progress | None = None, pages_per_step: int = 128
) -> BackupResult:
    """Copy the SQLite log at ``source`` to the new file ``dest`` as of one moment.

    FileExistsError if ``dest`` exists, FileNotFoundError if ``source`` does not,
    SchemaTooNew for a log of a newer ctxlog, StoreUnavailable for anything SQLite refuses.
    ``progress`` is called with (pages copied, pages in all), from a worker thread.
    """
    return await asyncio.to_thread(_backup, source, dest, progress, pages_per_step)


def check_log_file(path: str) -> None:
    """Raise unless ``path`` is a SQLite log this ctxlog can open, without creating or
    changing anything: FileNotFoundError, SchemaTooNew, or StoreUnavailable (not SQLite, or
    a SQLite database of something else, which opening would add ctxlog's tables to)."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"no database at {path}")
    try:
        conn = _connect(path)
        try:
            _check_log(conn, path)
        finally:
            conn.close()
    except sqlite3.Error as e:
        raise StoreUnavailable(f"{path}: {e}") from e


def _connect(path: str) -> sqlite3.Connection:
    # mode=rw: never create the file; query_only: this connection only ever reads.
    conn = sqlite3.connect(f"file:{quote(path)}?mode=rw", uri=True, isolation_level=None)
    conn.execute("PRAGMA busy_timeout = 5000")
    conn.execute("PRAGMA query_only = 1")
    return conn


def _check_log(conn: sqlite3.Connection, path: str) -> None:
    found = conn.execute("PRAGMA user_version").fetchone()[0]
    if found > SCHEMA_VERSION:
        raise SchemaTooNew(found, SCHEMA_VERSION)
    if conn.execute(HAS_EVENTS).fetchone() is None:
        raise StoreUnavailable(f"{path} is not a ctxlog database")


def _backup(source: str, dest: str, progress: Progress | None, step: int) -> BackupResult:
    if Path(dest).exists():
        raise FileExistsError(f"{dest} already exists")
    if not Path(source).is_file():
        raise FileNotFoundError(f"no database at {source}")
    partial = f"{dest}.partial"
    with contextlib.suppress(FileNotFoundError):
        os.remove(partial)  # left by a backup that was killed
    try:
        src = _connect(source)
        try:
            _check_log(src, source)
            src.execute("BEGIN")
            head = src.execute(SELECT_HEAD).fetchone()  # the first read pins the snapshot
            create_private(partial)  # the copy holds the subject keys too
            dst = sqlite3.connect(partial)
            try:

                def report(status: int, remaining: int, total: int) -> None:
                    if progress is not None:
                        progress(total - remaining, total)

                src.backup(dst, pages=step, progress=report)
                pages = dst.execute("PRAGMA page_count").fetchone()[0]
            finally:
                dst.close()
            src.execute("COMMIT")
        finally:
            src.close()
        with open(partial, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(partial, dest)
    except sqlite3.Error as e:
        raise StoreUnavailable(f"backup failed: {e}") from e
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.remove(partial)
    return BackupResult(0 if head is None else head[0], pages, Path(dest).stat().st_size)
