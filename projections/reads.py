"""Reads of the read model, each a function of a sqlite3 connection (``*_sync``: they run
wherever ``ReadModel`` runs them, in one read transaction)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from typing import Any

import msgspec

from .dialect import of
from .overhead import DEFAULT_FORMAT
from .state import ContextState, Message, Summary
from .tables import (
    FILTER_METADATA,
    ORDER_PAGE,
    SELECT_CONTEXT,
    SELECT_EVENT_ID,
    SELECT_FORKS,
    SELECT_LATEST_SUMMARY,
    SELECT_MESSAGE_INFO,
    SELECT_MESSAGE_RANGE,
    SELECT_MESSAGE_SUBJECTS,
    SELECT_MESSAGES,
    SELECT_MESSAGES_BACKWARD,
    SELECT_MESSAGES_JSON,
    SELECT_NEWEST_UNPINNED_UPTO,
    SELECT_PAGE,
    SELECT_PINNED,
    SELECT_SUBJECTS_UPTO,
    SELECT_SUMMARIES,
    SELECT_SUMMARY_SUBJECTS,
    SELECT_TAIL,
    ContextRow,
    json_encode,
    message_from_row,
    subjects_decoder,
    summary_from_row,
)
from .window import LeftOut, Policy, Window, compose, resolve


def context_sync(conn: sqlite3.Connection, context_id: str) -> ContextRow | None:
    """The context's row, or None."""
    row = conn.execute(SELECT_CONTEXT, (context_id,)).fetchone()
    return None if row is None else ContextRow.from_row(row)


def summaries_sync(conn: sqlite3.Connection, context_id: str) -> tuple[Summary, ...]:
    """The context's summaries, in order."""
    return tuple(summary_from_row(r) for r in conn.execute(SELECT_SUMMARIES, (context_id,)))


def state_sync(
    conn: sqlite3.Connection, context_id: str, with_messages: bool = True
) -> ContextState | None:
    """The context's current state (O(messages); without them, O(summaries))."""
    ctx = context_sync(conn, context_id)
    if ctx is None:
        return None
    messages: tuple[Message, ...] = ()
    if with_messages:
        messages = tuple(message_from_row(r) for r in conn.execute(SELECT_MESSAGES, (context_id,)))
    return ctx.state(messages, summaries_sync(conn, context_id))


def whole_sync(
    conn: sqlite3.Connection, context_id: str, known: int, from_seq: int, budget: int
) -> tuple[ContextRow, ContextState, int, list[bytes], bool] | None:
    """The context's row, its state without messages, and its messages' JSON (the API's,
    ``SELECT_MESSAGES_JSON``) in order from seq ``from_seq`` on if an assembly made at
    version ``known`` still holds the ones before (only appends since: ``reshaped``), else
    from the first; at most ``budget`` bytes of them. Returns (row, state, first seq read,
    messages, whether they reach the last message); None: no such context. One read
    transaction, so the messages are those of the row's version."""
    ctx = context_sync(conn, context_id)
    if ctx is None:
        return None
    start = from_seq if ctx.reshaped <= known and from_seq <= ctx.message_count else 0
    parts: list[bytes] = []
    size, complete = 0, True
    for (part,) in conn.execute(SELECT_MESSAGES_JSON, (context_id, start)):
        size += len(part) + 1
        if size > budget:
            complete = False
            break
        parts.append(part)
    state = ctx.state((), summaries_sync(conn, context_id))
    return ctx, state, start, parts, complete


def message_page_sync(
    conn: sqlite3.Connection, context_id: str, after: int, limit: int, backward: bool
) -> list[tuple[int, Message]]:
    """(seq, message) pairs after ``after`` (or before it, newest first, with ``backward``)."""
    if backward:
        rows = conn.execute(SELECT_MESSAGES_BACKWARD, (context_id, after, limit))
        return [(r[-1], message_from_row(r)) for r in rows]
    # seq is dense, so a forward page is a key range, not an OFFSET.
    rows = conn.execute(SELECT_MESSAGE_RANGE, (context_id, after + 1, after + 1 + limit))
    return [(after + 1 + i, message_from_row(r)) for i, r in enumerate(rows)]


def message_info_sync(
    conn: sqlite3.Connection, context_id: str, message_id: str
) -> tuple[Any, ...] | None:
    """(seq, role, name, redacted, content, content_hash, tokens, rowid, subject, metadata)
    of a message, or None."""
    return conn.execute(SELECT_MESSAGE_INFO, (context_id, message_id)).fetchone()  # type: ignore[no-any-return]


