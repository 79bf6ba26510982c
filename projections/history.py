"""Time travel: a context's state at any version or time, from snapshots plus at most K events.

Snapshot scheme. Every ``SNAPSHOT_EVERY`` (K = 256) versions of a stream, the projector
stores, in the same transaction as the batch that reached that version:

- a ``snapshots`` row: the state's header (a msgpack ``ContextState`` without messages:
  metadata, window, summaries, parent, times) and its ``message_count``;
- a ``snapshot_chunks`` row for each chunk of ``CHUNK`` (256) consecutive messages that changed
  since the previous snapshot (appends touch the last chunk, an edit or redaction its own
  chunk, a rollback or fork all of them). Chunk ``c`` of the snapshot at version S is the
  newest row of chunk ``c`` with ``version <= S``.

So a snapshot costs O(CHUNK + changed chunks) to write, not O(context) (a full copy every K
events of a 100,000-message context would be O(n²/K) bytes), and the whole log of chunks is
about 2x the messages. Reading the state at version V: the newest snapshot at or before V
(one index seek per chunk), then fold the at most K-1 events after it (``fold(base=)``).
Chunk rows never change once written, so decoded chunks are kept in an LRU cache keyed by
(context, chunk, version) and shared by every state built from them: on a warm cache a read
of a 100,000-message state costs O(chunks) seeks plus the fold, not 100,000 decodes.

Rollback targets older than the snapshot and a fork's parent are resolved the same way
before folding (``fold`` takes a synchronous resolver), by an explicit stack
(``lineage.resolve``): a chain of forks of any depth costs heap, not Python's stack. The
projector writes a snapshot at a fork's version 1 as well, so a chain is walked once, when
each fork is projected, and never again.
"""

from __future__ import annotations

import collections
import math
import sqlite3
from datetime import datetime
from itertools import chain

import msgspec

from eventstore import EventStore

from .dialect import twin
from .errors import ContextNotFound, ContextNotYetCreated, InvalidVersion
from .lineage import Key, Pending, needs, resolve
from .readmodel import Model
from .reads import summaries_sync
from .state import ContextState, Message, TokenCounting
from .tables import ContextRow

SNAPSHOT_EVERY = 256
"""K: a time-travel read folds at most K-1 events after its snapshot."""
CHUNK = 256
"""Messages per snapshot chunk; the last chunk is rewritten at each snapshot (≤ 1 message
re-encoded per event when CHUNK ≤ K)."""

SELECT_SNAPSHOT = (
    "SELECT version, message_count, header FROM snapshots"
    " WHERE context_id = ? AND version <= ? ORDER BY version DESC LIMIT 1"
)
SELECT_CHUNK_VERSION = (
    "SELECT version FROM snapshot_chunks WHERE context_id = ? AND chunk = ? AND version <= ?"
    " ORDER BY version DESC LIMIT 1"
)
SELECT_CHUNK = (
    "SELECT messages FROM snapshot_chunks WHERE context_id = ? AND chunk = ? AND version = ?"
)
INSERT_SNAPSHOT = twin(
    "INSERT OR REPLACE INTO snapshots (context_id, version, message_count, header)"
    " VALUES (?, ?, ?, ?)",
    "INSERT INTO snapshots (context_id, version, message_count, header) VALUES (?, ?, ?, ?)"
    " ON CONFLICT (context_id, version) DO UPDATE"
    " SET message_count = excluded.message_count, header = excluded.header",
)
# The chunk is the JSON array of its Messages, built by SQLite from the rows, whose content
# and metadata are JSON already: no row crosses into Python (this was most of a snapshot's
# cost). The aggregate takes the rows in the subquery's order (SQLite feeds an aggregate in
# the order its source yields; tests compare every snapshot with a full fold).
INSERT_CHUNK = """
INSERT OR REPLACE INTO snapshot_chunks (context_id, chunk, version, messages)
SELECT ?, ?, ?, json_group_array(json_object(
    'message_id', message_id, 'role', role, 'content', json(content), 'name', name,
    'metadata', json(metadata), 'version', version, 'tokens', tokens,
    'edited_version', edited_version, 'redacted', json(CASE WHEN redacted THEN 'true'
    ELSE 'false' END), 'content_hash', content_hash, 'subject', subject))
FROM (SELECT * FROM messages WHERE context_id = ? AND seq >= ? AND seq < ? ORDER BY seq)
"""
twin(
    INSERT_CHUNK,
    """
INSERT INTO snapshot_chunks (context_id, chunk, version, messages)
SELECT ?, ?, ?, coalesce(json_agg(json_build_object(
    'message_id', message_id, 'role', role, 'content', content::json, 'name', name,
    'metadata', metadata::json, 'version', version, 'tokens', tokens,
    'edited_version', edited_version, 'redacted', redacted <> 0,
    'content_hash', content_hash, 'subject', subject) ORDER BY seq)::text, '[]')
FROM messages WHERE context_id = ? AND seq >= ? AND seq < ?
ON CONFLICT (context_id, chunk, version) DO UPDATE SET messages = excluded.messages
""",
)

