"""In-memory caches of committed read-model data, so the hot paths (a command's validation, a
repeated window read) need no trip to a read-model connection.

Both hold only what is immutable once committed, or versioned: a context's row is replaced
by newer versions only (versions only grow; a rollback is a new version), and a window is
keyed by the version it was computed at. So a cache can be stale only by being behind, and
the code that reads it checks versions where that matters. Bounded: the least recently used
entries go first.

One exception: an erasure changes what the read model holds without a new version of every
context it touches, and a rebuild replaces it whole. Then the caches are emptied, and a read
that began before that does not put what it read back: it notes the cache's ``generation``
before reading and passes it to ``put``, which ignores a value of an older generation.
"""

from __future__ import annotations

import bisect
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable
from operator import attrgetter
from typing import Generic, TypeVar

import msgspec

from .state import ContextState
from .tables import ContextRow
from .window import Policy, Window

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class LRU(Generic[K, V]):
    """A bounded mapping that forgets the least recently used entry first."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._items: OrderedDict[K, V] = OrderedDict()
        self.generation = 0
        """Moves on at each ``clear``."""
        self.hits = 0
        """Lookups that found their value (for metrics), and ``misses`` those that did not."""
        self.misses = 0

    def get(self, key: K) -> V | None:
        """The value, or None; marks it recently used."""
        value = self._items.get(key)
        if value is not None:
            self._items.move_to_end(key)
            self.hits += 1
        else:
            self.misses += 1
        return value

    def put(self, key: K, value: V, generation: int | None = None) -> None:
        """Keep ``value`` (handed over: it must not be mutated afterwards), unless it was
        read before the cache was last cleared (``generation`` older than the cache's)."""
        if generation is not None and generation != self.generation:
            return
        self._items[key] = value
        self._items.move_to_end(key)
        if len(self._items) > self.capacity:
            self._items.popitem(last=False)

    def discard(self, key: K) -> None:
        """Forget ``key``'s value (another node changed it); a value read before this is not
        put back (``generation`` moves on, as at ``clear``)."""
        self._items.pop(key, None)
        self.generation += 1

    def clear(self) -> None:
        """Forget everything (the read model was reset, or forgot erased content)."""
        self._items.clear()
        self.generation += 1

    def __len__(self) -> int:
        return len(self._items)


class SizedLRU(LRU[K, V]):
    """An ``LRU`` bounded by the total ``size`` of its values (bytes), not their number; a
    value larger than the whole bound is not kept."""

    def __init__(self, max_bytes: int, size: Callable[[V], int]) -> None:
        super().__init__(max_bytes)
        self._size = size
        self._bytes = 0

    def put(self, key: K, value: V, generation: int | None = None) -> None:
        size = self._size(value)
        if size > self.capacity or (generation is not None and generation != self.generation):
            return
        old = self._items.pop(key, None)
        if old is not None:
            self._bytes -= self._size(old)
        self._items[key] = value
        self._bytes += size
        while self._bytes > self.capacity:
            _, dropped = self._items.popitem(last=False)
            self._bytes -= self._size(dropped)

    def discard(self, key: K) -> None:
        old = self._items.get(key)
        if old is not None:
            self._bytes -= self._size(old)
        super().discard(key)

    def clear(self) -> None:
        super().clear()
        self._bytes = 0


class HeaderCache(LRU[str, ContextRow]):
    """Context rows by id, as of the read model's last commit (or newer).

    The projector puts what it has just committed, and a read that missed puts what it read;
    a row never replaces a newer one, so a slow miss-read cannot bring back a row the
    projector has moved past. A ContextRow with small metadata is well under 1 KB.
    """

    def __init__(self, capacity: int = 100_000) -> None:
        super().__init__(capacity)

    def put_row(self, row: ContextRow, generation: int | None = None) -> None:
        """Keep ``row`` unless a newer version of it is cached, or it was read before the
        cache last forgot something (``generation``: its value when the read began)."""
        cached = self._items.get(row.context_id)
        if cached is None or cached.version <= row.version:
            self.put(row.context_id, row, generation)

    def put_rows(self, rows: Iterable[ContextRow]) -> None:
        """``put_row`` each row."""
        for row in rows:
            self.put_row(row)


WindowParams = tuple[int | None, str | None, Policy | None, int | None, str]
"""(max_tokens, model, policy, last_n, format) of a window request."""
WindowKey = tuple[str, int, int | None, str | None, Policy | None, int | None, str]
"""(context id, content version, *WindowParams) of a window request."""


class WindowCache(LRU[WindowKey, Window]):
    """Windows by the content version they were computed at (``preconditions``: records of
    served windows do not move it) and the request's parameters: the window of a content
    version never changes but for its ``version``, so an entry is valid until it is evicted,
    and the chat loop's record does not make the next turn's window a miss. Windows are as
    large as their budget; the default keeps about one per active conversation."""

    def __init__(self, capacity: int = 1024) -> None:
        super().__init__(capacity)


class Assembled(msgspec.Struct, frozen=True):
    """A context's messages as the API's JSON as of ``version``: the list's items are
    ``b",".join(runs)``, each run a comma-joined stretch of them (an append adds a run; no
    copy of what was there), and ``ends`` holds where each message ends in that join, so a
    budget cuts it without parsing; ``state`` and ``total_tokens`` are the context's head."""

    version: int
    runs: tuple[bytes, ...]
    ends: list[int]
    state: ContextState
    total_tokens: int

    @property
    def count(self) -> int:
        """How many messages the runs hold."""
        return len(self.ends)

    @property
    def size(self) -> int:
        """The bytes the runs hold."""
        return self.ends[-1] if self.ends else 0

    def cut(self, budget: int) -> tuple[list[bytes], int]:
        """The runs of the first messages whose JSON fits ``budget`` bytes, and how many."""
        given = bisect.bisect_right(self.ends, budget)
        if given == self.count:
            return list(self.runs), given
        limit = self.ends[given - 1] if given else 0
        runs, offset = [], 0
        for run in self.runs:
            if offset >= limit:
                break
            runs.append(run if offset + len(run) <= limit else run[: limit - offset])
            offset += len(run) + 1
        return runs, given


MAX_RUNS = 32
"""Runs an assembly keeps before joining them into one (a copy once per so many appends)."""


def assemble(
    base: Assembled | None, parts: list[bytes], version: int, state: ContextState, tokens: int
) -> Assembled:
    """``base``'s messages followed by ``parts`` (messages' JSON), as of ``version``."""
    runs, ends = ((), []) if base is None else (base.runs, base.ends)
    offset = ends[-1] if ends else 0
    added = []
    for part in parts:
        offset += len(part) + (1 if offset else 0)
        added.append(offset)
    if parts:
        runs = (*runs, b",".join(parts))
    if len(runs) > MAX_RUNS:
        runs = (b",".join(runs),)
    return Assembled(version, runs, ends + added, state, tokens)


class AssembledCache(SizedLRU[str, Assembled]):
    """Whole contexts' messages (``Assembled``) by context id, bounded by their bytes (the
    least recently used go first). A hot context is answered from here, and an append adds
    only its new messages to what is here (``ContextRow.reshaped`` says when that no longer
    holds); emptied with the other caches when an erasure or a rebuild changes content
    without a new version (``generation``, as in ``LRU``)."""

    def __init__(self, max_bytes: int = 64 << 20) -> None:
        super().__init__(max_bytes, attrgetter("size"))

    def put(self, key: str, value: Assembled, generation: int | None = None) -> None:
        """Keep ``value`` unless it was read before the last ``clear``, is older than the
        entry kept, or is larger than the whole cache."""
        old = self._items.get(key)
        super().put(key, old if old is not None and old.version > value.version else value,
                    generation)  # fmt: skip
