"""What this service acknowledged, and so what a read must wait for (read your own writes).

A command answers once the log has its events; the projector applies them a moment later.
A read of one context needs the read model to hold the writes acknowledged *for that
context* — not every write acknowledged since, which would make each command wait for the
projector to finish the batch of unrelated contexts committed just before it, and so put the
log's commits and the read model's applies one after the other instead of side by side.
"""

from __future__ import annotations


class Acks:
    """The newest acknowledged log position, overall and per context.

    Per-context entries the projector has passed say nothing a missing entry does not (no
    wait), so they are dropped once there are many: memory stays bounded by the contexts
    written since the projector last caught up.
    """

    def __init__(self, keep: int = 4096) -> None:
        self.newest = 0
        """The newest position acknowledged to any caller."""
        self._by_context: dict[str, int] = {}
        self._keep = keep

    def note(self, context_id: str, position: int, applied: int) -> None:
        """``position`` was acknowledged for ``context_id``; the projector is at ``applied``."""
        self.newest = max(self.newest, position)
        self._by_context[context_id] = max(position, self._by_context.get(context_id, 0))
        if len(self._by_context) > self._keep:
            self._by_context = {c: p for c, p in self._by_context.items() if p > applied}
            self._keep = max(self._keep, 2 * len(self._by_context))

    def of(self, context_id: str) -> int:
        """The newest position acknowledged for ``context_id`` (0: nothing to wait for)."""
        return self._by_context.get(context_id, 0)