_encode = msgspec.msgpack.Encoder().encode
_json_encode = msgspec.json.Encoder().encode
_header_decoder = msgspec.msgpack.Decoder(ContextState)
_chunk_decoder = msgspec.json.Decoder(list[Message])

ChunkKey = tuple[str, int, int]
"""(context_id, chunk, version) of a snapshot chunk row."""
_Chunk = tuple[tuple[Message, ...], dict[str, int]]


def write_snapshot_sync(conn: sqlite3.Connection, ctx: ContextRow) -> None:
    """Store the snapshot of ``ctx`` as its rows stand now (inside the projector's batch)."""
    count = ctx.message_count
    for chunk in sorted(ctx.dirty):
        start = chunk * CHUNK
        if start >= count:
            continue  # beyond the end after a rollback: never read at this snapshot
        cid = ctx.context_id
        conn.execute(INSERT_CHUNK, (cid, chunk, ctx.version, cid, start, start + CHUNK))
    header = ctx.state((), summaries_sync(conn, ctx.context_id))
    conn.execute(INSERT_SNAPSHOT, (ctx.context_id, ctx.version, count, _encode(header)))
    ctx.dirty.clear()


def _snapshot_sync(
    conn: sqlite3.Connection, context_id: str, version: int
) -> tuple[bytes, int, list[ChunkKey]] | None:
    row = conn.execute(SELECT_SNAPSHOT, (context_id, version)).fetchone()
    if row is None:
        return None
    at, count, header = row
    keys = []
    for chunk in range(math.ceil(count / CHUNK)):
        (chunk_version,) = conn.execute(SELECT_CHUNK_VERSION, (context_id, chunk, at)).fetchone()
        keys.append((context_id, chunk, chunk_version))
    return header, count, keys


def _chunks_sync(conn: sqlite3.Connection, keys: list[ChunkKey]) -> list[bytes] | None:
    """The chunks' rows; None if one is gone (the projector dropped the context's snapshots
    after the snapshot was read: they held erased content)."""
    rows = [conn.execute(SELECT_CHUNK, key).fetchone() for key in keys]
    return None if any(row is None for row in rows) else [row[0] for row in rows]


async def not_found_at(store: EventStore, context_id: str, at: datetime) -> ContextNotFound:
    """Why ``context_id`` has no state as of ``at``: it was created later
    (ContextNotYetCreated, saying when), or it does not exist at all."""
    first = await store.read_stream(context_id, 1, limit=1)
    if not first:
        return ContextNotFound(context_id)
    return ContextNotYetCreated(context_id, at, first[0].recorded_at)


