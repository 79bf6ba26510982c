"""What changed between two context states: two versions of one context, or a fork and its
parent (messages are matched by id, which a fork inherits)."""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from eventstore.events import WindowSettings

from .state import ContextState

_MISSING: Any = object()


class MetadataChange(msgspec.Struct, frozen=True, kw_only=True):
    """One metadata value that differs, at an RFC 6901 JSON pointer (``""`` is the root)."""

    path: str
    kind: Literal["added", "removed", "changed"]
    old: Any = None
    new: Any = None


class WindowChange(msgspec.Struct, frozen=True, kw_only=True):
    """One window setting that differs."""

    field: str
    old: Any = None
    new: Any = None


class StateDiff(msgspec.Struct, frozen=True, kw_only=True):
    """How ``b`` differs from ``a``; message id lists follow the order of the state holding them.

    ``edited`` are messages in both whose content differs, except those redacted only in
    ``b`` (listed in ``redacted``); a message un-redacted by a rollback counts as edited.
    """

    from_context: str
    from_version: int
    to_context: str
    to_version: int
    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    edited: tuple[str, ...] = ()
    redacted: tuple[str, ...] = ()
    metadata: tuple[MetadataChange, ...] = ()
    window: tuple[WindowChange, ...] = ()
    summaries_added: tuple[str, ...] = ()
    summaries_removed: tuple[str, ...] = ()
    deleted: tuple[bool, bool] | None = None

    @property
    def empty(self) -> bool:
        """True when the two states hold the same content (versions aside)."""
        return not (
            self.added or self.removed or self.edited or self.redacted or self.metadata
            or self.window or self.summaries_added or self.summaries_removed or self.deleted
        )  # fmt: skip


def _pointer(parent: str, key: str) -> str:
    return f"{parent}/{key.replace('~', '~0').replace('/', '~1')}"


def metadata_changes(a: Any, b: Any, path: str = "") -> list[MetadataChange]:
    """The changes from ``a`` to ``b``, recursing into objects; other values compare whole."""
    if isinstance(a, dict) and isinstance(b, dict):
        changes: list[MetadataChange] = []
        for key in a.keys() | b.keys():
            old, new = a.get(key, _MISSING), b.get(key, _MISSING)
            at = _pointer(path, str(key))
            if new is _MISSING:
                changes.append(MetadataChange(path=at, kind="removed", old=old))
            elif old is _MISSING:
                changes.append(MetadataChange(path=at, kind="added", new=new))
            else:
                changes.extend(metadata_changes(old, new, at))
        return sorted(changes, key=lambda c: c.path)
    if a == b and type(a) is type(b):  # 1 == True == 1.0 in Python, not in JSON
        return []
    return [MetadataChange(path=path, kind="changed", old=a, new=b)]


def _window_changes(a: WindowSettings, b: WindowSettings) -> list[WindowChange]:
    return [
        WindowChange(field=f, old=getattr(a, f), new=getattr(b, f))
        for f in a.__struct_fields__
        if getattr(a, f) != getattr(b, f)
    ]


def diff(a: ContextState, b: ContextState) -> StateDiff:
    """What turns ``a`` into ``b``. O(messages); messages ``b`` shares with ``a`` are skipped
    by identity, so a fork against its parent is cheap."""
    edited: list[str] = []
    redacted: list[str] = []
    for mb in b.messages:
        i = a.index.get(mb.message_id)
        if i is None:
            continue
        ma = a.messages[i]
        if ma is mb:
            continue
        if mb.redacted and not ma.redacted:
            redacted.append(mb.message_id)
        elif ma.redacted != mb.redacted or ma.content != mb.content:
            edited.append(mb.message_id)
    a_summaries = {s.summary_id for s in a.summaries}
    b_summaries = {s.summary_id for s in b.summaries}
    return StateDiff(
        from_context=a.context_id,
        from_version=a.version,
        to_context=b.context_id,
        to_version=b.version,
        added=tuple(m.message_id for m in b.messages if m.message_id not in a.index),
        removed=tuple(m.message_id for m in a.messages if m.message_id not in b.index),
        edited=tuple(edited),
        redacted=tuple(redacted),
        metadata=tuple(metadata_changes(a.metadata, b.metadata)),
        window=tuple(_window_changes(a.window, b.window)),
        summaries_added=tuple(s.summary_id for s in b.summaries if s.summary_id not in a_summaries),
        summaries_removed=tuple(
            s.summary_id for s in a.summaries if s.summary_id not in b_summaries
        ),
        deleted=None if a.deleted == b.deleted else (a.deleted, b.deleted),
    )
