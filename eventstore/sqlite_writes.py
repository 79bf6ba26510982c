"""The SQLite log's write transactions, each one function run whole on one connection (the
event loop's or the writer's thread, see ``inline``)."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator

from msgspec.structs import astuple

from .batch import Head, plan_batch
from .chain import GENESIS
from .continuity import Continuity
from .errors import EventStoreError
from .keystore import sqlite_keys_by_id
from .recorder import AppendOutcome, PendingAppend, StoredEvent, ids_to_look_up, keys_to_check
from .sqlite_schema import (
    INSERT,
    MAX_VARIABLES,
    SELECT_BY_IDS,
    SELECT_HEAD,
    SELECT_STREAM_VERSION,
)


class VersionCache:
    """Stream versions as this writer last left them, valid while nobody else has written.

    Reading each stream's version costs a query per append; when the head of the log is still
    the one this writer committed, no other process has written since, so the cached versions
    are exact. Any other head (or a failed transaction) empties the cache.
    """

    LIMIT = 100_000

    def __init__(self) -> None:
        self.head = -1
        self.versions: dict[str, int] = {}

    def valid_at(self, head: int) -> dict[str, int]:
        if head != self.head:
            self.versions.clear()
        return self.versions

    def update(self, head: int, rows: list[StoredEvent]) -> None:
        if len(self.versions) > self.LIMIT:
            self.versions.clear()
        for row in rows:
            self.versions[row.stream_id] = row.version
        self.head = head


def _commit(conn: sqlite3.Connection) -> None:
    conn.execute("COMMIT")


def checkpoint(conn: sqlite3.Connection) -> None:
    # PASSIVE: copies what it can without waiting for readers or blocking the next commit.
    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()


def commit_batch(
    conn: sqlite3.Connection,
    batch: list[PendingAppend],
    now_us: int,
    cache: VersionCache,
    commit: Callable[[sqlite3.Connection], None] = _commit,
) -> list[AppendOutcome | EventStoreError]:
    """Plan and insert the batch in one transaction; ``commit`` ends it (the inline
    connection's is timed, see ``inline``)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        row = conn.execute(SELECT_HEAD).fetchone()
        head = Head(*row) if row else Head(0, GENESIS, 0)
        known = cache.valid_at(head.position)
        stored_by_id = {row.event_id: row for row in rows_by_ids(conn, ids_to_look_up(batch))}
        sealing = keys_to_check(batch)
        gone = set(sealing) - sqlite_keys_by_id(conn, sealing).keys() if sealing else set()

        def stream_version(stream_id: str) -> int:
            version = known.get(stream_id)
            if version is None:
                version = conn.execute(SELECT_STREAM_VERSION, (stream_id,)).fetchone()[0] or 0
            return version

        rows, outcomes = plan_batch(batch, now_us, head, stored_by_id, stream_version, gone)
        if rows:
            conn.executemany(INSERT, [astuple(row) for row in rows])
        commit(conn)
    except BaseException:
        cache.head = -1
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    cache.update(head.position, rows)
    return outcomes


def import_rows(conn: sqlite3.Connection, rows: list[StoredEvent], cache: VersionCache) -> None:
    conn.execute("BEGIN IMMEDIATE")
    try:
        # The writer's cached versions are of the log before these rows: forget them.
        cache.head = -1
        head = conn.execute(SELECT_HEAD).fetchone()
        end = Continuity(*head) if head else Continuity()
        stored = {row.event_id for row in rows_by_ids(conn, [row.event_id for row in rows])}
        end.check(
            rows, stored, lambda s: conn.execute(SELECT_STREAM_VERSION, (s,)).fetchone()[0] or 0
        )
        conn.executemany(INSERT, [astuple(row) for row in rows])
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def rows_by_ids(conn: sqlite3.Connection, ids: list[str]) -> Iterator[StoredEvent]:
    for start in range(0, len(ids), MAX_VARIABLES):
        chunk = ids[start : start + MAX_VARIABLES]
        sql = SELECT_BY_IDS.format(marks=",".join("?" * len(chunk)))
        for row in conn.execute(sql, chunk):
            yield StoredEvent(*row)
