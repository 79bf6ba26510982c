"""What an agent framework's checkpointer sends (``POST /contexts/{id}/checkpoints``, ``.../
checkpoints/writes``, ``.../checkpoints/remove``) and gets back. Values are the framework
serializer's bytes, base64 in JSON; ctxlog stores them as they are and never reads them."""

from __future__ import annotations

from typing import Annotated

from msgspec import Meta

from .base import Request, Response, Version

Name = Annotated[str, Meta(min_length=1, max_length=256)]
Namespace = Annotated[str, Meta(max_length=1024)]


class TypedIn(Request, frozen=True, kw_only=True):
    """A serialized value: the serializer's type tag and the bytes (base64 in JSON)."""

    type: Annotated[str, Meta(min_length=1, max_length=64)]
    """The serializer's type tag (LangGraph: msgpack, json, bytes, empty, ...)."""
    data: bytes
    """The value's bytes, base64."""


class BlobIn(Request, frozen=True, kw_only=True):
    """One channel's value at one version."""

    channel: Name
    """The channel's name."""
    version: Name
    """The channel's version (as text: LangGraph's versions are numbers or strings)."""
    value: TypedIn
    """The channel's value at that version."""


class SaveCheckpoint(Request, frozen=True, kw_only=True):
    """A checkpoint: itself without channel values, its metadata, and the values of the
    channels whose version it advanced (each channel version is stored once)."""

    checkpoint_ns: Namespace = ""
    """The checkpoint namespace ("" for the root graph)."""
    checkpoint_id: Name
    """The checkpoint's id (the framework's; LangGraph's sort by time)."""
    parent_checkpoint_id: Name | None = None
    """The checkpoint this one follows, if any."""
    checkpoint: TypedIn
    """The checkpoint without its channel values, serialized."""
    metadata: TypedIn
    """The checkpoint's metadata, serialized."""
    blobs: Annotated[list[BlobIn], Meta(max_length=1000)] = []
    """The values of the channels whose version this checkpoint advanced."""
    expected_version: Version | None = None
    """Write only if nothing but recorded windows came after this version (like If-Match)."""


class WriteIn(Request, frozen=True, kw_only=True):
    """One write of a task: its index among the task's writes (negative for the framework's
    special channels), channel and value."""

    idx: Annotated[int, Meta(ge=-(2**31), le=2**31)]
    """The write's index in the task's writes (negative: a special channel's)."""
    channel: Name
    """The channel written to."""
    value: TypedIn
    """The value written."""


class RecordWrites(Request, frozen=True, kw_only=True):
    """A task's writes toward the checkpoint after ``checkpoint_id``."""

    checkpoint_ns: Namespace = ""
    """The checkpoint namespace ("" for the root graph)."""
    checkpoint_id: Name
    """The checkpoint the writes follow."""
    task_id: Name
    """The task that wrote them."""
    task_path: Namespace = ""
    """The task's path (orders writes of different tasks)."""
    writes: Annotated[list[WriteIn], Meta(min_length=1, max_length=1000)]
    """The task's writes, in order."""
    expected_version: Version | None = None
    """Write only if nothing but recorded windows came after this version (like If-Match)."""


class CheckpointRefIn(Request, frozen=True, kw_only=True):
    """A checkpoint by namespace and id."""

    checkpoint_ns: Namespace = ""
    """The checkpoint namespace ("" for the root graph)."""
    checkpoint_id: Name
    """The checkpoint's id."""


class RemoveCheckpoints(Request, frozen=True, kw_only=True):
    """Checkpoints that no longer count (their events stay in the log): those named, or
    ``all`` of them so far; exactly one of the two."""

    checkpoints: Annotated[list[CheckpointRefIn], Meta(max_length=1000)] = []
    """The checkpoints that no longer count (with their writes)."""
    all: bool = False
    """Every checkpoint of the context so far no longer counts."""
    reason: Annotated[str, Meta(max_length=1000)] | None = None
    """Why (kept in the log): delete_thread, prune, delete_for_runs, ..."""
    expected_version: Version | None = None
    """Write only if nothing but recorded windows came after this version (like If-Match)."""


class Recorded(Response, frozen=True, kw_only=True):
    """A checkpoint event was recorded: the context's version now (also the ETag)."""

    context_id: str
    version: int
