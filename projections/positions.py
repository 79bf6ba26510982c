"""Tenant-facing positions: each tenant's events numbered 1, 2, 3, … in log order.

The log's positions are global: a tenant shown position 10 and then position 1,010 for its
next event learned that others wrote 989 events in between, and an audit page's
``next_after`` (the head of the log) told it the whole log's volume. So a caller with a
tenant is shown its tenant's own numbering instead: the tenant's n-th event has position n
for every caller of that tenant, in audit pages and their ``next_after``, SSE ids and
``Last-Event-ID``, event bodies (history pages, WebSocket frames, MCP answers) and listing
cursors. What another tenant writes never changes them. A caller without a tenant (an open
server) sees the log's positions: there is nobody to hide anything from.

The numbering is derived from the log like the rest of the read model: the projector numbers
each event as it applies it, so a rebuild from the same log gives the same numbers. It is
kept as *runs*: a run is events of one tenant at consecutive log positions, so they have
consecutive numbers too, and one row (first position, first number, length) stands for all
of them. A log written by one tenant, or in bursts, is a handful of rows; a log whose tenants
alternate event by event costs a row per event, as a row per event would. Measured on the
1,000,000-event rebuild of ``scripts/bench_projections.py`` (one tenant): a row per event
cost about a quarter of the rebuild's rate. Lookups are within one tenant and point reads:
by (slot, position) for the number of an event, by (slot, number) for the position of a
number. Answers wait for the projector to have numbered what they show, as reads wait for
their writes.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

import msgspec

from .errors import ProjectionError
from .tenants import Known, Slots, slot_sync

SCHEMA = """
CREATE TABLE IF NOT EXISTS tenant_runs (
    slot     INTEGER NOT NULL,
    position INTEGER NOT NULL,
    number   INTEGER NOT NULL,
    length   INTEGER NOT NULL,
    PRIMARY KEY (slot, position)
) WITHOUT ROWID;
CREATE UNIQUE INDEX IF NOT EXISTS tenant_runs_by_number ON tenant_runs (slot, number);
"""
TABLES = ("tenant_runs", "tenant_events")
"""(``tenant_events`` was a row per event before schema 7: dropped on sight.)"""

UPSERT_RUN = (
    "INSERT INTO tenant_runs (slot, position, number, length) VALUES (?, ?, ?, ?)"
    " ON CONFLICT (slot, position) DO UPDATE SET length = excluded.length"
)
SELECT_LAST_RUN = (
    "SELECT position, number, length FROM tenant_runs WHERE slot = ? ORDER BY position DESC LIMIT 1"
)
SELECT_RUN_AT = (
    "SELECT position, number, length FROM tenant_runs WHERE slot = ? AND position <= ?"
    " ORDER BY position DESC LIMIT 1"
)
SELECT_RUN_OF_NUMBER = (
    "SELECT position, number, length FROM tenant_runs WHERE slot = ? AND number <= ?"
    " ORDER BY number DESC LIMIT 1"
)


class Run(msgspec.Struct):
    """Events of one tenant at consecutive log positions: the first's position and number,
    and how many."""

    position: int
    number: int
    length: int

    @property
    def last(self) -> int:
        """The log position of the run's last event."""
        return self.position + self.length - 1

    def number_of(self, position: int) -> int | None:
        """The number of the event at log ``position``, if it is in the run."""
        if self.position <= position <= self.last:
            return self.number + position - self.position
        return None


def _run(row: tuple[int, int, int] | None) -> Run | None:
    return None if row is None else Run(*row)


class Numbering:
    """The numbers the projector gives a batch's events, written with the batch.

    An event at or before its tenant's last numbered position keeps the number it has: a
    projector stopped after a batch committed but before it took note applies that batch
    again on restart (the rest of the read model takes that too). Runs are plain lists
    here, [position, number, length]: this runs once per event of the log."""

    def __init__(self, conn: sqlite3.Connection, slots: Slots, known: Known) -> None:
        self._conn = conn
        self._slots = slots
        self._known = known.runs
        self._last: dict[int, list[int]] = {}
        """Each slot's last run, as far as this batch knows it."""
        self._touched: list[tuple[int, list[int]]] = []

    def note(self, tenant: str | None, position: int) -> None:
        """Number the event at ``position`` (one of a tenant: None is not numbered)."""
        if tenant is None:
            return
        slot = self._slots.of(tenant)
        run = self._last.get(slot)
        if run is None:
            committed = self._known.get(slot)
            if committed is None:
                committed = self._conn.execute(SELECT_LAST_RUN, (slot,)).fetchone() or (0, 1, 0)
            run = self._last[slot] = list(committed)  # a copy: the batch may roll back
            self._touched.append((slot, run))
        last = run[0] + run[2] - 1
        if position <= last:
            return
        if position == last + 1:
            run[2] += 1
            return
        run = self._last[slot] = [position, run[1] + run[2], 1]
        self._touched.append((slot, run))

    def write(self) -> None:
        """Store the runs this batch began or extended (in the batch's transaction)."""
        self._conn.executemany(UPSERT_RUN, [
            (slot, position, number, length)
            for slot, (position, number, length) in self._touched
            if length
        ])  # fmt: skip

    def committed(self) -> None:
        """The batch committed: its slots' last runs are known."""
        self._known.update((slot, (run[0], run[1], run[2])) for slot, run in self._last.items())


def numbers_sync(conn: sqlite3.Connection, tenant: str, positions: Sequence[int]) -> dict[int, int]:
    """The tenant's numbers of the events at log ``positions`` (those it has): a point
    read per run they fall in."""
    slot = slot_sync(conn, tenant)
    found: dict[int, int] = {}
    if slot is None:
        return found
    run: Run | None = None
    for position in sorted(set(positions)):
        number = None if run is None else run.number_of(position)
        if number is None:
            run = _run(conn.execute(SELECT_RUN_AT, (slot, position)).fetchone())
            number = None if run is None else run.number_of(position)
        if number is not None:
            found[position] = number
    return found


def position_sync(conn: sqlite3.Connection, tenant: str, number: int) -> int | None:
    """The log position of the tenant's ``number``-th event (0 for 0); None when it has
    fewer events (as far as the projector has numbered them)."""
    if number == 0:
        return 0
    slot = slot_sync(conn, tenant)
    run = (
        None
        if slot is None
        else _run(conn.execute(SELECT_RUN_OF_NUMBER, (slot, number)).fetchone())
    )
    if run is None or number >= run.number + run.length:
        return None
    return run.position + number - run.number


def number_upto_sync(conn: sqlite3.Connection, tenant: str, position: int) -> int:
    """The number of the tenant's last event at or before log ``position`` (0: none)."""
    slot = slot_sync(conn, tenant)
    run = None if slot is None else _run(conn.execute(SELECT_RUN_AT, (slot, position)).fetchone())
    if run is None:
        return 0
    return run.number + min(run.length, position - run.position + 1) - 1


class NotNumbered(ProjectionError):
    """An event was to be shown to a tenant that has no number for it (not its own)."""

    def __init__(self, position: int) -> None:
        super().__init__(f"the event at log position {position} has no number for the caller")
        self.position = position
