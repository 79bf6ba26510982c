"""How ``ctxlog`` commands print: rich tables and colours for people on a terminal, plain
aligned text when piped, JSON or NDJSON for scripts, and progress bars on a terminal only."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

import click
import msgspec
from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskProgressColumn,
    TextColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

Report = Callable[[int, int], None]
"""A progress callback: (done, total)."""


def _quiet(done: int, total: int) -> None:
    pass


class _Rate(ProgressColumn):
    """Items per second, in the command's unit."""

    def __init__(self, unit: str) -> None:
        super().__init__()
        self.unit = unit

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text("" if speed is None else f"{speed:,.0f} {self.unit}/s", style="cyan")


class _Count(ProgressColumn):
    """Done of total, in the command's unit."""

    def __init__(self, unit: str) -> None:
        super().__init__()
        self.unit = unit

    def render(self, task: Task) -> Text:
        total = "?" if task.total is None else f"{task.total:,.0f}"
        return Text(f"{task.completed:,.0f}/{total} {self.unit}", style="green")


def relative(at: datetime, now: datetime | None = None) -> str:
    """``at`` as people say it: "just now", "5 min ago", "3 d ago", else the date."""
    seconds = ((now or datetime.now(UTC)) - at).total_seconds()
    if seconds < 0:
        return at.strftime("%Y-%m-%d %H:%M:%S")
    for limit, size, unit in ((60, 1, "s"), (3600, 60, "min"), (86400, 3600, "h")):
        if seconds < limit:
            return "just now" if seconds < 2 else f"{int(seconds // size)} {unit} ago"
    if seconds < 30 * 86400:
        return f"{int(seconds // 86400)} d ago"
    return at.strftime("%Y-%m-%d")


def iso(at: datetime) -> str:
    """``at`` in UTC, ISO 8601 to the microsecond, with a Z."""
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")


class Output:
    """One command's output, in the format it was asked for."""

    def __init__(self, fmt: str = "text") -> None:
        self.fmt = fmt
        probe = Console(file=sys.stdout)
        self.tty = probe.is_terminal
        # Piped text never wraps (one record per line for grep); rich colours only a terminal.
        self.console = probe if self.tty else Console(file=sys.stdout, width=100_000)
        self.errors = Console(file=sys.stderr, highlight=False)

    @property
    def text(self) -> bool:
        """True for people, False for json/ndjson."""
        return self.fmt == "text"

    def when(self, at: datetime) -> str:
        """A time: relative on a terminal, ISO 8601 when piped."""
        return relative(at) if self.tty else iso(at)

    def print(self, *things: Any, style: str | None = None) -> None:
        """Print text (never read as markup) or rich renderables to stdout."""
        if self.tty:
            self.console.print(*things, style=style, highlight=False, markup=False)
            return
        with self.console.capture() as captured:
            self.console.print(*things, highlight=False, markup=False, soft_wrap=True)
        # Piped: no padding at line ends (tables pad their last column), nothing to wrap.
        click.echo("\n".join(line.rstrip() for line in captured.get().splitlines()))

    def note(self, message: str) -> None:
        """A line for people on stderr (never mixed into stdout's data)."""
        self.errors.print(message, soft_wrap=True)

    def document(self, value: Any) -> None:
        """One JSON value: indented for json, on one line for ndjson."""
        raw = msgspec.json.encode(value)
        click.echo((msgspec.json.format(raw, indent=2) if self.fmt == "json" else raw).decode())

    def records(self, values: Iterable[Any]) -> None:
        """A listing: a JSON array for json, one line per value for ndjson (as they come)."""
        if self.fmt == "json":
            self.document(list(values))
            return
        for value in values:
            click.echo(msgspec.json.encode(value).decode())

    def table(
        self,
        columns: Sequence[str | tuple[str, str]],
        rows: Iterable[Sequence[Any]],
        *,
        title: str | None = None,
        header: bool = True,
    ) -> None:
        """An aligned table; a column given as (name, "right") is right-aligned."""
        table = Table(
            title=title, header_style="bold", box=None, pad_edge=False, show_header=header
        )
        for column in columns:
            name, justify = column if isinstance(column, tuple) else (column, "left")
            table.add_column(name, justify=justify, overflow="fold")  # type: ignore[arg-type]
        for row in rows:
            table.add_row(*(cell if isinstance(cell, Text) else Text(str(cell)) for cell in row))
        self.print(table)

    def pairs(self, items: Iterable[tuple[str, Any]]) -> None:
        """A two-column table of names (bold) and values, without a header."""
        rows = [(Text(name, "bold"), value) for name, value in items]
        self.table(["", ""], rows, header=False)

    @contextlib.contextmanager
    def progress(self, *descriptions: str, unit: str = "events") -> Iterator[list[Report]]:
        """One progress bar per description (rate and ETA), on a terminal's stderr only;
        yields their (done, total) callbacks, which do nothing when stderr is piped."""
        if not self.errors.is_terminal:
            yield [_quiet for _ in descriptions]
            return
        bars = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TaskProgressColumn(),
            _Count(unit),
            _Rate(unit),
            TimeRemainingColumn(),
            console=self.errors,
        )
        with bars:
            tasks = [bars.add_task(d, total=None) for d in descriptions]

            def reporter(task: Any) -> Report:
                return lambda done, total: bars.update(task, completed=done, total=total)

            yield [reporter(task) for task in tasks]
