"""The pure fold of a context's events into its ``ContextState``, and command validation.

``fold(events, counter=…, base=…, resolve=…)`` is the workhorse: it applies events to one
mutable builder and freezes once at the end, so appending costs O(1) per event, not a copy of
the message list. ``evolve(state, event, …)`` is the single-step pure API (O(messages) per
call: it thaws and refreezes). ``validate(state, event, …)`` is for the command side: call it
BEFORE appending, it raises the typed errors of ``projections.errors``.

Semantics (the fold is lenient: a stored event cannot be un-stored, so an event that makes no
sense is applied as far as it can be, never raised on; ``validate`` rejects these up front):

- Versions: ``state.version`` is the stream version of the last event folded, rollbacks
  included. Events must be consecutive (``base.version + 1``, +1, …) or MissingHistory is
  raised: that is a caller bug (a gap in what was read), not a bad event.
- The first event is ContextCreated or ContextForked. A stream starting otherwise begins as an
  empty context; a later ContextCreated or ContextForked changes nothing but the version.
- MessageAppended adds a message, counting its tokens once. A duplicate id changes nothing.
  A message's and a summary's ``subject(s)`` come from the keys the log sealed them with
  (``subjects``).
- MessageEdited replaces content and recounts. MessageRedacted blanks content to ``""`` (or
  the skeleton of its tool calls and results: ``redacted_content``), recounts, keeps the
  sha256 of the old content (``content_hash``) and sets ``redacted``.
  Edits and redactions of unknown ids change nothing; an edit of a redacted message changes
  nothing (redaction only ever comes undone through a rollback).
- MetadataUpdated applies an RFC 7386 merge patch (``merge_patch``).
- WindowConfigured replaces the window settings as a whole.
- SummaryAdded records a summary, even one whose message is unknown (windows skip summaries
  whose ``through_message_id`` is not in the state, see ``ContextState.latest_summary``).
- ContextRolledBack(to_version): everything (messages, metadata, window, summaries, deleted,
  ``token_encoding``) becomes the state as of ``to_version``, which may itself be a rolled-back
  state; ``version`` and ``updated_at`` move on. Targets outside 1…version-1 change nothing.
- ContextForked (version 1 of the fork): the fork starts as ``resolve(parent_id,
  parent_version)``, copy-on-write: messages keep their ids, ``version`` fields and token
  counts; ``metadata`` is the parent's merged with the event's ``metadata`` (a merge patch);
  ``parent`` records where it came from; ``deleted`` starts False; created_at and tenant are
  the fork's own.
- ContextDeleted sets ``deleted``; later events are still applied (validate refuses them).
- WindowServed and SubjectErased change nothing but ``version``/``updated_at``; every other
  event also moves ``content_version`` (a rollback too: it changes what the context holds).

Token counts in a ``base`` or resolved state made under another encoding than ``counter``'s
are recounted (O(messages), once), so every count in a state is in one encoding.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Any

import msgspec

from eventstore.events import (
    Content,
    ContextCreated,
    ContextDeleted,
    ContextForked,
    ContextRolledBack,
    Event,
    MessageAppended,
    MessageEdited,
    MessageRedacted,
    MetadataUpdated,
    Part,
    SubjectErased,
    SummaryAdded,
    ToolCallPart,
    ToolResultPart,
    WindowConfigured,
    WindowServed,
    WindowSettings,
)
from eventstore.store import RecordedEvent

from .errors import (
    ContextExists,
    ContextIsDeleted,
    ContextNotFound,
    DuplicateMessage,
    InvalidCommand,
    InvalidVersion,
    MessageNotFound,
    MissingHistory,
)
from .preconditions import changes_content
from .state import ContextState, Message, ParentRef, Summary, TokenCounting
from .subjects import sealed_subject, sealed_subjects

Resolver = Callable[[str, int], ContextState]
"""``resolve(context_id, version)``: that context's state as of that version.

The fold calls it for a fork's parent and for rollback targets older than the events it was
given; the read model answers from a snapshot plus the events after it (``fold(..., base=)``).
It must return a state whose ``version`` is the one asked for.
"""


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch: a new value; neither argument is modified.

    A non-object patch replaces the target; in an object patch, null deletes a key and any other
    value is merged into the target's value for that key (recursively).
    """
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def content_hash(content: Content) -> str:
    """sha256 hex of a message content's canonical JSON (msgspec, keys sorted)."""
    return hashlib.sha256(msgspec.json.encode(content, order="sorted")).hexdigest()


