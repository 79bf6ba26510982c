"""The events of a conversation context: what can happen to it, as immutable facts.

Schema rules (msgspec's schema evolution): add fields only, always with defaults; never change
a field's type; never reuse a tag. A breaking change becomes a new event type. Stored events
never set ``forbid_unknown_fields``, so an older reader skips fields a newer writer added.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

Role = Literal["system", "user", "assistant", "tool", "developer"]
"""Who a message is from, as chat-completion APIs name it. ``developer`` is OpenAI's newer name
for ``system`` (o1 and later): windows pin it like ``system``, and it is kept as sent."""

PINNED_ROLES = frozenset({"system", "developer"})
"""The roles a window pins: instructions, never trimmed."""

Extra = dict[str, dict[str, Any]] | msgspec.UnsetType
"""Provider fields ctxlog does not model, by the request format they came in (``{"anthropic":
{"cache_control": {...}}}``): kept as sent and rendered back only in that format. UNSET (the
default) is left out of the stored JSON, so parts without extras encode exactly as they always
did (content hashes and window hashes of old content do not change)."""


class TextPart(msgspec.Struct, frozen=True, kw_only=True, tag_field="type", tag="text"):
    """Plain text."""

    text: str
    extra: Extra = msgspec.UNSET


class ImagePart(msgspec.Struct, frozen=True, kw_only=True, tag_field="type", tag="image"):
    """An image, by URL or inline as base64 ``data`` with its ``media_type``."""

    url: str | None = None
    data: str | None = None
    media_type: str | None = None
    # "original" (OpenAI's newest level) widens the literal: every value stored before still
    # decodes, which is all the schema rules protect.
    detail: Literal["auto", "low", "high", "original"] | None = None
    file_id: str | msgspec.UnsetType = msgspec.UNSET
    """An image uploaded to the provider (OpenAI's or Anthropic's Files API)."""
    extra: Extra = msgspec.UNSET


class FilePart(msgspec.Struct, frozen=True, kw_only=True, tag_field="type", tag="file"):
    """A file: a reference to one kept elsewhere (``file_id``, ``uri``), or inline as base64
    ``data`` or plain ``text`` (a document given in the request itself)."""

    file_id: str | None = None
    uri: str | None = None
    name: str | None = None
    media_type: str | None = None
    data: str | msgspec.UnsetType = msgspec.UNSET
    """The file's bytes, base64 (e.g. a PDF sent inline)."""
    text: str | msgspec.UnsetType = msgspec.UNSET
    """The file's text, for a plain-text document sent inline."""
    extra: Extra = msgspec.UNSET


class ToolCallPart(msgspec.Struct, frozen=True, kw_only=True, tag_field="type", tag="tool_call"):
    """A model's request to call a tool."""

    id: str
    name: str
    arguments: dict[str, Any] = {}
    arguments_json: str | msgspec.UnsetType = msgspec.UNSET
    """The arguments exactly as the model wrote them (OpenAI sends a JSON string), when that
    is not the compact JSON of ``arguments``: invalid JSON or not an object (``arguments`` is
    then {}), or other spacing. Rendered back byte for byte, so a prompt cache still hits."""
    extra: Extra = msgspec.UNSET


class ToolResultPart(
    msgspec.Struct, frozen=True, kw_only=True, tag_field="type", tag="tool_result"
):
    """The answer to a tool call, tied to it by ``call_id``."""

    call_id: str
    content: str | list[TextPart | ImagePart | FilePart] = ""
    is_error: bool = False
    extra: Extra = msgspec.UNSET


class RefusalPart(msgspec.Struct, frozen=True, kw_only=True, tag_field="type", tag="refusal"):
    """A model's refusal to answer (OpenAI keeps it apart from its text)."""

    text: str
    extra: Extra = msgspec.UNSET


class OpaquePart(msgspec.Struct, frozen=True, kw_only=True, tag_field="type", tag="opaque"):
    """A provider's block that only that provider can read back, kept verbatim: Anthropic's
    ``thinking`` and ``redacted_thinking``, OpenAI Responses' ``reasoning`` items (signed or
    encrypted state a model must be handed back unchanged). Rendered only in ``format``."""

    format: str
    """The request format it came in (``anthropic``, ``responses``)."""
    data: dict[str, Any]
    """The block or item as the provider gave it."""


Part = TextPart | ImagePart | FilePart | ToolCallPart | ToolResultPart | RefusalPart | OpaquePart
Content = str | list[Part]


