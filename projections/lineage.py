"""Resolving a state that depends on other states, without recursion.

A fork starts as its parent at the fork point, and a rollback restores an older version of
its own context: folding a context may need other states first, and those may need others
in turn (a chain of forks of forks is as deep as the clients make it). Resolving them by
recursion overflowed Python's stack at a chain of about 326 forks, and the projector stopped
on that event for good. Here an explicit stack walks the dependencies instead: a key is
folded once everything it needs is in ``memo``, so any depth costs heap, not stack, and each
state is folded once per ``memo`` (share one across related calls, e.g. a projector batch).

Every dependency is of an older log position (a fork's parent existed before the fork, a
rollback's target is an earlier version), so a well-formed log has no cycle; a log that
claims one is refused with MissingHistory rather than looped on.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection, Sequence
from typing import NamedTuple

from eventstore import ContextForked, ContextRolledBack, RecordedEvent

from .context import fold
from .errors import MissingHistory
from .state import ContextState, TokenCounting

Key = tuple[str, int]
"""(context id, version): one state."""


class Pending(NamedTuple):
    """A state still to fold: ``events`` on top of ``base``, once ``needs`` are resolved."""

    base: ContextState | None
    events: Sequence[RecordedEvent]
    needs: Collection[Key]


Loader = Callable[[str, int], Awaitable[ContextState | Pending]]
"""``load(context_id, version)``: the state itself (a snapshot at exactly that version), or
what folding it takes."""


def needs(events: Sequence[RecordedEvent], folded_from: int) -> set[Key]:
    """The states folding ``events`` takes from elsewhere: a fork's parent at the fork point,
    and rollback targets before ``folded_from`` (the first version the fold itself passes)."""
    found: set[Key] = set()
    for rec in events:
        match rec.event:
            case ContextForked(parent_id=parent, parent_version=at) if rec.version == 1:
                found.add((parent, at))
            case ContextRolledBack(to_version=target) if 1 <= target < folded_from:
                found.add((rec.stream_id, target))
    return found


async def resolve(
    key: Key, load: Loader, counter: TokenCounting, memo: dict[Key, ContextState]
) -> ContextState:
    """The state at ``key``, with every state it depends on resolved first (into ``memo``).

    Cost: one ``load`` and one fold per key not already in ``memo``; the stack holds the
    pending folds of one chain of dependencies at a time.
    """
    if key in memo:
        return memo[key]
    stack: list[Key] = [key]
    pending: dict[Key, Pending] = {}
    while stack:
        top = stack[-1]
        if top in memo:
            stack.pop()
            continue
        work = pending.get(top)
        if work is None:
            loaded = await load(*top)
            if not isinstance(loaded, Pending):
                memo[top] = loaded
                stack.pop()
                continue
            work = pending[top] = loaded
        missing = [k for k in sorted(work.needs) if k not in memo]
        if missing:
            for k in missing:
                if k in pending:  # on the stack already: it would wait for itself
                    raise MissingHistory(f"the state of {k[0]!r} at version {k[1]} needs itself")
            stack.extend(missing)
            continue
        del pending[top]
        stack.pop()
        memo[top] = fold(work.events, counter=counter, base=work.base, resolve=_lookup(memo))
    return memo[key]


def _lookup(memo: dict[Key, ContextState]) -> Callable[[str, int], ContextState]:
    return lambda context_id, version: memo[context_id, version]
