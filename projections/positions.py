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
each event as it applies it (a tenant's count is kept in ``tenants.events``), so a rebuild
from the same log gives the same numbers. A row per event of a tenant, keyed by (slot, log
position), with an index by (slot, number): both directions are point lookups within the
tenant. Answers wait for the projector to have numbered what they show, as reads wait for
their writes.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from .errors import ProjectionError
from .tenants import Slots, slot_sync

SCHEMA = """
CREATE TABLE IF NOT EXISTS tenant_events (
    slot     INTEGER NOT NULL,
    position INTEGER NOT NULL,
    number   INTEGER NOT NULL,
    PRIMARY KEY (slot, position)
) WITHOUT ROWID;
CREATE UNIQUE INDEX IF NOT EXISTS tenant_events_by_number ON tenant_events (slot, number);
"""
TABLES = ("tenant_events",)

INSERT_NUMBERS = "INSERT INTO tenant_events (slot, position, number) VALUES (?, ?, ?)"
SELECT_COUNT = "SELECT events, last FROM tenants WHERE slot = ?"
UPDATE_COUNT = "UPDATE tenants SET events = ?, last = ? WHERE slot = ?"
SELECT_NUMBERS = (
    "SELECT position, number FROM tenant_events WHERE slot = ? AND position IN ({marks})"
)
SELECT_POSITION = "SELECT position FROM tenant_events WHERE slot = ? AND number = ?"
SELECT_NUMBER_UPTO = (
    "SELECT number FROM tenant_events WHERE slot = ? AND position <= ?"
    " ORDER BY position DESC LIMIT 1"
)
MAX_VARIABLES = 500
"""Positions per lookup statement, under SQLite's default limit on bound parameters."""


class Numbering:
    """The numbers the projector gives a batch's events, written with the batch.

    An event at or before its tenant's last numbered position keeps the number it has: a
    projector stopped after a batch committed but before it took note applies that batch
    again on restart (the rest of the read model takes that too)."""

    def __init__(self, conn: sqlite3.Connection, slots: Slots) -> None:
        self._conn = conn
        self._slots = slots
        self._counts: dict[int, tuple[int, int]] = {}
        self._rows: list[tuple[int, int, int]] = []

    def note(self, tenant: str | None, position: int) -> None:
        """Number the event at ``position`` (one of a tenant: None is not numbered)."""
        if tenant is None:
            return
        slot = self._slots.of(tenant)
        count = self._counts.get(slot)
        if count is None:
            events, last = self._conn.execute(SELECT_COUNT, (slot,)).fetchone()
            count = (int(events), int(last))
        if position <= count[1]:
            return
        self._counts[slot] = (count[0] + 1, position)
        self._rows.append((slot, position, count[0] + 1))

    def write(self) -> None:
        """Store the numbers and the tenants' counts (in the batch's transaction)."""
        self._conn.executemany(INSERT_NUMBERS, self._rows)
        self._conn.executemany(
            UPDATE_COUNT, [(n, last, slot) for slot, (n, last) in self._counts.items()]
        )


def numbers_sync(conn: sqlite3.Connection, tenant: str, positions: Sequence[int]) -> dict[int, int]:
    """The tenant's numbers of the events at log ``positions`` (those it has)."""
    slot = slot_sync(conn, tenant)
    found: dict[int, int] = {}
    if slot is None:
        return found
    wanted = sorted(set(positions))
    for start in range(0, len(wanted), MAX_VARIABLES):
        part = wanted[start : start + MAX_VARIABLES]
        sql = SELECT_NUMBERS.format(marks=",".join("?" * len(part)))
        found.update(conn.execute(sql, [slot, *part]).fetchall())
    return found


def position_sync(conn: sqlite3.Connection, tenant: str, number: int) -> int | None:
    """The log position of the tenant's ``number``-th event (0 for 0); None when it has
    fewer events (as far as the projector has numbered them)."""
    if number == 0:
        return 0
    slot = slot_sync(conn, tenant)
    row = None if slot is None else conn.execute(SELECT_POSITION, (slot, number)).fetchone()
    return None if row is None else int(row[0])


def number_upto_sync(conn: sqlite3.Connection, tenant: str, position: int) -> int:
    """The number of the tenant's last event at or before log ``position`` (0: none)."""
    slot = slot_sync(conn, tenant)
    row = None if slot is None else conn.execute(SELECT_NUMBER_UPTO, (slot, position)).fetchone()
    return 0 if row is None else int(row[0])


class NotNumbered(ProjectionError):
    """An event was to be shown to a tenant that has no number for it (not its own)."""

    def __init__(self, position: int) -> None:
        super().__init__(f"the event at log position {position} has no number for the caller")
        self.position = position
