"""Marks beside a read model file while a process writes it without syncs.

The live read model is written with ``synchronous = OFF``: its COMMITs and WAL checkpoints
never wait for the disk. Why: every append waits for the projector to have applied the one
before it on its context, and a checkpoint's fsyncs (megabytes of pages) stalled the
projector and competed with the log's own fsync on the same disk. Measured with 64
concurrent HTTP appenders, A/B against syncing at checkpoints: about +4% appends/s.

What that risks: a crash of the process loses nothing (the kernel has every write), but a
crash of the machine (power, kernel panic) can leave the file damaged, not just behind. So
while a read model is open, a mark beside it (``<path>.open-<pid>-<n>``) holds the machine's
boot id, made durable before the first unsynced write; a clean close syncs the file, then
removes the mark. A mark of another boot means the machine restarted while the file was not
closed cleanly, so what its disk holds cannot be trusted: the file is deleted and the
projector replays the log into a new one. A mark of this boot whose process is gone was a
process crash: it is just removed.

Without a boot id (not Linux) the read model syncs at checkpoints (``synchronous = NORMAL``).
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import itertools
import logging
import os
from collections.abc import Iterator
from pathlib import Path

from eventstore.files import PRIVATE, private_opener

log = logging.getLogger(__name__)

BOOT_ID = Path("/proc/sys/kernel/random/boot_id")

_numbers = itertools.count()


def boot_id() -> str | None:
    """This boot of the machine's id, or None where the system does not tell."""
    try:
        return BOOT_ID.read_text().strip() or None
    except OSError:
        return None


def remove_files(path: str) -> None:
    """Delete a database file and whatever SQLite keeps beside it."""
    for suffix in ("", "-journal", "-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            os.remove(path + suffix)


def fsync_path(path: str) -> None:
    """fsync a file or a directory by name."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class OpenMark:
    """This process's mark on one read model file (see the module's docstring)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.boot = boot_id()
        self._mark: str | None = None

    @property
    def unsynced(self) -> bool:
        """Whether the file may be written without syncs (a machine crash can be told)."""
        return self.boot is not None

    def claim(self) -> bool:
        """Mark the file open, durably; first, if a mark of another boot is there, delete the
        file (it may be damaged) and return True: the read model starts empty."""
        if self.boot is None:
            return False
        directory = os.path.dirname(os.path.abspath(self.path))
        with _locked(self.path + ".lock"):
            damaged = False
            for mark in glob.glob(glob.escape(self.path) + ".open-*"):
                boot = _read(mark)
                if boot == self.boot and _alive(_pid(mark)):
                    continue
                damaged = damaged or boot != self.boot
                with contextlib.suppress(FileNotFoundError):
                    os.remove(mark)
            if damaged:
                log.warning(
                    "the machine restarted while %s was open: deleting it, the log is replayed",
                    self.path,
                )
                remove_files(self.path)
            self._mark = f"{self.path}.open-{os.getpid()}-{next(_numbers)}"
            with open(self._mark, "w", opener=private_opener) as f:
                f.write(self.boot)
                f.flush()
                os.fsync(f.fileno())
            fsync_path(directory)
        return damaged

    def release(self) -> None:
        """After every connection closed: make the file durable, then drop the mark."""
        if self._mark is None:
            return
        with contextlib.suppress(FileNotFoundError):
            fsync_path(self.path)
        with contextlib.suppress(FileNotFoundError):
            os.remove(self._mark)
        self._mark = None


@contextlib.contextmanager
def _locked(path: str) -> Iterator[None]:
    # Two processes opening the same read model at once must not both judge the marks (one
    # could delete the file the other has just started).
    fd = os.open(path, os.O_RDWR | os.O_CREAT, PRIVATE)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _read(mark: str) -> str | None:
    try:
        return Path(mark).read_text().strip()
    except OSError:
        return None


def _pid(mark: str) -> int:
    try:
        return int(mark.rsplit(".open-", 1)[1].split("-", maxsplit=1)[0])
    except (IndexError, ValueError):
        return 0


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True
