"""A log whose events were recorded when the test says: the writer's clock is replaced, so
retention (which goes by the time of a context's last event) can be tested on a clock the
test controls, and a real server can be started on a log that is weeks old."""

from __future__ import annotations

import contextlib
import time
import types
from collections.abc import Iterator
from pathlib import Path

import pytest

from eventstore import writer

DAY = 86_400.0


@contextlib.contextmanager
def recorded_at(monkeypatch: pytest.MonkeyPatch, when: float) -> Iterator[None]:
    """Within the block, group commits record ``when`` (Unix seconds) as their time. (The log
    keeps recorded times from going backwards: write the oldest events first.)"""
    clock = types.SimpleNamespace(
        time_ns=lambda: int(when * 1e9), perf_counter=time.perf_counter, time=lambda: when
    )
    with monkeypatch.context() as patch:
        patch.setattr(writer, "time", clock)
        yield


class Story:
    """What ``tell`` wrote: tenant acme's contexts ``old`` (subject u-old, only there),
    ``shared`` (old, subject u-shared), ``recent`` (u-shared too, written now), ``plain``
    (old, no subject), ``gone`` (old, deleted by a user); tenant globex's ``other`` (old)."""

    old = shared = recent = plain = gone = other = ""


def files_holding(directory: Path, text: str) -> list[str]:
    """The names of the files in ``directory`` whose bytes contain ``text``."""
    return sorted(
        p.name for p in directory.iterdir() if p.is_file() and text.encode() in p.read_bytes()
    )
