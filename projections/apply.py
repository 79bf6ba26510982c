"""Applying a batch of log events to the read model's rows, on the read model's thread.

The projector (``runner``) hands each batch here with what it resolved beforehand (the states
a rollback or a fork needs) and, during a rebuild, the messages' token counts; everything
here runs inside one call on the write connection's thread, in one transaction with the
checkpoint, so a batch is applied exactly once.
"""

from __future__ import annotations

import functools
import itertools
import sqlite3
from collections.abc import Callable, Mapping
from typing import NamedTuple

import msgspec

from eventstore import (
    Content,
    ContextCreated,
    ContextDeleted,
    ContextForked,
    ContextRolledBack,
    MessageAppended,
    MessageEdited,
    MessageRedacted,
    MetadataUpdated,
    RecordedEvent,
    SummaryAdded,
    WindowConfigured,
    WindowSettings,
    to_micros,
)

from .context import content_hash, merge_patch, redacted_content
from .dialect import postgres, twin
from .errors import ReadModelBehind
from .history import CHUNK, write_snapshot_sync
from .positions import Numbering
from .preconditions import changes_content
from .reads import context_sync, message_info_sync
from .search import Indexer
from .shredding import DELETE_SNAPSHOT_CHUNKS, DELETE_SNAPSHOTS, MARK_FORGOTTEN, record_sync
from .state import ContextState, TokenCounting
from .subjects import sealed_subject, sealed_subjects
from .tables import (
    SELECT_CHECKPOINT,
    UPSERT_CHECKPOINT,
    UPSERT_CONTEXT,
    ContextRow,
    content_decoder,
    json_encode,
    message_to_row,
    metadata_decoder,
    summary_to_row,
)
from .tenants import Known, Slots