class History:
    """States at past versions and times, for one store and its read model."""

    def __init__(
        self,
        store: EventStore,
        readmodel: Model,
        counter: TokenCounting,
        *,
        cache_messages: int = 1_000_000,
    ) -> None:
        self.store = store
        self.readmodel = readmodel
        self.counter = counter
        self.cache_messages = cache_messages
        self._cache: collections.OrderedDict[ChunkKey, _Chunk] = collections.OrderedDict()
        self._cached = 0
        self._generation = 0

    def clear_cache(self) -> None:
        """Forget decoded chunks (after a rebuild, or once erased content was forgotten); a
        read in flight does not put what it read before back."""
        self._cache.clear()
        self._cached = 0
        self._generation += 1

    async def state_at(
        self,
        context_id: str,
        version: int,
        memo: dict[Key, ContextState] | None = None,
        *,
        fresh: bool = False,
    ) -> ContextState:
        """The state as of ``version``; InvalidVersion if the stream has not reached it.

        Cost: one snapshot (chunks from the cache when warm) plus at most K-1 events folded,
        plus the same again for each older rollback target or fork parent it depends on
        (resolved by ``lineage.resolve``, without recursion; a fork has a snapshot at its
        version 1, so its parent is not needed again once the fork is projected). ``memo``
        keeps the states resolved on the way, for calls that share ancestors. ``fresh``: from
        the log alone, no snapshot (O(events), the parents' included): what the content reads
        as now, for a read model that must forget erased content.
        """
        memo = {} if memo is None else memo
        load = self._load_fresh if fresh else self._load
        return await resolve((context_id, version), load, self.counter, memo)

    async def _load_fresh(self, context_id: str, version: int) -> ContextState | Pending:
        return await self._load(context_id, version, fresh=True)

    async def _load(
        self, context_id: str, version: int, *, fresh: bool = False
    ) -> ContextState | Pending:
        """The snapshot at ``version`` itself, or the fold that reaches it from the newest
        snapshot before it (from version 1 without one; ``fresh``: always from version 1)."""
        if version < 1:
            raise InvalidVersion(context_id, version, await self.store.stream_version(context_id))
        base = None if fresh else await self._snapshot(context_id, version)
        start = 1 if base is None else base.version + 1
        if base is not None and start > version:
            return base
        events = [e async for e in self.store.iter_stream(context_id, start, version)]
        if len(events) != version - start + 1:
            current = await self.store.stream_version(context_id)
            if current == 0:
                raise ContextNotFound(context_id)
            raise InvalidVersion(context_id, version, current)
        return Pending(base, events, needs(events, 1 if base is None else base.version))

    async def state_at_time(self, context_id: str, at: datetime) -> ContextState:
        """The state as of ``at`` (its last event recorded at or before); ContextNotFound if
        there is no such context, ContextNotYetCreated (one) if it was created after ``at``."""
        version = await self.store.stream_version_at(context_id, at)
        if version == 0:
            raise await not_found_at(self.store, context_id, at)
        return await self.state_at(context_id, version)

    async def _snapshot(self, context_id: str, version: int) -> ContextState | None:
        found = await self.readmodel.read(_snapshot_sync, context_id, version)
        if found is None:
            return None
        header_blob, count, keys = found
        chunks: dict[ChunkKey, _Chunk] = {}
        for key in keys:
            if key in self._cache:
                chunks[key] = self._cache[key]
                self._cache.move_to_end(key)
        missing = [key for key in keys if key not in chunks]
        if missing:
            generation = self._generation
            blobs = await self.readmodel.read(_chunks_sync, missing)
            if blobs is None:
                return None
            for key, blob in zip(missing, blobs, strict=True):
                messages = tuple(_chunk_decoder.decode(blob))
                offset = key[1] * CHUNK
                index = {m.message_id: offset + i for i, m in enumerate(messages)}
                chunks[key] = (messages, index)
                if generation == self._generation:
                    self._remember(key, chunks[key])
        header = _header_decoder.decode(header_blob)
        state = msgspec.structs.replace(
            header, messages=tuple(chain.from_iterable(chunks[k][0] for k in keys))[:count]
        )
        index = {}
        for key in keys:
            chunk_index = chunks[key][1]
            index.update(chunk_index)
        # ContextState.index is a cached_property: seeding it from the chunks' indexes saves
        # rebuilding a 100,000-entry dict message by message when the fold thaws this base.
        state.__dict__["index"] = index
        return state

    def _remember(self, key: ChunkKey, chunk: _Chunk) -> None:
        self._cache[key] = chunk
        self._cached += len(chunk[0])
        while self._cached > self.cache_messages and len(self._cache) > 1:
            _, (messages, _) = self._cache.popitem(last=False)
            self._cached -= len(messages)