class WindowSettings(msgspec.Struct, frozen=True, kw_only=True):
    """A context's default window: its token budget and the model (or encoding) it is for."""

    max_tokens: int | None = None
    model: str | None = None
    encoding: str | None = None
    policy: Literal["tokens", "last_n"] | None = None
    last_n: int | None = None


class SealLayer(msgspec.Struct, frozen=True, kw_only=True):
    """One more subject's key wrapped around sealed content (``Sealed.layers``)."""

    key_id: str
    nonce: bytes
    subject: str


class Sealed(msgspec.Struct, frozen=True, kw_only=True):
    """Content encrypted with a subject's key (``sealing``): AES-GCM of the msgspec JSON of
    the plaintext field, with the event id as associated data. Destroying the key erases it.

    Content that belongs to several subjects (a summary of their messages) is encrypted
    with ``key_id`` first, then again with each of ``layers`` in turn: every one of those
    keys is needed to read it, so destroying any of them erases it."""

    key_id: str
    nonce: bytes
    data: bytes
    subject: str = ""
    """The data subject whose key ``key_id`` is ("" in rows written before it was kept)."""
    layers: list[SealLayer] = []


class EventBase(msgspec.Struct, frozen=True, kw_only=True, tag_field="type"):
    """The tagged base of every event; the tag is the stable name stored with each row."""


class ContextCreated(EventBase, frozen=True, tag="context.created"):
    """A new, empty context; the first event of its stream."""

    metadata: dict[str, Any] = {}
    window: WindowSettings | None = None


class MessageAppended(EventBase, frozen=True, tag="message.appended"):
    """A message joined the conversation."""

    message_id: str
    role: Role
    content: Content
    name: str | None = None
    metadata: dict[str, Any] = {}
    sealed: Sealed | None = None
    """When set, ``content`` is stored as "" and this holds it, encrypted."""


class MessageEdited(EventBase, frozen=True, tag="message.edited"):
    """A message's content was replaced."""

    message_id: str
    content: Content
    sealed: Sealed | None = None
    """When set, ``content`` is stored as "" and this holds it, encrypted."""


class MessageRedacted(EventBase, frozen=True, tag="message.redacted"):
    """A message's content was blanked; it keeps its place and id."""

    message_id: str
    reason: str | None = None


class MetadataUpdated(EventBase, frozen=True, tag="metadata.updated"):
    """The context's metadata changed by an RFC 7386 JSON merge patch."""

    patch: dict[str, Any]


class WindowConfigured(EventBase, frozen=True, tag="window.configured"):
    """The context's default window settings changed."""

    window: WindowSettings


class SummaryAdded(EventBase, frozen=True, tag="summary.added"):
    """A summary now stands in for every message up to and including ``through_message_id``."""

    summary_id: str
    text: str
    through_message_id: str
    sealed: Sealed | None = None
    """When set, ``text`` is stored as "" and this holds it, encrypted."""


class ContextRolledBack(EventBase, frozen=True, tag="context.rolled_back"):
    """The context returned to its state as of ``to_version``; history is kept."""

    to_version: int
    reason: str | None = None


class ContextForked(EventBase, frozen=True, tag="context.forked"):
    """A new context began as ``parent_id`` at ``parent_version``; the first event of its stream."""

    parent_id: str
    parent_version: int
    metadata: dict[str, Any] = {}


class ContextDeleted(EventBase, frozen=True, tag="context.deleted"):
    """A tombstone: the context reads as gone, its history stays for audit."""

    reason: str | None = None


class WindowServed(EventBase, frozen=True, tag="window.served"):
    """A window was handed to a model: exactly which messages, under which budget."""

    policy: str
    max_tokens: int | None
    encoding: str
    model: str | None = None
    message_ids: list[str] = []
    summary_id: str | None = None
    total_tokens: int = 0
    window_hash: str = ""
    sealed: Sealed | None = None
    """When set, ``window_hash`` (a digest of the content served) is stored as "" and this
    holds it, encrypted with the keys of the subjects whose content the window showed."""
    format: str | msgspec.UnsetType = msgspec.UNSET
    """The request format whose framing was counted (``openai``, ``responses``,
    ``anthropic``); unset in events recorded before formats existed."""
    exact: bool | msgspec.UnsetType = msgspec.UNSET
    """False when ``total_tokens`` is an estimate (the model has no local tokenizer, so the
    counts are another encoding's); unset in events recorded before it was kept."""


