"""Full-text search over current messages: SQLite FTS5 indexes inside the read model, one
per tenant (``tenants``).

Each tenant's index is its own table, so bm25's statistics (rows, average length, rows per
term) and the cost of a search are the tenant's own: what one tenant writes never moves
another's ranks, scores or page boundaries.

Each index is *contentless* (``content=''``): it stores the terms, not a second copy of every
message, which makes indexing about twice as fast as a regular FTS5 table. Its rowids are the
``messages`` rows' rowids, so a hit joins back to its message and context in one step. The
price of contentless: removing a row from it needs the text that was indexed, so whoever
changes a message row (the projector only) calls ``Indexer.remove`` with the old content
before and ``Indexer.add`` with the new content after. The text indexed is
``plain_text(content)``, a pure function of the stored content, so the two always agree.

Only what a context holds now is searchable: an edit replaces the indexed text, a redaction
removes it, a rollback or fork re-indexes the context's rows; deleted contexts are filtered
out by the query.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence

import msgspec

from eventstore import (
    Content,
    FilePart,
    ImagePart,
    OpaquePart,
    RefusalPart,
    Role,
    TextPart,
    ToolCallPart,
    ToolResultPart,
)
from eventstore.events import Part

from .cursors import encode_cursor
from .dialect import of, postgres, twin
from .errors import InvalidCommand
from .tenants import Slots, fts_table, register_sync, slot_sync

SCHEMA = """
CREATE TABLE IF NOT EXISTS search_deferred (id INTEGER PRIMARY KEY CHECK (id = 1));
"""
TABLES = ("messages_fts", "search_deferred")
"""``search_deferred`` holds a row while a rebuild leaves the indexes for its end: a read
model opened with that row was cut off mid-rebuild, and is rebuilt (``readmodel``).
(``messages_fts`` was the one index of every tenant before schema 5: dropped on sight.)"""

# {table} is a tenant's index (``tenants.fts_table``: a name made of an integer), {slot} that
# integer. PostgreSQL keeps every tenant's rows in one table, ``search``: a message's rowid,
# its tenant's slot and the tsvector of its text, under a GIN index (``pgschema``).
INDEX = twin(
    "INSERT INTO {table} (rowid, text) VALUES (?, ?)",
    "INSERT INTO search (id, slot, tsv) VALUES (?, {slot}, to_tsvector('simple', ?))",
)
UNINDEX = twin(
    "INSERT INTO {table} ({table}, rowid, text) VALUES ('delete', ?, ?)",
    "DELETE FROM search WHERE id = ? AND slot = {slot} AND tsv = to_tsvector('simple', ?)",
)
DELETE_ALL = twin(
    "INSERT INTO {table} ({table}) VALUES ('delete-all')",
    "DELETE FROM search WHERE slot = {slot}",
)
SELECT_CONTEXT_ROWS = "SELECT rowid, content FROM messages WHERE context_id = ?"
# bm25 ranks better matches lower (ties: the older row first); the cursor is an offset into
# that order. The tenant check is redundant with the table, and kept as a second fence.
SEARCH = """
SELECT m.context_id, m.message_id, m.seq, m.role, m.content, f.rank
FROM {table} f
JOIN messages m ON m.rowid = f.rowid
JOIN contexts c ON c.context_id = m.context_id
WHERE {table} MATCH ? AND c.tenant IS ? AND c.deleted = 0 {context}
ORDER BY f.rank, f.rowid LIMIT ? OFFSET ?
"""
twin(
    SEARCH,
    # ts_rank ranks better matches higher: negated, lower is better as with bm25. It scores a
    # row by its own text alone, so one tenant's writes never move another's ranks either.
    """
