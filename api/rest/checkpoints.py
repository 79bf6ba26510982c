"""The checkpoint endpoints: an agent framework's state on a context (a LangGraph thread).

Each records one event (``checkpoint.saved``, ``checkpoint.writes_recorded``,
``checkpoints.removed``) and answers with the context's new version; the framework reads them
back from the context's history (``GET /contexts/{id}/events``) and folds them itself
(``api.client.langgraph``), so nothing here reads what they hold.
"""

from __future__ import annotations

from aiohttp import web

import eventstore as es
from projections.checkpoints import CheckpointEvent

from .. import appkeys
from ..auth import caller
from . import schemas, wire
from .openapi import WRITE_HEADERS, operation


def _typed(value: schemas.TypedIn) -> es.Typed:
    return es.Typed(type=value.type, data=value.data)


async def _record(
    request: web.Request, event: CheckpointEvent, in_body: int | None, status: int
) -> web.Response:
    context_id = wire.path_uuid(request)
    written = await appkeys.contexts(request).record_checkpoint(
        caller(request),
        context_id,
        event,
        expected_version=wire.expected_version(request, in_body),
        idempotency_key=wire.idempotency_key(request),
    )
    body = schemas.Recorded(context_id=context_id, version=written.version)
    return wire.json_response(body, status, version=written.version, replayed=written.duplicate)


@operation(
    "Save a checkpoint of an agent framework (LangGraph) on the context",
    tag="checkpoints",
    body=schemas.SaveCheckpoint,
    response=schemas.Recorded,
    status=201,
    headers=WRITE_HEADERS,
    errors=(404, 412, 422),
    description=(
        "Records a `checkpoint.saved` event: the checkpoint without its channel values, its"
        " metadata, and the values of the channels whose version it advanced (`blobs`; the"
        " others are in earlier checkpoints). Values are the framework's serialized bytes,"
        " base64; sealed under the context's `metadata.subject` like messages."
    ),
)
async def save_checkpoint(request: web.Request) -> web.Response:
    """Record a checkpoint."""
    body = await wire.read_json(request, schemas.SaveCheckpoint)
    content = es.CheckpointContent(
        checkpoint=_typed(body.checkpoint),
        metadata=_typed(body.metadata),
        blobs=[
            es.Blob(channel=b.channel, version=b.version, value=_typed(b.value)) for b in body.blobs
        ],
    )
    event = es.CheckpointSaved(
        checkpoint_ns=body.checkpoint_ns, checkpoint_id=body.checkpoint_id,
        parent_checkpoint_id=body.parent_checkpoint_id, content=content,
    )  # fmt: skip
    return await _record(request, event, body.expected_version, 201)


@operation(
    "Record a task's writes toward a checkpoint",
    tag="checkpoints",
    body=schemas.RecordWrites,
    response=schemas.Recorded,
    status=201,
    headers=WRITE_HEADERS,
    errors=(404, 412, 422),
    description=(
        "Records a `checkpoint.writes_recorded` event: the writes of task `task_id` toward"
        " the checkpoint after `checkpoint_id` (LangGraph's pending writes)."
    ),
)
async def record_writes(request: web.Request) -> web.Response:
    """Record a task's pending writes."""
    body = await wire.read_json(request, schemas.RecordWrites)
    writes = [es.Write(idx=w.idx, channel=w.channel, value=_typed(w.value)) for w in body.writes]
    event = es.CheckpointWritesRecorded(
        checkpoint_ns=body.checkpoint_ns, checkpoint_id=body.checkpoint_id,
        task_id=body.task_id, task_path=body.task_path, content=es.WritesContent(writes=writes),
    )  # fmt: skip
    return await _record(request, event, body.expected_version, 201)


@operation(
    "Remove checkpoints (an event: the log keeps them, readers fold them out)",
    tag="checkpoints",
    body=schemas.RemoveCheckpoints,
    response=schemas.Recorded,
    headers=WRITE_HEADERS,
    errors=(404, 412, 422),
    description=(
        "Records a `checkpoints.removed` event naming the checkpoints that no longer count"
        " (with their writes), or `all` of them so far (LangGraph's delete_thread, prune,"
        " delete_for_runs). Nothing is deleted from the log: history and time travel keep"
        " them."
    ),
)
async def remove_checkpoints(request: web.Request) -> web.Response:
    """Record that checkpoints no longer count."""
    body = await wire.read_json(request, schemas.RemoveCheckpoints)
    refs = [
        es.CheckpointRef(checkpoint_ns=r.checkpoint_ns, checkpoint_id=r.checkpoint_id)
        for r in body.checkpoints
    ]
    event = es.CheckpointsRemoved(checkpoints=refs, all=body.all, reason=body.reason)
    return await _record(request, event, body.expected_version, 200)