def redacted_content(content: Content) -> Content:
    """What a redacted message keeps of ``content``: ``""``, or, when it held tool calls or
    results, their bare skeleton (ids and tool names; no arguments, no result).

    A provider refuses a conversation whose tool calls and results do not pair up (every
    call answered, every result after its call), so redaction blanks what the tools said
    but not which call a result answers: a window with a redacted call or result stays a
    conversation a model accepts, and keeps the pair in one unit.
    """
    if isinstance(content, str):
        return ""
    skeleton: list[Part] = []
    for part in content:
        if isinstance(part, ToolCallPart):
            skeleton.append(ToolCallPart(id=part.id, name=part.name))
        elif isinstance(part, ToolResultPart):
            skeleton.append(ToolResultPart(call_id=part.call_id))
    return skeleton or ""


class _Builder:
    """A mutable ContextState under construction; private to the fold."""

    __slots__ = (
        "content_version", "context_id", "created_at", "deleted", "encoding", "index",
        "messages", "metadata", "parent", "summaries", "tenant", "updated_at", "updated_by",
        "version", "window",
    )  # fmt: skip

    def __init__(self, context_id: str, version: int, at: datetime, tenant: str | None) -> None:
        self.context_id = context_id
        self.version = version
        self.content_version = version
        self.created_at = at
        self.updated_at = at
        self.updated_by: str | None = None
        self.tenant = tenant
        self.messages: list[Message] = []
        self.index: dict[str, int] = {}
        self.metadata: dict[str, Any] = {}
        self.window = WindowSettings()
        self.summaries: list[Summary] = []
        self.parent: ParentRef | None = None
        self.deleted = False
        self.encoding = ""

    @classmethod
    def thaw(cls, state: ContextState, counter: TokenCounting) -> _Builder:
        """A builder holding ``state``, its counts in ``counter``'s encoding."""
        b = cls(state.context_id, state.version, state.created_at, state.tenant)
        b.content_version = state.content_version
        b.updated_at, b.updated_by = state.updated_at, state.updated_by
        b.parent = state.parent
        b.restore(state, counter)
        return b

    def restore(self, state: ContextState, counter: TokenCounting) -> None:
        """Take the content of ``state`` (not its identity, version or times): a rollback."""
        self.messages = list(state.messages)
        self.index = dict(state.index)
        self.metadata = state.metadata
        self.window = state.window
        self.summaries = list(state.summaries)
        self.deleted = state.deleted
        self.encoding = counter.encoding
        if state.token_encoding != counter.encoding:
            self.messages = [_recount(m, counter) for m in self.messages]
            self.summaries = [
                msgspec.structs.replace(s, tokens=counter.count_message("system", s.text))
                for s in self.summaries
            ]

    def freeze(self) -> ContextState:
        """The state built so far; O(messages), the builder stays usable."""
        return ContextState(
            context_id=self.context_id,
            version=self.version,
            content_version=self.content_version,
            messages=tuple(self.messages),
            metadata=self.metadata,
            window=self.window,
            summaries=tuple(self.summaries),
            parent=self.parent,
            deleted=self.deleted,
            created_at=self.created_at,
            updated_at=self.updated_at,
            updated_by=self.updated_by,
            tenant=self.tenant,
            token_encoding=self.encoding,
        )


def _recount(message: Message, counter: TokenCounting) -> Message:
    tokens = counter.count_message(message.role, message.content, message.name)
    return msgspec.structs.replace(message, tokens=tokens)


def _resolve(resolve: Resolver | None, context_id: str, version: int) -> ContextState:
    if resolve is None:
        raise MissingHistory(
            f"the state of {context_id!r} at version {version} is needed: pass resolve="
        )
    state = resolve(context_id, version)
    if state.version != version:
        raise MissingHistory(f"resolve({context_id!r}, {version}) returned version {state.version}")
    return state