class SubjectErased(EventBase, frozen=True, tag="subject.erased"):
    """The key of a data subject (``metadata.subject``) was destroyed: this context's content
    of that subject now reads as "[erased]". Every process that reads it forgets what it
    holds of that content (``projections.erasure``); the state changes nothing else."""

    subject: str
    key_ids: list[str] = []
    """The destroyed keys (empty in events written before they were recorded)."""


# -- checkpoints of agent frameworks (LangGraph) -----------------------------------------------
# A framework's state is not chat messages: its checkpoints, the writes of tasks in between,
# and the channel values they hold (blobs, each stored once per channel version) are events of
# their own, kept in the same log and chain as a context's messages. ctxlog never reads what
# they hold: ``Typed`` values are the framework serializer's bytes. Their content is sealed like
# a message's (the context's ``metadata.subject``); ids, namespaces and channel versions are not.


class Typed(msgspec.Struct, frozen=True, kw_only=True):
    """A value as a framework's serializer wrote it: its type tag and bytes."""

    type: str
    data: bytes


class Blob(msgspec.Struct, frozen=True, kw_only=True):
    """One channel's value at one version."""

    channel: str
    version: str
    value: Typed


class CheckpointContent(msgspec.Struct, frozen=True, kw_only=True):
    """What a checkpoint holds: itself without its channel values, its metadata, and the
    values of the channels whose version it advanced (the others are in earlier events)."""

    checkpoint: Typed
    metadata: Typed
    blobs: list[Blob] = []


class CheckpointSaved(EventBase, frozen=True, kw_only=True, tag="checkpoint.saved"):
    """A framework saved a checkpoint of this context (a thread) in ``checkpoint_ns``."""

    checkpoint_ns: str = ""
    checkpoint_id: str
    parent_checkpoint_id: str | None = None
    content: CheckpointContent | str
    """The checkpoint; "" while ``sealed`` holds it, "[erased]" once its key is destroyed."""
    sealed: Sealed | None = None


class Write(msgspec.Struct, frozen=True, kw_only=True):
    """One pending write of a task: its index in the task's writes, channel and value."""

    idx: int
    channel: str
    value: Typed


class WritesContent(msgspec.Struct, frozen=True, kw_only=True):
    """The writes of one task, in order."""

    writes: list[Write]


class CheckpointWritesRecorded(
    EventBase, frozen=True, kw_only=True, tag="checkpoint.writes_recorded"
):
    """A task's writes toward the checkpoint after ``checkpoint_id``, recorded as it ran."""

    checkpoint_ns: str = ""
    checkpoint_id: str
    task_id: str
    task_path: str = ""
    content: WritesContent | str
    """The writes; "" while ``sealed`` holds them, "[erased]" once its key is destroyed."""
    sealed: Sealed | None = None


class CheckpointRef(msgspec.Struct, frozen=True, kw_only=True):
    """A checkpoint of a context, by namespace and id."""

    checkpoint_ns: str = ""
    checkpoint_id: str


class CheckpointsRemoved(EventBase, frozen=True, tag="checkpoints.removed"):
    """Checkpoints (with their writes) no longer count: the ones named, or ``all`` of them
    up to this event. Their events stay in the log; readers fold them out."""

    checkpoints: list[CheckpointRef] = []
    all: bool = False
    reason: str | None = None


Event = (
    ContextCreated
    | MessageAppended
    | MessageEdited
    | MessageRedacted
    | MetadataUpdated
    | WindowConfigured
    | SummaryAdded
    | ContextRolledBack
    | ContextForked
    | ContextDeleted
    | WindowServed
    | SubjectErased
    | CheckpointSaved
    | CheckpointWritesRecorded
    | CheckpointsRemoved
)

EVENT_TYPES: dict[str, type[EventBase]] = {
    cls.__struct_config__.tag: cls  # type: ignore[misc]
    for cls in (
        ContextCreated,
        MessageAppended,
        MessageEdited,
        MessageRedacted,
        MetadataUpdated,
        WindowConfigured,
        SummaryAdded,
        ContextRolledBack,
        ContextForked,
        ContextDeleted,
        WindowServed,
        SubjectErased,
        CheckpointSaved,
        CheckpointWritesRecorded,
        CheckpointsRemoved,
    )
}
"""Every event class by its stored tag."""


def event_type(event: EventBase) -> str:
    """The stored tag of an event."""
    return event.__struct_config__.tag  # type: ignore[return-value]


class EventMetadata(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """Who caused an event and in answer to what; stored beside, not inside, the event data."""

    actor: str | None = None
    tenant: str | None = None
    correlation_id: str | None = None
    causation_id: str | None = None
    request_id: str | None = None
