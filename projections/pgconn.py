"""A psycopg connection that runs the read model's SQLite-worded functions on PostgreSQL.

The read model's functions take a connection and call ``execute``/``executemany`` with
statements written for SQLite, and read ``rowcount``, ``lastrowid`` and ``in_transaction``.
This connection gives them the same surface: each statement is swapped for its PostgreSQL
twin (``dialect.TWINS``) and its parameter markers converted, once per statement text, and a
cursor's ``lastrowid`` is the first column of the row a ``RETURNING`` gave.

psycopg, not asyncpg: the functions are synchronous and run whole on a thread per call (one
transaction), which asyncpg, an asyncio driver, cannot serve.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Sequence
from typing import Any

import psycopg
from psycopg.pq import TransactionStatus

from .dialect import STREAMED, TWINS, pyformat

_converted: dict[str, str] = {}
"""Statement as the functions give it -> what psycopg is given (a bounded set: the twins and
the statements formatted from a tenant's slot)."""

_LIMIT = 10_000
PAGE = 64
"""Rows a streamed statement's server-side cursor fetches at a time."""


def converted(sql: str) -> str:
    """``sql``'s PostgreSQL text with psycopg's parameter markers, remembered."""
    out = _converted.get(sql)
    if out is None:
        out = pyformat(TWINS.get(sql, sql))
        if len(_converted) < _LIMIT:
            _converted[sql] = out
    return out


class Cursor(psycopg.Cursor[Any]):
    """A cursor with SQLite's ``lastrowid``: the value a ``RETURNING`` gave, if any."""

    _returned: tuple[object, int | None] | None = None

    @property
    def rowcount(self) -> int:
        """Rows the statement changed; in a pipelined write transaction (``PgConnection``),
        its result is fetched first (what reads it needs it now)."""
        self._fetch_pipeline()
        return super().rowcount

    @property
    def lastrowid(self) -> int | None:
        """The first column of the row the last statement returned (its ``RETURNING``);
        read once, then remembered (SQLite's may be read again)."""
        self._fetch_pipeline()  # in a pipelined transaction, the result comes now
        result = self.pgresult
        if result is None or not self.description:
            return None
        if self._returned is None or self._returned[0] is not result:
            row = self.fetchone()
            self._returned = (result, None if row is None else int(row[0]))
        return self._returned[1]


class PgConnection(psycopg.Connection[Any]):
    """A psycopg connection (autocommit: the functions say BEGIN and COMMIT themselves) with
    the part of ``sqlite3.Connection`` the read model's functions use."""

    _streams = 0
    """Server-side cursors opened (each is named by its number)."""
    _open: list[psycopg.ServerCursor[Any]] | None = None
    _batch: contextlib.ExitStack | None = None
    """The pipeline of the write transaction in progress (``BEGIN IMMEDIATE`` to ``COMMIT``):
    its statements are sent without waiting for each one's result, and only a statement
    whose result is read (a row, a row count) waits for the server; COMMIT sends the rest
    and waits once. Counted from its statements, a projector's batch of one append waits
    four times instead of eight (the lock, the checkpoint, the message's row count, COMMIT).
    An error surfaces at the next wait, inside the transaction, which rolls back."""

    def execute(  # type: ignore[override]
        self, query: str, params: Sequence[Any] | dict[str, Any] | None = None, **_: Any
    ) -> Any:
        """Run one statement (its twin), as ``sqlite3.Connection.execute`` does; a cursor
        (a server-side one for a ``STREAMED`` statement in a transaction)."""
        if query in STREAMED and self.in_transaction:
            return self._streamed(query, params)
        if self._batch is not None and query in ("COMMIT", "ROLLBACK"):
            return self._end(query)
        cur = Cursor(self)
        if params is None:  # psycopg reads no markers (and no doubled %) then
            cur.execute(TWINS.get(query, query))
        else:
            cur.execute(converted(query), params)
        if query == "BEGIN IMMEDIATE":  # locked the checkpoint: the rest goes pipelined
            self._batch = contextlib.ExitStack()
            self._batch.enter_context(self.pipeline())
        return cur

    def _end(self, query: str) -> Cursor:
        """COMMIT inside the pipeline and wait for everything; ROLLBACK after leaving it
        (what was sent before an error is discarded with the transaction)."""
        batch, self._batch = self._batch, None
        assert batch is not None
        cur = Cursor(self)
        if query == "COMMIT":
            try:
                cur.execute("COMMIT")
            finally:
                batch.close()  # raises the first error of the pipeline, if any
            return cur
        with contextlib.suppress(psycopg.Error):
            batch.close()
        if self.in_transaction:
            cur.execute("ROLLBACK")
        return cur

    def _streamed(self, query: str, params: Any) -> Any:
        """A server-side cursor over the statement's rows (closed with the transaction)."""
        self._streams += 1
        cur = self.cursor(name=f"ctxlog_stream_{self._streams}")
        cur.itersize = PAGE
        if self._open is None:
            self._open = []
        self._open.append(cur)
        cur.execute(converted(query), params)
        return cur

    def end_streams(self) -> None:
        """Forget the server-side cursors once their transaction ended (which closed them on
        the server: closing them here sends nothing)."""
        opened, self._open = self._open, None
        for cur in opened or ():
            cur.close()

    def executemany(self, query: str, params: Iterable[Sequence[Any]]) -> Cursor:
        """Run one statement for each set of parameters (nothing for none)."""
        cur = Cursor(self)
        rows = list(params)
        if rows:
            cur.executemany(converted(query), rows)
        return cur

    @property
    def in_transaction(self) -> bool:
        """True between a BEGIN and its COMMIT or ROLLBACK (or inside a failed one)."""
        return self.info.transaction_status != TransactionStatus.IDLE
