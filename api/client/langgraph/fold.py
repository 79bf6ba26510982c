"""A LangGraph thread's checkpoints, folded from its context's events (pure: no IO).

``checkpoint.saved`` adds a checkpoint and the channel values it advanced (each channel
version once); ``checkpoint.writes_recorded`` adds a task's pending writes (a write already
there for the same task and index is kept, unless it is one of LangGraph's special channels,
which replace); ``checkpoints.removed`` takes checkpoints out (with their writes; ``all``
empties the thread). A rollback of the context returns the thread to that version, and a fork
(``copy_thread``) starts from its parent's thread at the fork point. Content that was erased
(its subject's key destroyed) reads as a string: that checkpoint, or those writes, are gone.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from eventstore.events import (
    CheckpointContent,
    CheckpointSaved,
    CheckpointsRemoved,
    CheckpointWritesRecorded,
    ContextDeleted,
    ContextRolledBack,
    EventBase,
    Typed,
    WritesContent,
)


@dataclass(frozen=True, slots=True)
class Saved:
    """One checkpoint as stored: the checkpoint without channel values, and its metadata."""

    checkpoint_id: str
    parent_id: str | None
    checkpoint: Typed
    metadata: Typed


@dataclass(frozen=True, slots=True)
class PendingWrite:
    """One pending write of a task."""

    task_id: str
    idx: int
    channel: str
    value: Typed
    task_path: str


WriteKey = tuple[str, int]
"""(task id, index): a task's write, unique per checkpoint."""


@dataclass
class Thread:
    """A thread's state after ``version`` of its context; ``base`` is the parent's thread
    at the fork point when the context is a fork."""

    version: int = 0
    base: Thread | None = None
    checkpoints: dict[str, dict[str, Saved]] = field(default_factory=dict)
    """Namespace -> checkpoint id -> checkpoint."""
    writes: dict[tuple[str, str], dict[WriteKey, PendingWrite]] = field(default_factory=dict)
    """(namespace, checkpoint id) -> the writes toward the checkpoint after it."""
    blobs: dict[tuple[str, str, str], Typed] = field(default_factory=dict)
    """(namespace, channel, version) -> the channel's value."""
    events: list[EventBase] = field(default_factory=list)
    """This context's own events, by version (for rollbacks)."""

    def apply(self, version: int, event: EventBase) -> None:
        """Fold in the event at ``version`` (one already folded is skipped)."""
        if version <= self.version:
            return
        if version != self.version + 1:
            raise ValueError(f"version {version} after {self.version}: events are missing")
        self.events.append(event)
        self.version = version
        match event:
            case CheckpointSaved(content=CheckpointContent() as content):
                ns = event.checkpoint_ns
                for blob in content.blobs:
                    self.blobs[ns, blob.channel, blob.version] = blob.value
                self.checkpoints.setdefault(ns, {})[event.checkpoint_id] = Saved(
                    event.checkpoint_id,
                    event.parent_checkpoint_id,
                    content.checkpoint,
                    content.metadata,
                )
            case CheckpointWritesRecorded(content=WritesContent() as content):
                found = self.writes.setdefault((event.checkpoint_ns, event.checkpoint_id), {})
                for w in content.writes:
                    key = (event.task_id, w.idx)
                    if w.idx >= 0 and key in found:
                        continue  # a regular write is recorded once; special ones replace
                    found[key] = PendingWrite(
                        event.task_id, w.idx, w.channel, w.value, event.task_path
                    )
            case CheckpointsRemoved(all=True) | ContextDeleted():
                self.checkpoints, self.writes, self.blobs = {}, {}, {}
            case CheckpointsRemoved(checkpoints=refs):
                for ref in refs:
                    self.checkpoints.get(ref.checkpoint_ns, {}).pop(ref.checkpoint_id, None)
                    self.writes.pop((ref.checkpoint_ns, ref.checkpoint_id), None)
            case ContextRolledBack(to_version=target) if 1 <= target < version:
                self._restore(target)

    def _restore(self, target: int) -> None:
        """Return to the state after ``target`` (a rollback): refold the events up to it."""
        again = Thread.starting(self.base)
        for v, e in enumerate(self.events[:target], 1):
            again.apply(v, e)
        self.checkpoints, self.writes, self.blobs = again.checkpoints, again.writes, again.blobs

    @classmethod
    def starting(cls, base: Thread | None) -> Thread:
        """A thread before its first event: empty, or a fork's parent state (copied)."""
        if base is None:
            return cls()
        return cls(
            base=base,
            checkpoints={ns: dict(found) for ns, found in base.checkpoints.items()},
            writes={key: dict(found) for key, found in base.writes.items()},
            blobs=dict(base.blobs),
        )

    def latest(self, ns: str) -> Saved | None:
        """The newest checkpoint of a namespace (LangGraph's ids sort by time)."""
        found = self.checkpoints.get(ns)
        return found[max(found)] if found else None