SELECT m.context_id, m.message_id, m.seq, m.role, m.content, -ts_rank(f.tsv, q.q) AS rank
FROM (SELECT to_tsquery('simple', ?) AS q) q
JOIN search f ON f.tsv @@ q.q
JOIN messages m ON m.rowid = f.id
JOIN contexts c ON c.context_id = m.context_id
WHERE f.slot = {slot} AND c.tenant IS NOT DISTINCT FROM ? AND c.deleted = 0 {context}
ORDER BY rank, f.id LIMIT ? OFFSET ?
""",
)

_json_encode = msgspec.json.Encoder().encode
_content_decoder = msgspec.json.Decoder(Content)
SNIPPET_CHARS = 160


class SearchHit(msgspec.Struct, frozen=True, kw_only=True):
    """A message that matched: where it is, a snippet of its text, and its rank (lower is
    better: SQLite's bm25)."""

    context_id: str
    message_id: str
    seq: int
    role: Role
    snippet: str
    rank: float


class SearchPage(msgspec.Struct, frozen=True):
    """Hits, best first, and the cursor of the next page (None at the end)."""

    hits: list[SearchHit]
    next_cursor: str | None


def plain_text(content: str | Sequence[Part]) -> str:
    """The searchable text of a message's content: text, tool names, arguments and results.

    A NUL becomes a space: SQLite would end the text there and never index what follows."""
    if isinstance(content, str):
        return content.replace("\x00", " ")
    pieces: list[str] = []
    for part in content:
        match part:
            case TextPart(text=text):
                pieces.append(text)
            case ToolCallPart(name=name, arguments=arguments):
                pieces += [name, _json_encode(arguments).decode()]
            case ToolResultPart(content=inner):
                pieces.append(plain_text(inner))
            case RefusalPart(text=text):
                pieces.append(text)
            case ImagePart() | OpaquePart():
                pass  # pixels are not text; a provider's opaque state is not the conversation
            case FilePart(name=name):  # its name is what a person would search for
                if name:
                    pieces.append(name)
    return "\n".join(p for p in pieces if p).replace("\x00", " ")


def _stored_text(content_json: str) -> str:
    # Plain string content (the common case) is a JSON string: decoding it is all it takes.
    return plain_text(_content_decoder.decode(content_json))


class Indexer:
    """The projector's changes to the tenants' indexes within one batch (its transaction)."""

    def __init__(self, conn: sqlite3.Connection, slots: Slots) -> None:
        self._conn = conn
        self._slots = slots
        self._statements: dict[tuple[str, str | None], str] = {}
        self._pending: list[tuple[str, tuple[int, str]]] | None = [] if postgres(conn) else None
        """PostgreSQL: the changes, in order, until ``flush`` sends them in few round trips
        (one statement each cost two thirds of a batch's time there); SQLite: None, each
        change is made at once (in process, a statement costs microseconds)."""

    def flush(self) -> None:
        """Make the changes kept for later (PostgreSQL), in order: runs of one statement
        go as one ``executemany`` (pipelined by psycopg)."""
        pending = self._pending
        if not pending:
            return
        start = 0
        for end in range(1, len(pending) + 1):
            if end == len(pending) or pending[end][0] != pending[start][0]:
                self._conn.executemany(pending[start][0], [p for _, p in pending[start:end]])
                start = end
        pending.clear()

    def _sql(self, statement: str, tenant: str | None) -> str:
        # Formatted once per tenant and batch: an append indexes its message on the hot path.
        sql = self._statements.get((statement, tenant))
        if sql is None:
            slot = self._slots.of(tenant)
            sql = of(self._conn, statement).format(table=fts_table(slot), slot=slot)
            self._statements[statement, tenant] = sql
        return sql

    def add(self, tenant: str | None, rowid: int, content: Content) -> None:
        """Index a messages row just written with ``content``."""
        text = plain_text(content)
        if text:
            if self._pending is None:
                self._conn.execute(self._sql(INDEX, tenant), (rowid, text))
            else:
                self._pending.append((self._sql(INDEX, tenant), (rowid, text)))

    def remove(self, tenant: str | None, rowid: int, content_json: str) -> None:
        """Remove a messages row (its stored JSON content as it is now) from the index."""
        text = _stored_text(content_json)
        if text:
            if self._pending is None:
                self._conn.execute(self._sql(UNINDEX, tenant), (rowid, text))
            else:
                self._pending.append((self._sql(UNINDEX, tenant), (rowid, text)))

    def remove_context(self, tenant: str | None, context_id: str) -> None:
        """Remove every message row of a context (before its rows are rewritten)."""
        rows = self._conn.execute(SELECT_CONTEXT_ROWS, (context_id,)).fetchall()
        for rowid, content_json in rows:
            self.remove(tenant, rowid, content_json)

    def add_context(self, tenant: str | None, context_id: str) -> None:
        """Index every message row of a context (after its rows were rewritten)."""
        insert = self._sql(INDEX, tenant)
        rows: Iterable[tuple[int, str]] = self._conn.execute(
            SELECT_CONTEXT_ROWS, (context_id,)
        ).fetchall()
        for rowid, content_json in rows:
            text = _stored_text(content_json)
            if text:
                if self._pending is None:
                    self._conn.execute(insert, (rowid, text))
                else:
                    self._pending.append((insert, (rowid, text)))


# The rows a rebuild indexes at its end: plain text content in SQL (json_extract decodes the
# stored JSON string), content of parts through plain_text; empty text is never indexed.
# Text holding an escaped NUL goes through plain_text too (it turns NUL into a space).
PLAIN_TEXT_ROWS = (
    " json_type(m.content) = 'text' AND m.content != '\"\"' AND instr(m.content, '\\u0000') = 0"
)
PART_ROWS = " (json_type(m.content) = 'array' OR instr(m.content, '\\u0000') > 0)"
SELECT_TENANTS = "SELECT DISTINCT tenant FROM contexts"
# PostgreSQL: a JSON string's text starts with '"'; the select list is computed only for the
# rows the WHERE kept, so no escaped NUL reaches #>> (PostgreSQL text cannot hold one).
PG_PLAIN_TEXT_ROWS = (
    " left(m.content, 1) = '\"' AND m.content <> '\"\"' AND strpos(m.content, '\\u0000') = 0"
)
PG_PART_ROWS = " (left(m.content, 1) = '[' OR strpos(m.content, '\\u0000') > 0)"
# One tenant (an open server, a single-tenant one): every row, no join.
INDEX_ALL_TEXT_ROWS = twin(
    "INSERT INTO {table} (rowid, text) SELECT m.rowid, json_extract(m.content, '$')"
    " FROM messages m WHERE" + PLAIN_TEXT_ROWS,
    "INSERT INTO search (id, slot, tsv) SELECT m.rowid, {slot},"
    " to_tsvector('simple', m.content::json #>> '{{}}') FROM messages m WHERE" + PG_PLAIN_TEXT_ROWS,
)
# Several: each tenant's rows, found through its contexts and read in rowid order. FTS5
# writes out what it holds whenever a rowid comes in below the one before: context by
# context, that was a write per context (measured: 1.66 s against 1.29 s for 300,000
# messages of 20 tenants; one tenant, a plain scan: about 1.05 s).
INDEX_TENANT_TEXT_ROWS = twin(
    "INSERT INTO {table} (rowid, text) SELECT m.rowid, json_extract(m.content, '$')"
    " FROM messages m WHERE m.rowid IN (SELECT t.rowid FROM contexts c"
    " JOIN messages t ON t.context_id = c.context_id WHERE c.tenant IS ?) AND" + PLAIN_TEXT_ROWS,
    "INSERT INTO search (id, slot, tsv) SELECT m.rowid, {slot},"
    " to_tsvector('simple', m.content::json #>> '{{}}') FROM messages m"
    " JOIN contexts c ON c.context_id = m.context_id WHERE c.tenant IS NOT DISTINCT FROM ? AND"
    + PG_PLAIN_TEXT_ROWS,
)
SELECT_PART_ROWS = twin(
    "SELECT m.rowid, m.content, c.tenant FROM messages m"
    " JOIN contexts c ON c.context_id = m.context_id WHERE" + PART_ROWS,
    "SELECT m.rowid, m.content, c.tenant FROM messages m"
    " JOIN contexts c ON c.context_id = m.context_id WHERE" + PG_PART_ROWS,
)


DEFER = twin(
    "INSERT OR IGNORE INTO search_deferred (id) VALUES (1)",
    "INSERT INTO search_deferred (id) VALUES (1) ON CONFLICT DO NOTHING",
)


def defer_sync(conn: sqlite3.Connection) -> None:
    """Mark the index as left for later (``index_all_sync`` ends it)."""
    conn.execute(DEFER)


def deferred_sync(conn: sqlite3.Connection) -> bool:
    """Whether a rebuild left the index for later and has not finished it."""
    return conn.execute("SELECT 1 FROM search_deferred").fetchone() is not None


def index_all_sync(conn: sqlite3.Connection) -> None:
    """Index every messages row at once, each in its tenant's index, in one transaction that
    also ends the deferral: far cheaper than row by row, as the SQL part never crosses into
    Python."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        tenants = [row[0] for row in conn.execute(SELECT_TENANTS).fetchall()]
        slots = {tenant: register_sync(conn, tenant) for tenant in tenants}

        def sql(statement: str, tenant: str | None) -> str:
            slot = slots[tenant]
            return of(conn, statement).format(table=fts_table(slot), slot=slot)

        for tenant in tenants:
            conn.execute(sql(DELETE_ALL, tenant))
        if len(tenants) == 1:
            conn.execute(sql(INDEX_ALL_TEXT_ROWS, tenants[0]))
        else:
            for tenant in tenants:
                conn.execute(sql(INDEX_TENANT_TEXT_ROWS, tenant), (tenant,))
        for rowid, content_json, tenant in conn.execute(SELECT_PART_ROWS).fetchall():
            text = _stored_text(content_json)
            if text:
                conn.execute(sql(INDEX, tenant), (rowid, text))
        conn.execute("DELETE FROM search_deferred")
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def match_expression(query: str) -> str:
    """An FTS5 expression matching messages that hold every word of ``query``.

    Words are quoted, so punctuation and FTS5 operators in a user's text are just text (no
    syntax errors, no injection into the query language); a trailing ``*`` keeps its prefix
    meaning (``tok*`` matches ``token``).
    """
    terms = []
    for word in query.replace("\x00", " ").split():  # SQLite ends a string at a NUL
        prefix = word.endswith("*") and len(word) > 1
        bare = word.rstrip("*") if prefix else word
        quoted = '"' + bare.replace('"', '""') + '"'
        terms.append(quoted + ("*" if prefix else ""))
    if not terms:
        raise InvalidCommand("a search needs at least one word")
    return " ".join(terms)


def tsquery_expression(query: str) -> str:
    """``match_expression`` for PostgreSQL: a ``to_tsquery`` text matching every word.

    Each word is a quoted lexeme (operators and punctuation in it are just text; the parser
    splits it as it splits the messages' text, and its pieces must follow one another), with
    ``:*`` for a trailing ``*`` (a prefix)."""
    terms = []
    for word in query.replace("\x00", " ").split():
        prefix = word.endswith("*") and len(word) > 1
        bare = word.rstrip("*") if prefix else word
        quoted = "'" + bare.replace("\\", "\\\\").replace("'", "''") + "'"
        terms.append(quoted + (":*" if prefix else ""))
    if not terms:
        raise InvalidCommand("a search needs at least one word")
    return " & ".join(terms)


def _snippet(content_json: str, terms: list[str]) -> str:
    text = " ".join(_stored_text(content_json).split())
    lowered = text.lower()
    found = [i for t in terms if (i := lowered.find(t)) >= 0]
    start = max(0, min(found, default=0) - SNIPPET_CHARS // 4)
    piece = text[start : start + SNIPPET_CHARS]
    return ("…" if start else "") + piece + ("…" if start + SNIPPET_CHARS < len(text) else "")


def search_sync(
    conn: sqlite3.Connection,
    tenant: str | None,
    query: str,
    context_id: str | None,
    limit: int,
    offset: int,
) -> SearchPage:
    """One page of the tenant's live messages matching every word of ``query``, ranked
    within the tenant's own index."""
    expression = tsquery_expression(query) if postgres(conn) else match_expression(query)
    slot = slot_sync(conn, tenant)
    if slot is None:  # the projector has not seen this tenant: nothing of it to find
        return SearchPage([], None)
    context = "AND m.context_id = ?" if context_id is not None else ""
    sql = of(conn, SEARCH).format(table=fts_table(slot), slot=slot, context=context)
    params: list[object] = [expression, tenant]
    if context_id is not None:
        params.append(context_id)
    rows = conn.execute(sql, [*params, limit + 1, offset]).fetchall()
    terms = [w.rstrip("*").lower() for w in query.split()]
    hits = [
        SearchHit(context_id=cid, message_id=mid, seq=seq, role=role, rank=rank,
                  snippet=_snippet(content, terms))
        for cid, mid, seq, role, content, rank in rows[:limit]
    ]  # fmt: skip
    more = len(rows) > limit
    return SearchPage(hits, encode_cursor("s", offset + limit) if more else None)
