"""``CtxlogSaver``: a LangGraph checkpointer on ctxlog (``pip install 'ctxlog[langgraph]'``).

A thread is a context (its id derived from the thread id in the caller's tenant, created once
with an Idempotency-Key: two workers starting the same thread get the same context), and its
checkpoints are events of that context (``api.rest.checkpoints``): a checkpoint carries only
the channel values whose version it advanced, so each channel version is stored once, not the
whole state at every step. Reads fold the thread's events (``fold.Thread``), kept in memory and
brought up to date with the events after the version already folded (one request when nothing
changed). ``copy_thread`` is a fork of the context (one event, nothing copied); ``prune``,
``delete_thread`` and ``delete_for_runs`` record which checkpoints no longer count, and the
log keeps them (history, time travel, audit). Every method exists sync and async; the logic
is written once as steps (``api.client.steps``) that either client runs.

Limits: a process folds a thread from its first event the first time it reads it (O(history)
once, then O(new events)); ``list(None)`` and ``delete_for_runs`` visit every LangGraph thread
of the tenant; a checkpoint is one request body, so it must fit the server's
``max_body_bytes`` (1 MiB by default).
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    WRITES_IDX_MAP,
    BaseCheckpointSaver,
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
    get_checkpoint_id,
    get_checkpoint_metadata,
)
from langgraph.checkpoint.base import writes_sort_key as sort_key
from langgraph.checkpoint.serde.base import SerializerProtocol

from api.rest import schemas as s
from eventstore.events import (
    Blob,
    CheckpointContent,
    CheckpointRef,
    CheckpointSaved,
    CheckpointsRemoved,
    CheckpointWritesRecorded,
    ContextForked,
    EventBase,
    Typed,
    Write,
    WritesContent,
)

from .. import operations as op
from ..aio import AsyncClient
from ..errors import IdempotencyKeyReused, VersionConflict
from ..steps import Step, run_async, run_sync
from .fold import Saved, Thread

if TYPE_CHECKING:
    from ..sync import Client

Pick = Callable[[Thread], "list[s.CheckpointRefIn] | None"]
"""Which checkpoints a removal names (None: all of them; []: none, nothing to do)."""

THREAD_KEY = "langgraph.thread_id"
"""The context metadata naming its thread (listings find threads by it)."""
ADAPTER_KEY = "ctxlog.adapter"
ADAPTER = "langgraph"
RETRIES = 8
"""Attempts of a removal that another writer keeps getting ahead of (If-Match)."""
CHUNK = 1000
"""The most checkpoints one removal names (the API's limit)."""


def _key(thread_id: str) -> str:
    # An Idempotency-Key is 1-255 visible ASCII characters; a thread id may be anything.
    return "langgraph-thread:" + hashlib.sha256(thread_id.encode()).hexdigest()


def _typed(pair: tuple[str, bytes]) -> s.TypedIn:
    return s.TypedIn(type=pair[0], data=pair[1])


def _config(thread_id: str, ns: str, checkpoint_id: str) -> RunnableConfig:
    return {
        "configurable": {
            "thread_id": thread_id,
            "checkpoint_ns": ns,
            "checkpoint_id": checkpoint_id,
        }
    }


class CtxlogSaver(BaseCheckpointSaver[str]):
    """LangGraph's ``BaseCheckpointSaver`` on a ctxlog server.

    ``client`` (an ``AsyncClient``) serves the async methods, ``sync_client`` (a ``Client``)
    the sync ones; give the one your graph uses, or both. ``subject_key`` names a
    ``configurable`` key (e.g. ``"user_id"``) whose value becomes the thread's data subject
    when its context is created: its checkpoints are then sealed under that subject's key, and
    erasing the subject erases them.
    """

    def __init__(
        self,
        client: AsyncClient | None = None,
        *,
        sync_client: Client | None = None,
        serde: SerializerProtocol | None = None,
        subject_key: str | None = None,
    ) -> None:
        super().__init__(serde=serde)
        if client is None and sync_client is None:
            raise ValueError("give an AsyncClient (client=) or a Client (sync_client=)")
        self.client = client
        self.sync_client = sync_client
        self.subject_key = subject_key
        self._ids: dict[str, str] = {}
        """Thread id -> context id."""
        self._threads: dict[str, Thread] = {}
        """Context id -> its folded thread."""
        self._forks: dict[tuple[str, int], Thread] = {}
        """(context id, version) -> the thread there: a fork's starting point."""

    # -- running steps ------------------------------------------------------------------------

    async def _arun(self, step: Step[Any]) -> Any:
        if self.client is None:
            raise RuntimeError("this CtxlogSaver has no AsyncClient (client=) for async use")
        return await run_async(step, self.client)

    def _run(self, step: Step[Any]) -> Any:
        if self.sync_client is None:
            raise RuntimeError("this CtxlogSaver has no Client (sync_client=) for sync use")
        return run_sync(step, self.sync_client)

    # -- threads and their folds --------------------------------------------------------------

    def _find(self, thread_id: str) -> Step[str | None]:
        """The context of a thread, if it was ever written."""
        found = self._ids.get(thread_id)
        if found is None:
            page = yield op.list_contexts(metadata={THREAD_KEY: thread_id}, limit=2)
            if page.contexts:
                found = self._ids[thread_id] = page.contexts[-1].id
        return found

    def _open(self, config: RunnableConfig) -> Step[str]:
        """The context of a thread, created on its first write (the same one for every
        process: its Idempotency-Key derives from the thread id)."""
        thread_id = str(config["configurable"]["thread_id"])
        found = self._ids.get(thread_id)
        if found is not None:
            return found
        metadata: dict[str, Any] = {ADAPTER_KEY: ADAPTER, THREAD_KEY: thread_id}
        subject = config["configurable"].get(self.subject_key) if self.subject_key else None
        if isinstance(subject, str) and subject:
            metadata["subject"] = subject
        try:
            created = yield op.create_context(metadata=metadata, idempotency_key=_key(thread_id))
        except IdempotencyKeyReused:
            # The thread was made by copy_thread (a fork under the same key): find it.
            again = yield from self._find(thread_id)
            if again is None:
                raise
            return again
        self._ids[thread_id] = created.id
        return str(created.id)

    def _fold(self, context_id: str, upto: int | None = None) -> Step[Thread]:
        """The thread of a context brought up to date (``upto``: as of that version, for a
        fork's starting point)."""
        if upto is not None and (context_id, upto) in self._forks:
            return self._forks[context_id, upto]
        thread = Thread() if upto is not None else self._threads.get(context_id, Thread())
        while upto is None or thread.version < upto:
            page = yield op.get_history(context_id, from_version=thread.version + 1, limit=1000)
            for event in page.events:
                if upto is not None and event.version > upto:
                    break
                if event.version == 1 and isinstance(event.data, ContextForked):
                    parent = yield from self._fold(event.data.parent_id, event.data.parent_version)
                    thread = Thread.starting(parent)
                thread.apply(event.version, event.data)
            if page.next_from_version is None:
                break
        if upto is None:
            known = self._threads.get(context_id)
            if known is None or known.version <= thread.version:
                self._threads[context_id] = thread
        else:
            self._forks[context_id, upto] = thread
        return thread

    def _thread(self, thread_id: str) -> Step[tuple[str, Thread] | None]:
        context_id = yield from self._find(thread_id)
        if context_id is None:
            return None
        return context_id, (yield from self._fold(context_id))

    def _threads_of(self, config: RunnableConfig | None) -> Step[list[tuple[str, Thread]]]:
        """(thread id, thread) of the config's thread, or of every LangGraph thread."""
        if config is not None:
            thread_id = str(config["configurable"]["thread_id"])
            found = yield from self._thread(thread_id)
            return [] if found is None else [(thread_id, found[1])]
        out, cursor = [], None
        while True:
            page = yield op.list_contexts(
                cursor=cursor, limit=1000, metadata={ADAPTER_KEY: ADAPTER}
            )
            for ctx in page.contexts:
                thread_id = str(ctx.metadata.get(THREAD_KEY, ""))
                self._ids.setdefault(thread_id, ctx.id)
                out.append((thread_id, (yield from self._fold(ctx.id))))
            if page.next_cursor is None:
                return out
            cursor = page.next_cursor

    def _recorded(self, context_id: str, recorded: s.Recorded, event: EventBase) -> None:
        # Our own write, right after what we folded: fold it in without reading it back.
        thread = self._threads.get(context_id)
        if thread is not None and recorded.version == thread.version + 1:
            thread.apply(recorded.version, event)

    # -- reading ------------------------------------------------------------------------------

    def _tuple(self, thread_id: str, ns: str, saved: Saved, thread: Thread) -> CheckpointTuple:
        loads = self.serde.loads_typed
        checkpoint: Checkpoint = loads((saved.checkpoint.type, saved.checkpoint.data))
        values: dict[str, Any] = {}
        for channel, version in checkpoint["channel_versions"].items():
            blob = thread.blobs.get((ns, channel, str(version)))
            if blob is not None and blob.type != "empty":
                values[channel] = loads((blob.type, blob.data))
        writes = sorted(
            thread.writes.get((ns, saved.checkpoint_id), {}).values(),
            key=lambda w: sort_key(w.task_path, w.task_id, w.idx),
        )
        return CheckpointTuple(
            config=_config(thread_id, ns, saved.checkpoint_id),
            checkpoint={**checkpoint, "channel_values": values},
            metadata=loads((saved.metadata.type, saved.metadata.data)),
            parent_config=None
            if saved.parent_id is None
            else _config(thread_id, ns, saved.parent_id),
            pending_writes=[
                (w.task_id, w.channel, loads((w.value.type, w.value.data))) for w in writes
            ],
        )

    def _get_tuple(self, config: RunnableConfig) -> Step[CheckpointTuple | None]:
        thread_id = str(config["configurable"]["thread_id"])
        ns = config["configurable"].get("checkpoint_ns", "")
        found = yield from self._thread(thread_id)
        if found is None:
            return None
        thread = found[1]
        checkpoint_id = get_checkpoint_id(config)
        saved = (
            thread.checkpoints.get(ns, {}).get(checkpoint_id)
            if checkpoint_id
            else thread.latest(ns)
        )
        return None if saved is None else self._tuple(thread_id, ns, saved, thread)

    def _list(
        self,
        config: RunnableConfig | None,
        filter: dict[str, Any] | None,
        before: RunnableConfig | None,
        limit: int | None,
    ) -> Step[list[CheckpointTuple]]:
        threads = yield from self._threads_of(config)
        wanted_ns = None if config is None else config["configurable"].get("checkpoint_ns")
        wanted_id = None if config is None else get_checkpoint_id(config)
        before_id = None if before is None else get_checkpoint_id(before)
        out: list[CheckpointTuple] = []
        for thread_id, thread in threads:
            for ns, found in thread.checkpoints.items():
                if wanted_ns is not None and ns != wanted_ns:
                    continue
                for checkpoint_id in sorted(found, reverse=True):
                    if wanted_id is not None and checkpoint_id != wanted_id:
                        continue
                    if before_id is not None and checkpoint_id >= before_id:
                        continue
                    found_tuple = self._tuple(thread_id, ns, found[checkpoint_id], thread)
                    if filter and not all(
                        found_tuple.metadata.get(k) == v for k, v in filter.items()
                    ):
                        continue
                    out.append(found_tuple)
                    if limit is not None and len(out) >= limit:
                        return out
        return out

    # -- writing ------------------------------------------------------------------------------

    def _put(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> Step[RunnableConfig]:
        context_id = yield from self._open(config)
        dumps = self.serde.dumps_typed
        rest = dict(checkpoint)
        values: dict[str, Any] = rest.pop("channel_values")  # type: ignore[assignment]
        blobs = [
            s.BlobIn(
                channel=channel,
                version=str(version),
                value=_typed(dumps(values[channel]) if channel in values else ("empty", b"")),
            )
            for channel, version in new_versions.items()
        ]
        ns = config["configurable"].get("checkpoint_ns", "")
        body = s.SaveCheckpoint(
            checkpoint_ns=ns,
            checkpoint_id=checkpoint["id"],
            parent_checkpoint_id=config["configurable"].get("checkpoint_id"),
            checkpoint=_typed(dumps(rest)),
            metadata=_typed(dumps(get_checkpoint_metadata(config, metadata))),
            blobs=blobs,
        )
        recorded = yield op.save_checkpoint(context_id, body)
        self._recorded(context_id, recorded, _saved_event(body))
        return _config(str(config["configurable"]["thread_id"]), ns, checkpoint["id"])

    def _put_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str,
    ) -> Step[None]:
        if not writes:
            return
        context_id = yield from self._open(config)
        dumps = self.serde.dumps_typed
        body = s.RecordWrites(
            checkpoint_ns=config["configurable"].get("checkpoint_ns", ""),
            checkpoint_id=config["configurable"]["checkpoint_id"],
            task_id=task_id,
            task_path=task_path,
            writes=[
                s.WriteIn(
                    idx=WRITES_IDX_MAP.get(channel, i), channel=channel, value=_typed(dumps(v))
                )
                for i, (channel, v) in enumerate(writes)
            ],
        )
        recorded = yield op.record_writes(context_id, body)
        self._recorded(context_id, recorded, _writes_event(body))

    def _remove(self, thread_id: str, pick: Pick, reason: str) -> Step[None]:
        """Record that the checkpoints ``pick(thread)`` names no longer count (None: all of
        them; []: nothing to do), at the version they were picked from (If-Match), again
        when another writer got in between."""
        conflicts = 0
        while conflicts < RETRIES:
            found = yield from self._thread(thread_id)
            if found is None:
                return
            context_id, thread = found
            refs = pick(thread)
            if refs == []:
                return
            # A request names at most CHUNK checkpoints; more take one removal each chunk.
            chunk = None if refs is None else refs[:CHUNK]
            body = s.RemoveCheckpoints(checkpoints=chunk or [], all=refs is None, reason=reason)
            try:
                recorded = yield op.remove_checkpoints(context_id, body, if_match=thread.version)
            except VersionConflict:
                conflicts += 1
                continue
            self._recorded(context_id, recorded, _removed_event(body))
            if refs is None or len(refs) <= CHUNK:
                return
        raise VersionConflict(
            "remove_checkpoints", 412, "version_conflict", "other writers kept getting ahead"
        )

    def _delete_for_runs(self, run_ids: Sequence[str]) -> Step[None]:
        wanted = set(run_ids)
        if not wanted:
            return
        threads = yield from self._threads_of(None)
        loads = self.serde.loads_typed

        def of_runs(thread: Thread) -> list[s.CheckpointRefIn]:
            return [
                s.CheckpointRefIn(checkpoint_ns=ns, checkpoint_id=cid)
                for ns, found in thread.checkpoints.items()
                for cid, saved in found.items()
                if loads((saved.metadata.type, saved.metadata.data)).get("run_id") in wanted
            ]

        for thread_id, _ in threads:
            yield from self._remove(thread_id, of_runs, "delete_for_runs")

    def _prune(self, thread_ids: Sequence[str], strategy: str) -> Step[None]:
        if strategy not in ("keep_latest", "delete"):
            raise ValueError(f"unknown prune strategy {strategy!r} (keep_latest, delete)")

        def older(thread: Thread) -> list[s.CheckpointRefIn] | None:
            if strategy == "delete":
                return None if thread.checkpoints else []
            return [
                s.CheckpointRefIn(checkpoint_ns=ns, checkpoint_id=cid)
                for ns, found in thread.checkpoints.items()
                for cid in sorted(found)[:-1]
            ]

        for thread_id in thread_ids:
            yield from self._remove(thread_id, older, f"prune {strategy}")

    def _delete_thread(self, thread_id: str) -> Step[None]:
        yield from self._remove(
            thread_id, lambda t: None if t.checkpoints or t.writes else [], "delete_thread"
        )

    def _copy_thread(self, source: str, target: str) -> Step[None]:
        context_id = yield from self._find(source)
        if context_id is None:
            return  # nothing to copy
        fork = yield op.fork(
            context_id,
            metadata={ADAPTER_KEY: ADAPTER, THREAD_KEY: target},
            idempotency_key=_key(target),
        )
        self._ids[target] = fork.id

    # -- BaseCheckpointSaver ------------------------------------------------------------------

    def get_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        """The checkpoint ``config`` names, or the thread's newest in its namespace."""
        result: CheckpointTuple | None = self._run(self._get_tuple(config))
        return result

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        """The checkpoint ``config`` names, or the thread's newest in its namespace."""
        result: CheckpointTuple | None = await self._arun(self._get_tuple(config))
        return result

    def list(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> Iterator[CheckpointTuple]:
        """Checkpoints newest first (a thread's, or every thread's with ``config=None``)."""
        yield from self._run(self._list(config, filter, before, limit))

    async def alist(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[CheckpointTuple]:
        """Checkpoints newest first (a thread's, or every thread's with ``config=None``)."""
        for found in await self._arun(self._list(config, filter, before, limit)):
            yield found

    def put(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        """Record a checkpoint with the channel values of ``new_versions``."""
        result: RunnableConfig = self._run(self._put(config, checkpoint, metadata, new_versions))
        return result

    async def aput(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        """Record a checkpoint with the channel values of ``new_versions``."""
        step = self._put(config, checkpoint, metadata, new_versions)
        result: RunnableConfig = await self._arun(step)
        return result

    def put_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        """Record a task's pending writes toward ``config``'s checkpoint."""
        self._run(self._put_writes(config, writes, task_id, task_path))

    async def aput_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        """Record a task's pending writes toward ``config``'s checkpoint."""
        await self._arun(self._put_writes(config, writes, task_id, task_path))

    def delete_thread(self, thread_id: str) -> None:
        """Every checkpoint of the thread no longer counts (the log keeps them)."""
        self._run(self._delete_thread(thread_id))

    async def adelete_thread(self, thread_id: str) -> None:
        """Every checkpoint of the thread no longer counts (the log keeps them)."""
        await self._arun(self._delete_thread(thread_id))

    def delete_for_runs(self, run_ids: Sequence[str]) -> None:
        """The checkpoints of these runs no longer count, in every thread."""
        self._run(self._delete_for_runs(run_ids))

    async def adelete_for_runs(self, run_ids: Sequence[str]) -> None:
        """The checkpoints of these runs no longer count, in every thread."""
        await self._arun(self._delete_for_runs(run_ids))

    def copy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        """The target thread starts as the source is now: a fork (one event, no copy)."""
        self._run(self._copy_thread(source_thread_id, target_thread_id))

    async def acopy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        """The target thread starts as the source is now: a fork (one event, no copy)."""
        await self._arun(self._copy_thread(source_thread_id, target_thread_id))

    def prune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        """Keep each namespace's newest checkpoint (``keep_latest``) or none (``delete``)."""
        self._run(self._prune(thread_ids, strategy))

    async def aprune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        """Keep each namespace's newest checkpoint (``keep_latest``) or none (``delete``)."""
        await self._arun(self._prune(thread_ids, strategy))

    def get_next_version(self, current: str | None, channel: None) -> str:
        """A channel's next version: a counter and a random tail (as LangGraph's own savers),
        so that versions written on two forks of a thread never collide."""
        # LangGraph hands back what it was given, or an int from older checkpoints.
        number = 0 if current is None else int(str(current).split(".")[0])
        return f"{number + 1:032}.{random.random():016}"


def _plain(value: s.TypedIn) -> Typed:
    return Typed(type=value.type, data=value.data)


def _saved_event(body: s.SaveCheckpoint) -> EventBase:
    return CheckpointSaved(
        checkpoint_ns=body.checkpoint_ns,
        checkpoint_id=body.checkpoint_id,
        parent_checkpoint_id=body.parent_checkpoint_id,
        content=CheckpointContent(
            checkpoint=_plain(body.checkpoint),
            metadata=_plain(body.metadata),
            blobs=[
                Blob(channel=b.channel, version=b.version, value=_plain(b.value))
                for b in body.blobs
            ],
        ),
    )


def _writes_event(body: s.RecordWrites) -> EventBase:
    return CheckpointWritesRecorded(
        checkpoint_ns=body.checkpoint_ns,
        checkpoint_id=body.checkpoint_id,
        task_id=body.task_id,
        task_path=body.task_path,
        content=WritesContent(
            writes=[Write(idx=w.idx, channel=w.channel, value=_plain(w.value)) for w in body.writes]
        ),
    )


def _removed_event(body: s.RemoveCheckpoints) -> EventBase:
    return CheckpointsRemoved(
        checkpoints=[
            CheckpointRef(checkpoint_ns=r.checkpoint_ns, checkpoint_id=r.checkpoint_id)
            for r in body.checkpoints
        ],
        all=body.all,
        reason=body.reason,
    )