def subjects_upto_sync(conn: sqlite3.Connection, context_id: str, seq: int) -> list[str]:
    """The subjects of the context's messages up to and including ``seq``."""
    return [row[0] for row in conn.execute(SELECT_SUBJECTS_UPTO, (context_id, seq))]


def shown_subjects_sync(
    conn: sqlite3.Connection, context_id: str, message_ids: list[str], summary_id: str | None
) -> list[str]:
    """The subjects of the given messages and summary of the context (what a window showed)."""
    ids = json_encode(message_ids).decode()
    subjects = [row[0] for row in conn.execute(SELECT_MESSAGE_SUBJECTS, (context_id, ids))]
    if summary_id is not None:
        row = conn.execute(SELECT_SUMMARY_SUBJECTS, (context_id, summary_id)).fetchone()
        if row is not None:
            subjects += subjects_decoder.decode(row[0])
    return subjects


def event_id_sync(conn: sqlite3.Connection, event_id: str) -> tuple[str, int] | None:
    """(context_id, position) of an event with a name-based id, if applied."""
    return conn.execute(SELECT_EVENT_ID, (event_id,)).fetchone()  # type: ignore[no-any-return]


def page_sync(
    conn: sqlite3.Connection,
    tenant: str | None,
    before: int,
    limit: int,
    metadata: dict[str, str],
) -> list[ContextRow]:
    """Live contexts of ``tenant`` with position < ``before``, newest first, filtered."""
    sql, params = of(conn, SELECT_PAGE), [tenant, before]
    for key, value in metadata.items():
        sql += of(conn, FILTER_METADATA)
        params += [key, value]
    rows = conn.execute(sql + ORDER_PAGE, [*params, limit])
    return [ContextRow.from_row(r) for r in rows]


def forks_sync(conn: sqlite3.Connection, context_id: str) -> list[tuple[str, int, str | None]]:
    """(fork id, parent version, tenant) of the context's direct forks, oldest first."""
    return list(conn.execute(SELECT_FORKS, (context_id,)))


# -- the database --------------------------------------------------------------------------


def window_sync(
    conn: sqlite3.Connection,
    ctx: ContextRow,
    max_tokens: int | None,
    model: str | None,
    policy: Policy | None,
    last_n: int | None,
    format_name: str = DEFAULT_FORMAT,
) -> Window:
    """``window.window`` of the context's current state, read in O(window): the pinned
    messages and the summary by index, the tail newest-first only as far as it reaches.

    ``left_out`` counts come from seq arithmetic (seq is dense) minus the pinned messages.
    """
    policy, max_tokens, last_n, model, counting = resolve(
        ctx.window, ctx.token_encoding, max_tokens, model, policy, last_n, format_name
    )
    cid = ctx.context_id
    row = conn.execute(SELECT_LATEST_SUMMARY, (cid,)).fetchone()
    summary = None if row is None else summary_from_row(row)
    covered_end = -1 if row is None else int(row[-1])
    pinned_rows = conn.execute(SELECT_PINNED, (cid,)).fetchall()
    pinned = [message_from_row(r) for r in pinned_rows]
    pinned_seqs = [r[-1] for r in pinned_rows]
    seq_of: dict[str, int] = {}

    def newest_first() -> Iterator[Message]:
        for r in conn.execute(SELECT_TAIL, (cid, covered_end)):
            seq_of[r[0]] = r[-1]
            yield message_from_row(r)

    result, tail = compose(
        context_id=cid, version=ctx.version, pinned=pinned, summary=summary,
        newest_first=newest_first(), policy=policy, max_tokens=max_tokens, last_n=last_n,
        model=model, counting=counting,
    )  # fmt: skip

    def unpinned(first: int, last: int) -> int:  # non-system messages with seq in [first, last]
        return (last - first + 1) - sum(1 for s in pinned_seqs if first <= s <= last)

    left: list[LeftOut] = []
    if tail.stop is not None:
        newest = tail.blocked[-1]
        count = unpinned(covered_end + 1, seq_of[newest.message_id])
        left.append(LeftOut(reason=tail.stop, count=count, newest_message_id=newest.message_id))
    if summary is not None:
        count = unpinned(0, covered_end) + len(tail.covered_results)
        if count:
            if tail.covered_results:
                newest_id = tail.covered_results[-1].message_id
            else:
                (newest_id,) = conn.execute(
                    SELECT_NEWEST_UNPINNED_UPTO, (cid, covered_end)
                ).fetchone()
            left.append(
                LeftOut(reason="covered_by_summary", count=count, newest_message_id=newest_id)
            )
    return msgspec.structs.replace(result, left_out=tuple(left))
