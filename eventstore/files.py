"""Files ctxlog creates hold subject keys and plaintext: they are created owner-only (0600),
whatever the process's umask, so that library use is as safe as the ``ctxlog`` command
(which also sets a umask of 0o077). A file the operator made keeps the mode it has.

SQLite creates a database's ``-wal``, ``-shm`` and ``-journal`` files with the database
file's own mode, so creating the database file 0600 before SQLite opens it covers them too.
"""

from __future__ import annotations

import os
import stat

PRIVATE = 0o600
"""Read and write for the owner, nothing for anyone else."""


def create_private(path: str) -> None:
    """Create ``path`` empty and owner-only unless something is there already (SQLite then
    opens it as a new database). Any other failure is left for SQLite to report."""
    if path == ":memory:" or not path:
        return
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, PRIVATE)
    except OSError:  # it exists (the operator's or ours), or SQLite will say what is wrong
        return
    os.close(fd)


def private_opener(path: str, flags: int) -> int:
    """An ``open(..., opener=private_opener)`` whose new files are owner-only."""
    return os.open(path, flags, PRIVATE)


def database_bytes(path: str | None) -> int | None:
    """A SQLite database file's bytes with its write-ahead log (commits not yet copied into
    the file); None when there is no such file."""
    if path is None or not os.path.isfile(path):
        return None
    return sum(os.stat(p).st_size for p in (path, f"{path}-wal") if os.path.isfile(p))


def exposure(path: str) -> str | None:
    """What to warn about when the database file at ``path`` (one ctxlog did not create
    owner-only, or whose mode was changed since) lets group or others at it; None if not."""
    try:
        st = os.stat(path)
    except (OSError, ValueError):  # not there yet (then created 0600), or a DSN
        return None
    mode = stat.S_IMODE(st.st_mode)
    if not stat.S_ISREG(st.st_mode) or not mode & 0o077:
        return None
    return (
        f"{path} has mode {mode:04o}: other users can read the subject keys and content in it;"
        f" ctxlog leaves the mode of a file it did not create alone: chmod 600 it (and its"
        f" -wal and -shm files)"
    )