def _start(rec: RecordedEvent, counter: TokenCounting, resolve: Resolver | None) -> _Builder:
    """A builder for a stream's first event (already applied)."""
    tenant = rec.metadata.tenant
    match rec.event:
        case ContextForked(parent_id=parent_id, parent_version=parent_version, metadata=md):
            parent = _resolve(resolve, parent_id, parent_version)
            b = _Builder.thaw(parent, counter)
            b.context_id, b.version, b.tenant = rec.stream_id, rec.version, tenant
            b.content_version = rec.version
            b.created_at = b.updated_at = rec.recorded_at
            b.updated_by = rec.metadata.actor
            b.parent = ParentRef(parent_id, parent_version)
            b.metadata = merge_patch(parent.metadata, md)
            b.deleted = False
            return b
        case ContextCreated(metadata=md, window=window):
            b = _Builder(rec.stream_id, rec.version, rec.recorded_at, tenant)
            b.updated_by = rec.metadata.actor
            b.encoding = counter.encoding
            b.metadata = md
            b.window = window or WindowSettings()
            return b
    # Lenient: a stream that does not start with a creation starts empty.
    b = _Builder(rec.stream_id, rec.version - 1, rec.recorded_at, tenant)
    b.content_version = 0  # nothing yet: a stream that starts with a record holds no content
    b.encoding = counter.encoding
    _apply(b, rec, counter, {}, resolve)
    return b


def _apply(
    b: _Builder,
    rec: RecordedEvent,
    counter: TokenCounting,
    snapshots: dict[int, ContextState],
    resolve: Resolver | None,
) -> None:
    """Apply one event to the builder, in place."""
    b.version = rec.version
    b.updated_at, b.updated_by = rec.recorded_at, rec.metadata.actor
    if changes_content(rec.event):
        b.content_version = rec.version
    match rec.event:
        case MessageAppended(message_id=mid, role=role, content=content, name=name):
            if mid in b.index:
                return
            b.index[mid] = len(b.messages)
            b.messages.append(
                Message(
                    message_id=mid,
                    role=role,
                    content=content,
                    name=name,
                    metadata=rec.event.metadata,
                    version=rec.version,
                    tokens=counter.count_message(role, content, name),
                    subject=sealed_subject(rec, rec.event.metadata, b.metadata),
                )
            )
        case MessageEdited(message_id=mid, content=content):
            i = b.index.get(mid)
            if i is None or b.messages[i].redacted:
                return
            old = b.messages[i]
            b.messages[i] = msgspec.structs.replace(
                old,
                content=content,
                tokens=counter.count_message(old.role, content, old.name),
                edited_version=rec.version,
                subject=sealed_subject(rec, old.metadata, b.metadata, old.subject),
            )
        case MessageRedacted(message_id=mid):
            i = b.index.get(mid)
            if i is None:
                return
            old = b.messages[i]
            blank = redacted_content(old.content)
            b.messages[i] = msgspec.structs.replace(
                old,
                content=blank,
                tokens=counter.count_message(old.role, blank, old.name),
                redacted=True,
                content_hash=old.content_hash if old.redacted else content_hash(old.content),
            )
        case MetadataUpdated(patch=patch):
            b.metadata = merge_patch(b.metadata, patch)
        case WindowConfigured(window=window):
            b.window = window
        case SummaryAdded(summary_id=sid, text=text, through_message_id=through):
            tokens = counter.count_message("system", text)
            b.summaries.append(Summary(
                summary_id=sid, text=text, through_message_id=through,
                version=rec.version, tokens=tokens, subjects=sealed_subjects(rec, b.metadata),
            ))  # fmt: skip
        case ContextRolledBack(to_version=target):
            if 1 <= target < rec.version:
                state = snapshots.get(target)
                if state is None:
                    state = _resolve(resolve, b.context_id, target)
                b.restore(state, counter)
        case ContextDeleted():
            b.deleted = True
        case ContextCreated() | ContextForked() | WindowServed() | SubjectErased():
            pass  # a creation after the first event is meaningless; the others are records


