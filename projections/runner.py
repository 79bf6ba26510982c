"""The projector: follows the log from the read model's checkpoint and keeps its tables current.

Exactly-once: each batch's rows and the new checkpoint commit in one read-model transaction
(``BEGIN IMMEDIATE`` … ``COMMIT`` in one call on the connection's thread). A crash before the
commit leaves the checkpoint where it was and the batch is applied again on restart; a crash
after leaves both. Nothing is ever applied twice.

Batching: a pump task reads ``store.subscribe(after=checkpoint)`` into a bounded queue; the
apply loop takes everything queued (up to ``batch_size``) as one transaction, so a burst costs
few commits, and a lone append is applied at once.

Per event (see ``readmodel`` for the tables): an append is one ``INSERT OR IGNORE`` (a
duplicate message id is ignored, as the fold does); an edit or redaction one point lookup and
one update; other events touch only the context row, which is read once per batch and written
back once. A rollback or a fork needs a state from elsewhere (the target version, the parent
at the fork point): it is resolved through ``History`` before the transaction, and the
context's message and summary rows are rewritten (O(context), rare). Every ``SNAPSHOT_EVERY``
versions a snapshot is written in the same transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import Callable

from eventstore import (
    Content,
    ContextCreated,
    ContextDeleted,
    ContextForked,
    ContextRolledBack,
    EventStore,
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

from .context import content_hash, merge_patch
from .errors import ProjectionError
from .history import CHUNK, SNAPSHOT_EVERY, History, write_snapshot_sync
from .readmodel import (
    UPSERT_CHECKPOINT,
    UPSERT_CONTEXT,
    ContextRow,
    ReadModel,
    content_decoder,
    context_sync,
    json_encode,
    message_info_sync,
    message_to_row,
    reset_sync,
)
from .state import ContextState, TokenCounting

Progress = Callable[[int, int], None]
"""Called with (events done, events in the log) during a rebuild."""

INSERT_MESSAGE = (
    "INSERT OR IGNORE INTO messages (context_id, seq, message_id, role, content, name, metadata,"
    " version, tokens, edited_version, redacted, content_hash)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, 0, NULL)"
)
INSERT_MESSAGES = (
    "INSERT INTO messages (context_id, seq, message_id, role, content, name, metadata, version,"
    " tokens, edited_version, redacted, content_hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
UPDATE_EDITED = (
    "UPDATE messages SET content = ?, tokens = ?, edited_version = ?"
    " WHERE context_id = ? AND seq = ?"
)
UPDATE_REDACTED = (
    "UPDATE messages SET content = '\"\"', tokens = ?, redacted = 1, content_hash = ?"
    " WHERE context_id = ? AND seq = ?"
)
DELETE_MESSAGES = "DELETE FROM messages WHERE context_id = ?"
DELETE_SUMMARIES = "DELETE FROM summaries WHERE context_id = ?"
NEXT_SUMMARY_SEQ = "SELECT coalesce(max(seq) + 1, 0) FROM summaries WHERE context_id = ?"
INSERT_SUMMARY = (
    "INSERT INTO summaries (context_id, seq, summary_id, text, through_message_id, version,"
    " tokens) VALUES (?, ?, ?, ?, ?, ?, ?)"
)
INSERT_EVENT_ID = (
    "INSERT OR IGNORE INTO event_ids (event_id, context_id, position) VALUES (?, ?, ?)"
)

Resolved = dict[tuple[str, int], ContextState]


class _MessageCounter:
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


class ProjectorFailed(ProjectionError):
    """The projector stopped on an error; the read model holds everything before it."""


class Projector:
    """Keeps a ReadModel current with an EventStore; ``wait_for`` gives read-your-writes."""

    def __init__(
        self,
        store: EventStore,
        readmodel: ReadModel,
        history: History,
        counter: TokenCounting,
        *,
        batch_size: int = 1000,
        snapshot_every: int = SNAPSHOT_EVERY,
        poll_interval: float = 1.0,
        wait_timeout: float = 30.0,
    ) -> None:
        self.store = store
        self.readmodel = readmodel
        self.history = history
        self.counter = counter
        self._counting = _MessageCounter(counter)
        self.batch_size = batch_size
        self.snapshot_every = snapshot_every
        self.poll_interval = poll_interval
        self.wait_timeout = wait_timeout
        self.checkpoint = 0
        """The last log position applied (and committed)."""
        self.error: BaseException | None = None
        self._task: asyncio.Task[None] | None = None
        self._advanced = asyncio.Event()

    @property
    def running(self) -> bool:
        """True while the live loop runs."""
        return self._task is not None and not self._task.done()

    async def start(self, checkpoint: int) -> None:
        """Follow the log from ``checkpoint`` (the read model's, from ``ReadModel.open``)."""
        if self.running:
            return
        if checkpoint > await self.store.head():
            # The read model is ahead of this log: it was built from another one.
            await self.readmodel.write(reset_sync, self.counter.encoding)
            self.history.clear_cache()
            checkpoint = 0
        self.checkpoint = checkpoint
        self.error = None
        self._task = asyncio.create_task(self._follow(), name="ctxlog-projector")

    async def stop(self) -> None:
        """Stop following; what was committed stays."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            # A failure is already in self.error (wait_for reports it); stopping is not one.
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._wake()

    async def wait_for(self, position: int) -> None:
        """Return once everything up to ``position`` is applied; ProjectorFailed if the
        projector stopped, TimeoutError after ``wait_timeout`` seconds."""
        async with asyncio.timeout(self.wait_timeout):
            while self.checkpoint < position:
                if self.error is not None:
                    raise ProjectorFailed(f"the projector stopped: {self.error!r}") from self.error
                if not self.running:
                    raise ProjectorFailed("the projector is not running")
                await self._advanced.wait()

    async def catch_up(self) -> None:
        """Wait until the read model has everything the log held when called."""
        head = await self.store.head()
        async with asyncio.timeout(None):  # a long catch-up is not a stuck projector
            while self.checkpoint < head:
                await self.wait_for(min(head, self.checkpoint + 1))

    async def rebuild(self, progress: Progress | None = None, *, batch_size: int = 10_000) -> int:
        """Drop the read model and replay the whole log; returns the events applied.

        The live loop (if running) is stopped for the duration and restarted after.
        """
        was_running = self.running
        await self.stop()
        await self.readmodel.write(reset_sync, self.counter.encoding)
        self.history.clear_cache()
        self.checkpoint = 0
        total = await self.store.head()
        done = 0
        while True:
            events, through = await self.store.read_all(self.checkpoint, batch_size)
            if events:
                await self.apply(events)
                done += len(events)
            if progress is not None:
                progress(through, max(total, through))
            if len(events) < batch_size:
                break
        if was_running:
            await self.start(self.checkpoint)
        return done

    async def apply(self, batch: list[RecordedEvent]) -> None:
        """Apply consecutive log events in one transaction with the checkpoint."""
        resolved: Resolved = {}
        for rec in batch:
            match rec.event:
                case ContextForked(parent_id=parent, parent_version=at) if rec.version == 1:
                    resolved[parent, at] = await self.history.state_at(parent, at)
                case ContextRolledBack(to_version=target) if 1 <= target < rec.version:
                    key = (rec.stream_id, target)
                    resolved[key] = await self.history.state_at(*key)
        await self.readmodel.write(
            _apply_sync, batch, resolved, self._counting, self.snapshot_every
        )
        self.checkpoint = batch[-1].position
        self._wake()

    def _wake(self) -> None:
        woken, self._advanced = self._advanced, asyncio.Event()
        woken.set()

    async def _follow(self) -> None:
        queue: asyncio.Queue[RecordedEvent] = asyncio.Queue(maxsize=4 * self.batch_size)
        events = self.store.subscribe(self.checkpoint, poll_interval=self.poll_interval)

        async def pump() -> None:
            async for rec in events:
                await queue.put(rec)

        pumping = asyncio.create_task(pump(), name="ctxlog-projector-pump")
        try:
            while True:
                await self.apply(await self._next_batch(queue, pumping))
        except asyncio.CancelledError:
            raise
        except BaseException as e:
            self.error = e
            self._wake()
            raise
        finally:
            pumping.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await pumping
            await events.aclose()

    async def _next_batch(
        self, queue: asyncio.Queue[RecordedEvent], pumping: asyncio.Task[None]
    ) -> list[RecordedEvent]:
        """Everything queued (at least one event, at most ``batch_size``)."""
        getting = asyncio.ensure_future(queue.get())
        try:
            await asyncio.wait({getting, pumping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not getting.done():
                getting.cancel()
        if getting.cancelled():
            pumping.result()  # re-raises what stopped the subscription
            raise ProjectorFailed("the subscription ended")
        batch = [getting.result()]
        while len(batch) < self.batch_size and not queue.empty():
            batch.append(queue.get_nowait())
        return batch


# -- the batch, on the read model's thread ------------------------------------------------


def _apply_sync(
    conn: sqlite3.Connection,
    batch: list[RecordedEvent],
    resolved: Resolved,
    counter: TokenCounting,
    snapshot_every: int,
) -> None:
    conn.execute("BEGIN IMMEDIATE")
    try:
        touched: dict[str, ContextRow | None] = {}
        for rec in batch:
            cid = rec.stream_id
            ctx = touched[cid] if cid in touched else context_sync(conn, cid)
            ctx = _apply_event(conn, ctx, rec, counter, resolved)
            touched[cid] = ctx
            if rec.version % snapshot_every == 0:
                write_snapshot_sync(conn, ctx)
            if rec.event_id[14] == "5":  # a name-based UUID: the service's idempotency key
                conn.execute(INSERT_EVENT_ID, (rec.event_id, cid, rec.position))
        conn.executemany(UPSERT_CONTEXT, [c.to_row() for c in touched.values() if c])
        conn.execute(UPSERT_CHECKPOINT, (batch[-1].position, counter.encoding))
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def _apply_event(
    conn: sqlite3.Connection,
    ctx: ContextRow | None,
    rec: RecordedEvent,
    counter: TokenCounting,
    resolved: Resolved,
) -> ContextRow:
    """Apply one event to the rows of its context, as ``context.fold`` would to the state."""
    event, cid, at = rec.event, rec.stream_id, to_micros(rec.recorded_at)
    if ctx is None:
        ctx = ContextRow(
            context_id=cid, tenant=rec.metadata.tenant, position=rec.position,
            version=rec.version, deleted=False, metadata={}, window=WindowSettings(),
            parent_id=None, parent_version=None, created_at=at, updated_at=at, message_count=0,
            total_tokens=0, token_encoding=counter.encoding, dirty=set(),
        )  # fmt: skip
        match event:
            case ContextCreated(metadata=metadata, window=window):
                ctx.metadata, ctx.window = metadata, window or WindowSettings()
                return ctx
            case ContextForked(parent_id=parent_id, parent_version=parent_version):
                parent = resolved[parent_id, parent_version]
                _restore(conn, ctx, parent)
                ctx.parent_id, ctx.parent_version = parent_id, parent_version
                ctx.metadata = merge_patch(parent.metadata, event.metadata)
                ctx.deleted = False
                return ctx
        # Lenient, like the fold: a stream that does not start with a creation starts empty.
    ctx.version, ctx.updated_at = rec.version, at
    match event:
        case MessageAppended(message_id=mid, role=role, content=content, name=name):
            tokens = counter.count_message(role, content, name)
            seq = ctx.message_count
            inserted = conn.execute(INSERT_MESSAGE, (
                cid, seq, mid, role, json_encode(content).decode(), name,
                json_encode(event.metadata).decode(), rec.version, tokens,
            )).rowcount  # fmt: skip
            if inserted:  # 0 when the id is already there: a duplicate changes nothing
                ctx.message_count += 1
                ctx.total_tokens += tokens
                ctx.dirty.add(seq // CHUNK)
        case MessageEdited(message_id=mid, content=content):
            info = message_info_sync(conn, cid, mid)
            if info is None or info[3]:
                return ctx  # unknown or redacted: nothing changes
            seq, role, name, _, _, _, old_tokens = info
            tokens = counter.count_message(role, content, name)
            conn.execute(
                UPDATE_EDITED, (json_encode(content).decode(), tokens, rec.version, cid, seq)
            )
            ctx.total_tokens += tokens - old_tokens
            ctx.dirty.add(seq // CHUNK)
        case MessageRedacted(message_id=mid):
            info = message_info_sync(conn, cid, mid)
            if info is None:
                return ctx
            seq, role, name, redacted, content, old_hash, old_tokens = info
            new_hash = old_hash if redacted else content_hash(content_decoder.decode(content))
            tokens = counter.count_message(role, "", name)
            conn.execute(UPDATE_REDACTED, (tokens, new_hash, cid, seq))
            ctx.total_tokens += tokens - old_tokens
            ctx.dirty.add(seq // CHUNK)
        case MetadataUpdated(patch=patch):
            ctx.metadata = merge_patch(ctx.metadata, patch)
        case WindowConfigured(window=window):
            ctx.window = window
        case SummaryAdded(summary_id=sid, text=text, through_message_id=through):
            (seq,) = conn.execute(NEXT_SUMMARY_SEQ, (cid,)).fetchone()
            tokens = counter.count_message("system", text)
            conn.execute(INSERT_SUMMARY, (cid, seq, sid, text, through, rec.version, tokens))
        case ContextRolledBack(to_version=target):
            if 1 <= target < rec.version:
                _restore(conn, ctx, resolved[cid, target])
        case ContextDeleted():
            ctx.deleted = True
    return ctx


def _restore(conn: sqlite3.Connection, ctx: ContextRow, state: ContextState) -> None:
    """Make ``ctx``'s content that of ``state``: messages, summaries, metadata, window,
    deleted (not identity, version or times). O(messages)."""
    cid = ctx.context_id
    conn.execute(DELETE_MESSAGES, (cid,))
    conn.executemany(
        INSERT_MESSAGES, [message_to_row(cid, seq, m) for seq, m in enumerate(state.messages)]
    )
    conn.execute(DELETE_SUMMARIES, (cid,))
    conn.executemany(INSERT_SUMMARY, [
        (cid, seq, s.summary_id, s.text, s.through_message_id, s.version, s.tokens)
        for seq, s in enumerate(state.summaries)
    ])  # fmt: skip
    ctx.metadata, ctx.window, ctx.deleted = state.metadata, state.window, state.deleted
    ctx.message_count = len(state.messages)
    ctx.total_tokens = state.total_tokens
    ctx.dirty = set(range(-(-ctx.message_count // CHUNK)))