_INTO_MESSAGES = (
    " INTO messages (context_id, seq, message_id, role, content, name, metadata,"
    " version, tokens, edited_version, redacted, content_hash, subject)"
)
_NEW_MESSAGE = _INTO_MESSAGES + " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, 0, NULL, ?)"
INSERT_MESSAGE = twin(
    "INSERT OR IGNORE" + _NEW_MESSAGE,
    # RETURNING: the cursor's lastrowid (pgconn) is the row it returns.
    "INSERT" + _NEW_MESSAGE + " ON CONFLICT DO NOTHING RETURNING rowid",
)
INSERT_MESSAGES = (
    "INSERT INTO messages (context_id, seq, message_id, role, content, name, metadata, version,"
    " tokens, edited_version, redacted, content_hash, subject)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
UPDATE_EDITED = (
    "UPDATE messages SET content = ?, tokens = ?, edited_version = ?, subject = ?"
    " WHERE context_id = ? AND seq = ?"
)
UPDATE_REDACTED = (
    "UPDATE messages SET content = ?, tokens = ?, redacted = 1, content_hash = ?"
    " WHERE context_id = ? AND seq = ?"
)
DELETE_MESSAGES = "DELETE FROM messages WHERE context_id = ?"
DELETE_SUMMARIES = "DELETE FROM summaries WHERE context_id = ?"
NEXT_SUMMARY_SEQ = "SELECT coalesce(max(seq) + 1, 0) FROM summaries WHERE context_id = ?"
INSERT_SUMMARY = (
    "INSERT INTO summaries (context_id, seq, summary_id, text, through_message_id, version,"
    " tokens, subjects) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)
INSERT_EVENT_ID = twin(
    "INSERT OR IGNORE INTO event_ids (event_id, context_id, position) VALUES (?, ?, ?)",
    "INSERT INTO event_ids (event_id, context_id, position) VALUES (?, ?, ?)"
    " ON CONFLICT DO NOTHING",
)

_HELD_ROWS = 64
"""Rows per statement of held appends on SQLite: 640 values, within its 32,766."""


@functools.cache
def _insert_held(rows: int) -> str:
    """SQLite's statement inserting ``rows`` held rows: one step, its values bound from one
    flat list (measured: 2.3 µs a row, against 4.7 through ``json_each`` and 2.4 one
    ``executemany`` step per row, each of which takes the GIL again)."""
    one = "(?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, 0, NULL, ?)"
    return "INSERT OR IGNORE" + _INTO_MESSAGES + " VALUES " + ", ".join([one] * rows)


# PostgreSQL's: every held row in one round trip, as one JSON parameter.
INSERT_HELD_JSON = (
    "INSERT" + _INTO_MESSAGES + " SELECT value ->> 0, (value ->> 1)::bigint,"
    " value ->> 2, value ->> 3, value ->> 4, value ->> 5, value ->> 6,"
    " (value ->> 7)::bigint, (value ->> 8)::bigint, NULL, 0, NULL, value ->> 9"
    " FROM json_array_elements(?::json) AS value ON CONFLICT DO NOTHING"
)


class DuplicateAppend(Exception):
    """A held append met a message id its context already had (see HeldAppends)."""


class HeldAppends:
    """Appended messages' rows held back and inserted together: 64 rows a statement on
    SQLite, all in one round trip on PostgreSQL.

    For a rebuild, whose full-text index waits for its end (no row's rowid is needed): each
    statement is one step with the GIL released, where a row at a time took a turn of the
    GIL per message against the thread decoding the log. A held row is taken
    as new; a duplicate id (which the fold ignores) is rare enough to be found afterwards:
    when a flush inserts fewer rows than it held, DuplicateAppend undoes the batch, which is
    applied again a row at a time. Anything that reads or replaces messages rows (an edit,
    a snapshot, a rollback) comes after a flush.
    """

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self._rows: list[tuple[object, ...]] = []

    def add(self, row: tuple[object, ...]) -> None:
        self._rows.append(row)

    def flush(self) -> None:
        rows, conn = self._rows, self._conn
        if not rows:
            return
        if postgres(conn):
            inserted = conn.execute(INSERT_HELD_JSON, (json_encode(rows).decode(),)).rowcount
        else:
            inserted = 0
            for i in range(0, len(rows), _HELD_ROWS):
                part = rows[i : i + _HELD_ROWS]
                values = list(itertools.chain.from_iterable(part))
                inserted += conn.execute(_insert_held(len(part)), values).rowcount
        if inserted != len(rows):
            raise DuplicateAppend
        rows.clear()


Resolved = dict[tuple[str, int], ContextState]
Tokens = dict[int, int]
"""Token counts of appended messages by log position, counted ahead of the apply."""


class MessageCounter:
    """``counter.count_message`` with the per-message part memoized by (role, name).

    The recipe is additive (``tokens``: overhead + role + content + name), and empty content
    counts 0, so ``count_message(r, c, n) == count_message(r, "", n) + count_content(c)``:
    one tokenizer call per message instead of two, which is most of a rebuild's CPU.
    """

    def __init__(self, counter: TokenCounting) -> None:
        self.counter = counter
        self.encoding = counter.encoding
        self._base: dict[tuple[str, str | None], int] = {}
        content = getattr(counter, "count_content", None)
        self._content: Callable[[Content], int] | None = content

    def count_message(self, role: str, content: Content, name: str | None = None) -> int:
        """Tokens of one chat message, exactly as ``counter.count_message`` counts them."""
        if self._content is None:
            return self.counter.count_message(role, content, name)
        base = self._base.get((role, name))
        if base is None:
            base = self.counter.count_message(role, "", name)
            if len(self._base) < 10_000:  # names are free text: bound the memo
                self._base[role, name] = base
        return base + self._content(content)


class Applied(NamedTuple):
    """What ``apply_sync`` committed: the rows of the contexts it touched, and whether
    another process had applied some of the batch already (its rows changed under the
    caller's caches)."""

    rows: list[ContextRow]
    shared: bool
    events: int = 0
    """How many of the batch's events this call applied (the rest were applied already)."""


def apply_sync(
    conn: sqlite3.Connection,
    batch: list[RecordedEvent],
    resolved: Resolved,
    counter: TokenCounting,
    snapshot_every: int,
    tokens: Tokens,
    search: bool = True,
    known: Mapping[str, ContextRow] | None = None,
    tenants: Known | None = None,
    hold: bool = False,
) -> Applied:
    """Apply the batch; returns the committed rows of the contexts it touched. ``search``
    False leaves the full-text index alone (a rebuild indexes everything once at its end).
    ``known``: committed rows the caller has at hand (the projector's header cache); each
    is used, copied, only if it is the row just before the event that touches it.
    ``tenants``: what the caller knows of the tenants (updated once the batch commits).
    ``hold`` (with ``search`` False): appends are inserted together (``HeldAppends``); on
    DuplicateAppend nothing was applied, and the batch is for applying without it.

    Events at or before the stored checkpoint are skipped: a read model on file may be
    shared by several processes on one log (two servers, or ``ctxlog erase`` beside a
    server), each with its own projector, and whichever applies an event first applies it
    for all (the checkpoint is read in this write transaction, so they take turns)."""
    tenants = Known() if tenants is None else tenants
    conn.execute("BEGIN IMMEDIATE")
    try:
        stored = conn.execute(SELECT_CHECKPOINT).fetchone()
        _check_follows(stored, batch[0].position)
        shared = stored is not None and batch[0].position <= stored[0]
        if shared:
            batch = [rec for rec in batch if rec.position > stored[0]]
            known = None  # rows the other process wrote are newer than the caller's
            if not batch:
                conn.execute("COMMIT")
                return Applied([], True)
        touched: dict[str, ContextRow | None] = {}
        slots = Slots(conn, tenants)
        index = Indexer(conn, slots) if search else None
        held = HeldAppends(conn) if hold and not search else None
        numbering = Numbering(conn, slots, tenants)
        recorded, at = None, 0
        for rec in batch:
            cid = rec.stream_id
            ctx = touched[cid] if cid in touched else _row_before(conn, rec, known)
            if rec.recorded_at != recorded:  # one group commit: one time for many events
                recorded, at = rec.recorded_at, to_micros(rec.recorded_at)
            ctx = _apply_event(conn, ctx, rec, at, counter, resolved, tokens, index, held)
            touched[cid] = ctx
            if rec.version % snapshot_every == 0 or (
                rec.version == 1 and isinstance(rec.event, ContextForked)
            ):
                # A fork's first state is its own snapshot: resolving it never walks up
                # the fork's ancestors again (a chain of forks would make that O(depth)).
                if held is not None:
                    held.flush()
                write_snapshot_sync(conn, ctx)
            if rec.event_id[14] == "5":  # a name-based UUID: the service's idempotency key
                conn.execute(INSERT_EVENT_ID, (rec.event_id, cid, rec.position))
            record_sync(conn, rec)
            numbering.note(rec.metadata.tenant, rec.position)
        if held is not None:
            held.flush()
        if index is not None:
            index.flush()
        numbering.write()
        rows = [c for c in touched.values() if c]
        conn.executemany(UPSERT_CONTEXT, [c.to_row() for c in rows])
        conn.execute(UPSERT_CHECKPOINT, (batch[-1].position, counter.encoding))
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    slots.committed()
    numbering.committed()
    return Applied(rows, shared, len(batch))


def _check_follows(stored: tuple[int, str] | None, first: int) -> None:
    """ReadModelBehind if the batch starting at ``first`` does not follow the checkpoint: the
    read model was emptied behind the caller (a rebuild on another node), and applying the
    batch would skip events. The projector goes on from the stored checkpoint instead."""
    if stored is not None and first > stored[0] + 1:
        raise ReadModelBehind(stored[0], first)


def _row_before(
    conn: sqlite3.Connection, rec: RecordedEvent, known: Mapping[str, ContextRow] | None
) -> ContextRow | None:
    """The committed row of ``rec``'s context, which must be at the version before it.

    A row is the fold of its context's events up to its version, so a known row at that
    version is the committed one: no SELECT and decode. The copy is the one that changes.
    """
    row = known.get(rec.stream_id) if known else None
    if row is not None and row.version == rec.version - 1:
        return msgspec.structs.replace(row, dirty=set(row.dirty))
    return context_sync(conn, rec.stream_id)


def _apply_event(
    conn: sqlite3.Connection,
    ctx: ContextRow | None,
    rec: RecordedEvent,
    at: int,
    counter: TokenCounting,
    resolved: Resolved,
    counted: Tokens,
    index: Indexer | None,
    held: HeldAppends | None,
) -> ContextRow:
    """Apply one event to the rows of its context, as ``context.fold`` would to the state
    (``at``: its time in µs); ``index`` None leaves the full-text indexes alone. With
    ``held``, an appended message's row waits there and is taken as new (see HeldAppends)."""
    event, cid = rec.event, rec.stream_id
    if held is not None and not isinstance(event, MessageAppended):
        held.flush()  # what follows may read or replace the messages rows
    if ctx is None:
        ctx = ContextRow(
            context_id=cid, tenant=rec.metadata.tenant, position=rec.position,
            version=rec.version, content_version=rec.version, deleted=False, metadata={},
            window=WindowSettings(), parent_id=None, parent_version=None, created_at=at,
            updated_at=at, message_count=0, total_tokens=0, token_encoding=counter.encoding,
            dirty=set(), updated_by=rec.metadata.actor,
        )  # fmt: skip
        match event:
            case ContextCreated(metadata=metadata, window=window):
                ctx.metadata, ctx.window = metadata, window or WindowSettings()
                return ctx
            case ContextForked(parent_id=parent_id, parent_version=parent_version):
                parent = resolved[parent_id, parent_version]
                _restore(conn, ctx, parent, index)
                ctx.parent_id, ctx.parent_version = parent_id, parent_version
                ctx.metadata = merge_patch(parent.metadata, event.metadata)
                ctx.deleted = False
                return ctx
        # Lenient, like the fold: a stream that does not start with a creation starts empty.
        ctx.content_version = 0
    ctx.version, ctx.updated_at, ctx.updated_by = rec.version, at, rec.metadata.actor
    if changes_content(event):
        ctx.content_version = rec.version
    match event:
        case MessageAppended(message_id=mid, role=role, content=content, name=name):
            count = counted.get(rec.position)
            if count is None:
                count = counter.count_message(role, content, name)
            seq = ctx.message_count
            subject = sealed_subject(rec, event.metadata, ctx.metadata)
            row = (
                cid, seq, mid, role, json_encode(content).decode(), name,
                json_encode(event.metadata).decode(), rec.version, count, subject,
            )  # fmt: skip
            if held is not None:
                held.add(row)
                inserted = True
            else:
                cursor = conn.execute(INSERT_MESSAGE, row)
                inserted = bool(cursor.rowcount)  # 0 when the id is there: a duplicate
                if inserted and index is not None:
                    assert cursor.lastrowid is not None  # the row just inserted
                    index.add(ctx.tenant, cursor.lastrowid, content)
            if inserted:
                ctx.message_count += 1
                ctx.total_tokens += count
                ctx.dirty.add(seq // CHUNK)
        case MessageEdited(message_id=mid, content=content):
            info = message_info_sync(conn, cid, mid)
            if info is None or info[3]:
                return ctx  # unknown or redacted: nothing changes
            seq, role, name, _, old_content, _, old_tokens, rowid, subject, own = info
            tokens = counter.count_message(role, content, name)
            subject = sealed_subject(rec, metadata_decoder.decode(own), ctx.metadata, subject)
            conn.execute(UPDATE_EDITED, (
                json_encode(content).decode(), tokens, rec.version, subject, cid, seq
            ))  # fmt: skip
            if index is not None:
                index.remove(ctx.tenant, rowid, old_content)
                index.add(ctx.tenant, rowid, content)
            ctx.total_tokens += tokens - old_tokens
            ctx.dirty.add(seq // CHUNK)
            ctx.reshaped = rec.version
        case MessageRedacted(message_id=mid):
            info = message_info_sync(conn, cid, mid)
            if info is None:
                return ctx
            seq, role, name, redacted, content, old_hash, old_tokens, rowid, _, _ = info
            old = content_decoder.decode(content)
            new_hash = old_hash if redacted else content_hash(old)
            blank = redacted_content(old)
            tokens = counter.count_message(role, blank, name)
            conn.execute(UPDATE_REDACTED, (json_encode(blank).decode(), tokens, new_hash, cid, seq))
            ctx.reshaped = rec.version
            if index is not None:
                index.remove(ctx.tenant, rowid, content)
                index.add(ctx.tenant, rowid, blank)  # a skeleton's tool names, as a rebuild would
            ctx.total_tokens += tokens - old_tokens
            ctx.dirty.add(seq // CHUNK)
        case MetadataUpdated(patch=patch):
            ctx.metadata = merge_patch(ctx.metadata, patch)
        case WindowConfigured(window=window):
            ctx.window = window
        case SummaryAdded(summary_id=sid, text=text, through_message_id=through):
            (seq,) = conn.execute(NEXT_SUMMARY_SEQ, (cid,)).fetchone()
            tokens = counter.count_message("system", text)
            subjects = json_encode(sealed_subjects(rec, ctx.metadata)).decode()
            conn.execute(
                INSERT_SUMMARY, (cid, seq, sid, text, through, rec.version, tokens, subjects)
            )
        case ContextRolledBack(to_version=target):
            if 1 <= target < rec.version:
                _restore(conn, ctx, resolved[cid, target], index)
        case ContextDeleted():
            ctx.deleted = True
    return ctx


def refold_sync(
    conn: sqlite3.Connection,
    states: list[ContextState],
    forgotten: list[str],
    tenants: Known | None = None,
) -> tuple[list[ContextRow], list[str]]:
    """Replace each context's rows with its state in ``states`` (folded again from the log
    once keys were destroyed, see ``shredding``) and drop its snapshots (they hold the old
    content), in one transaction; unless some context must be folded again, the same
    transaction notes the ``forgotten`` keys. A context whose row moved past its state's
    version meanwhile (another process sharing this read model applied more) is left alone
    and its id returned, to be folded again; also returned: the new rows of the others."""
    tenants = Known() if tenants is None else tenants
    conn.execute("BEGIN IMMEDIATE")
    try:
        slots = Slots(conn, tenants)
        index = Indexer(conn, slots)
        rows, stale = [], []
        for state in states:
            row = context_sync(conn, state.context_id)
            if row is None or row.version != state.version:
                stale.append(state.context_id)
                continue
            _restore(conn, row, state, index)
            row.reshaped = row.version + 1  # the same version, other content
            conn.execute(DELETE_SNAPSHOTS, (row.context_id,))
            conn.execute(DELETE_SNAPSHOT_CHUNKS, (row.context_id,))
            rows.append(row)
        index.flush()
        conn.executemany(UPSERT_CONTEXT, [row.to_row() for row in rows])
        if not stale:
            conn.executemany(MARK_FORGOTTEN, [(key_id,) for key_id in forgotten])
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    slots.committed()
    return rows, stale


def _restore(
    conn: sqlite3.Connection, ctx: ContextRow, state: ContextState, index: Indexer | None
) -> None:
    """Make ``ctx``'s content that of ``state``: messages, summaries, metadata, window,
    deleted (not identity, version or times). O(messages)."""
    cid = ctx.context_id
    if index is not None:
        index.remove_context(ctx.tenant, cid)
    conn.execute(DELETE_MESSAGES, (cid,))
    conn.executemany(
        INSERT_MESSAGES, [message_to_row(cid, seq, m) for seq, m in enumerate(state.messages)]
    )
    if index is not None:
        index.add_context(ctx.tenant, cid)
    conn.execute(DELETE_SUMMARIES, (cid,))
    conn.executemany(
        INSERT_SUMMARY, [summary_to_row(cid, seq, s) for seq, s in enumerate(state.summaries)]
    )
    ctx.metadata, ctx.window, ctx.deleted = state.metadata, state.window, state.deleted
    ctx.message_count = len(state.messages)
    ctx.total_tokens = state.total_tokens
    ctx.dirty = set(range(-(-ctx.message_count // CHUNK)))
    ctx.reshaped = ctx.version