def fold(
    events: Iterable[RecordedEvent],
    *,
    counter: TokenCounting,
    base: ContextState | None = None,
    resolve: Resolver | None = None,
) -> ContextState:
    """The state after ``events`` (one stream, consecutive versions), on top of ``base`` if given.

    Without ``base`` the events start at version 1. ``resolve`` supplies a fork's parent and
    rollback targets older than ``base``; MissingHistory if one is needed and not supplied.
    Cost: O(events + messages), plus O(messages) per distinct rollback target.
    """
    recs = events if isinstance(events, Sequence) else list(events)
    if not recs:
        if base is None:
            raise ValueError("fold needs events or a base state")
        return (
            base
            if base.token_encoding == counter.encoding
            else _Builder.thaw(base, counter).freeze()
        )
    # Rollback targets are known up front, so the fold freezes exactly those versions on its
    # way past them instead of keeping every intermediate state.
    targets = {r.event.to_version for r in recs if isinstance(r.event, ContextRolledBack)}
    snapshots: dict[int, ContextState] = {}
    first, rest = recs[0], recs[1:]
    if base is None:
        _expect(first, first.stream_id, 1)
        b = _start(first, counter, resolve)
    else:
        b = _Builder.thaw(base, counter)
        if base.version in targets:
            snapshots[base.version] = b.freeze()
        rest = recs
    if b.version in targets:
        snapshots[b.version] = b.freeze()
    for rec in rest:
        _expect(rec, b.context_id, b.version + 1)
        _apply(b, rec, counter, snapshots, resolve)
        if rec.version in targets:
            snapshots[rec.version] = b.freeze()
    return b.freeze()


def _expect(rec: RecordedEvent, context_id: str, version: int) -> None:
    if rec.stream_id != context_id or rec.version != version:
        raise MissingHistory(
            f"expected {context_id!r} version {version}, got {rec.stream_id!r} version "
            f"{rec.version}"
        )


def evolve(
    state: ContextState | None,
    rec: RecordedEvent,
    *,
    counter: TokenCounting,
    resolve: Resolver | None = None,
) -> ContextState:
    """The state after one more event (``state`` None for a stream's first event).

    Pure and O(messages) per call; fold a sequence with ``fold`` instead. A rollback to any
    version but ``state.version`` needs ``resolve``.
    """
    return fold((rec,), counter=counter, base=state, resolve=resolve)


def validate(
    state: ContextState | None,
    event: Event,
    *,
    context_id: str,
    parent: ContextState | None = None,
) -> None:
    """Raise the typed error that rejects ``event`` as the next event of ``context_id``.

    ``state`` is the context's current state (None if it has no events). For ContextForked,
    ``parent`` is the parent's current state (None if it does not exist).
    """
    if state is None:
        match event:
            case ContextCreated(window=window):
                if window is not None:
                    _validate_window(window)
                return
            case ContextForked(parent_id=parent_id, parent_version=parent_version):
                if parent is None:
                    raise ContextNotFound(parent_id)
                if parent.deleted:
                    raise ContextIsDeleted(parent_id)
                if not 1 <= parent_version <= parent.version:
                    raise InvalidVersion(parent_id, parent_version, parent.version)
                return
        raise ContextNotFound(context_id)
    if state.deleted:
        raise ContextIsDeleted(context_id)
    match event:
        case ContextCreated() | ContextForked():
            raise ContextExists(context_id)
        case MessageAppended(message_id=mid):
            if mid in state.index:
                raise DuplicateMessage(context_id, mid)
        case MessageEdited(message_id=mid):
            message = _existing(state, context_id, mid)
            if message.redacted:
                raise InvalidCommand(f"message {mid!r} is redacted; it cannot be edited")
        case MessageRedacted(message_id=mid) | SummaryAdded(through_message_id=mid):
            _existing(state, context_id, mid)
        case ContextRolledBack(to_version=target):
            if not 1 <= target <= state.version:
                raise InvalidVersion(context_id, target, state.version)
        case WindowConfigured(window=window):
            _validate_window(window)
        case MetadataUpdated() | ContextDeleted() | WindowServed() | SubjectErased():
            pass


def _existing(state: ContextState, context_id: str, message_id: str) -> Message:
    message = state.message(message_id)
    if message is None:
        raise MessageNotFound(context_id, message_id)
    return message


def _validate_window(window: WindowSettings) -> None:
    if window.max_tokens is not None and window.max_tokens <= 0:
        raise InvalidCommand(f"max_tokens must be positive, not {window.max_tokens}")
    if window.last_n is not None and window.last_n <= 0:
        raise InvalidCommand(f"last_n must be positive, not {window.last_n}")
    if window.policy == "last_n" and window.last_n is None:
        raise InvalidCommand("policy 'last_n' needs last_n")
