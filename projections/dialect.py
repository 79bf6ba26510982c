"""SQL in two dialects: each read-model statement is written for SQLite, and where PostgreSQL
needs other words, its PostgreSQL twin is registered beside it (``twin``).

Why this shape: the read model's functions (``fn(conn, *args)``, run on a connection's
thread) are one fold for both engines; only some statements differ. SQLite's connection is
used as it is (no wrapper, no lookup on its hot path); PostgreSQL's (``pgconn``) looks each
statement up here once and keeps the converted text. Nothing is rewritten by pattern: a twin
is written out whole, and the only conversion is of parameter markers (``?`` and ``:name``
to psycopg's ``%s`` and ``%(name)s``), done by a scanner that skips quoted text.

A statement built from pieces (a page with filters, a tenant's index) takes each piece
through ``of``, which is the statement itself on SQLite.
"""

from __future__ import annotations

import sqlite3
from typing import Any

TWINS: dict[str, str] = {}
"""SQLite statement -> its PostgreSQL twin."""


def twin(sqlite: str, postgres: str) -> str:
    """Register ``postgres`` as the PostgreSQL text of ``sqlite``; returns ``sqlite``."""
    TWINS[sqlite] = postgres
    return sqlite


STREAMED: set[str] = set()
"""Statements whose rows are read lazily and often not to the end (a window's tail, newest
first, until the budget is spent): PostgreSQL reads them through a server-side cursor, a page
at a time, instead of sending every row at once."""


def streamed(statement: str) -> str:
    """Mark ``statement`` as read lazily (``STREAMED``); returns it."""
    STREAMED.add(statement)
    return statement


def of(conn: Any, statement: str) -> str:
    """``statement`` in ``conn``'s dialect (a piece to format or join before executing)."""
    if isinstance(conn, sqlite3.Connection):
        return statement
    return TWINS.get(statement, statement)


def postgres(conn: object) -> bool:
    """Whether ``conn`` is PostgreSQL's (where a parameter, not only a statement, differs)."""
    return not isinstance(conn, sqlite3.Connection)


def pyformat(sql: str) -> str:
    """``sql`` with SQLite's parameter markers as psycopg's: ``?`` -> ``%s``, ``:name`` ->
    ``%(name)s``, and a literal ``%`` doubled (psycopg reads every ``%``).

    Safe because it is a scanner, not a pattern: text inside '...' and "..." (string literals
    and quoted identifiers, with their doubled quotes) and after ``--`` is copied as it is, so
    a ``?`` or ``:x`` there is never taken for a marker; ``::type`` casts are left alone."""
    out: list[str] = []
    i, n = 0, len(sql)
    while i < n:
        c = sql[i]
        if c in "'\"":
            end = i + 1
            while end < n:
                if sql[end] == c:
                    if end + 1 < n and sql[end + 1] == c:
                        end += 2
                        continue
                    break
                end += 1
            out.append(sql[i : end + 1].replace("%", "%%"))
            i = end + 1
        elif c == "-" and sql.startswith("--", i):
            end = sql.find("\n", i)
            end = n if end < 0 else end
            out.append(sql[i:end].replace("%", "%%"))
            i = end
        elif c == "?":
            out.append("%s")
            i += 1
        elif c == ":" and sql.startswith("::", i):
            out.append("::")
            i += 2
        elif c == ":" and i + 1 < n and (sql[i + 1].isalpha() or sql[i + 1] == "_"):
            end = i + 1
            while end < n and (sql[end].isalnum() or sql[end] == "_"):
                end += 1
            out.append(f"%({sql[i + 1 : end]})s")
            i = end
        elif c == "%":
            out.append("%%")
            i += 1
        else:
            out.append(c)
            i += 1
    return "".join(out)
