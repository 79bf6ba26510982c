"""The context endpoints: each handler decodes, calls the contexts service, encodes.

Writes answer with the context as it is after the write (``ETag`` = its version) unless noted;
an idempotent retry answers with the context as of the first write, marked
``Idempotent-Replayed: true``. Path ids that are not UUIDs name no resource: 404.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

import projections as pj
from projections.queries import check_metadata_filter
from projections.service import Written

from .. import appkeys, formats
from ..auth import caller
from ..errors import ApiError, invalid
from . import render, schemas, wire
from .consistency import context_query
from .openapi import WRITE_HEADERS, operation


async def _context(
    request: web.Request, written: Written, status: int = 200, *, head: bool = False
) -> web.Response:
    """The context a write left, or (for a retry) the one the first write left; ``head``:
    without its messages (a ``next`` link pages them)."""
    service = appkeys.contexts(request)
    who = caller(request)
    budget = 0 if head else request.app[appkeys.SETTINGS].response_budget_bytes
    try:
        if written.duplicate:
            state = await service.get(who, written.context_id, version=written.version)
            out = render.render_within(state, budget)
            pieces, next_url, version = [wire.encode(out)], out.next, state.version
        else:
            whole = await service.whole(who, written.context_id, budget=budget)
            (pieces, next_url), version = render.render_whole(whole), whole.state.version
    except pj.ProjectorBehind as e:
        # The write is in the log (durable, acknowledged); only reading it back must wait.
        # Say so, so that a client does not repeat a write that was not lost.
        raise ApiError(
            503,
            "behind",
            f"the write was recorded (version {written.version}) but cannot be read back"
            " until the read model catches up; read it later, do not repeat it",
            {
                "written": True,
                "context_id": written.context_id,
                "version": written.version,
                "status": e.status,
                "reason": e.reason,
                "retry_after": e.retry_after,
            },
        ) from e
    response = wire.json_pieces_response(
        pieces, status, version=version, replayed=written.duplicate, next_url=next_url
    )
    if status == 201:
        response.headers["Location"] = f"/api/v1/contexts/{written.context_id}"
    return response


# -- contexts ---------------------------------------------------------------------------------


@operation(
    "Create a context",
    tag="contexts",
    body=schemas.CreateContext,
    body_required=False,
    response=schemas.ContextOut,
    status=201,
    headers=("Idempotency-Key",),
    errors=(422,),
)
async def create_context(request: web.Request) -> web.Response:
    """A new, empty context of the caller's tenant."""
    body = await wire.read_optional_json(request, schemas.CreateContext)
    written = await appkeys.contexts(request).create(
        caller(request),
        metadata=body.metadata,
        window=None if body.window is None else body.window.settings(),
        idempotency_key=wire.idempotency_key(request),
    )
    return await _context(request, written, 201)


@operation(
    "List contexts, newest first",
    query=schemas.ListQuery,
    response=schemas.ContextList,
    tag="contexts",
)
async def list_contexts(request: web.Request) -> web.Response:
    """A page of the caller's live contexts; ``metadata.<key>=<value>`` filters by metadata."""
    params = wire.query(request, schemas.ListQuery, exclude="metadata.")
    filters = {
        key.removeprefix("metadata."): value
        for key, value in request.query.items()
        if key.startswith("metadata.")
    }
    try:
        check_metadata_filter(filters)
    except pj.InvalidCommand as e:
        raise invalid(str(e), "$.metadata", "query") from None
    try:
        page = await appkeys.contexts(request).list(
            caller(request), cursor=params.cursor, limit=params.limit, metadata=filters or None
        )
    except pj.InvalidCommand as e:  # the only one list raises: a cursor it did not issue
        raise invalid(str(e), "$.cursor", "query") from None
    return wire.json_response(render.render_list(page))


@operation(
    "Get a context, now or as it was (?version=N or ?at=ISO-8601)",
    tag="contexts",
    query=schemas.GetContextQuery,
    response=schemas.ContextOut,
    errors=(304, 404),
)
async def get_context(request: web.Request) -> web.StreamResponse:
    """The context now, at a version, or at a time; 304 when If-None-Match is current."""
    context_id, params = await context_query(request, schemas.GetContextQuery)
    if params.version is not None and params.at is not None:
        raise invalid("give version or at, not both", "$.at", "query")
    if params.version is None and params.at is None and params.messages:
        # Now, whole: the messages' stored JSON, as much as the response budget takes.
        budget = request.app[appkeys.SETTINGS].response_budget_bytes
        whole = await appkeys.contexts(request).whole(caller(request), context_id, budget=budget)
        tag = wire.etag(whole.state.version)
        if request.headers.get("If-None-Match") == tag:
            return web.Response(status=304, headers={"ETag": tag})
        pieces, next_url = render.render_whole(whole)
        return wire.json_pieces_response(pieces, version=whole.state.version, next_url=next_url)
    state = await appkeys.contexts(request).get(
        caller(request), context_id, version=params.version, at=params.at,
        include_messages=params.messages,
    )  # fmt: skip
    tag = wire.etag(state.version)
    if request.headers.get("If-None-Match") == tag:
        return web.Response(status=304, headers={"ETag": tag})
    if params.messages:  # from history: as much as the response budget takes, too
        out = render.render_within(state, request.app[appkeys.SETTINGS].response_budget_bytes)
        return wire.json_pieces_response(
            [wire.encode(out)], version=state.version, next_url=out.next
        )
    total = None
    if not state.messages:
        # A header read from the read model has no messages to add up: take its total.
        now, size = await appkeys.contexts(request).size(caller(request), context_id)
        total = size.total_tokens if now == state.version else None
    body = render.render_context(state, messages=False, total_tokens=total)
    return wire.json_response(body, version=state.version)


@operation(
    "Delete a context (a tombstone: its history stays for audit)",
    tag="contexts",
    body=schemas.DeleteContext,
    body_required=False,
    status=204,
    headers=WRITE_HEADERS,
    errors=(404, 412, 422),
)
async def delete_context(request: web.Request) -> web.Response:
    """Tombstone the context; afterwards it reads as not found."""
    context_id = wire.path_uuid(request)
    body = await wire.read_optional_json(request, schemas.DeleteContext)
    await appkeys.contexts(request).delete(
        caller(request),
        context_id,
        reason=body.reason,
        expected_version=wire.expected_version(request),
        idempotency_key=wire.idempotency_key(request),
    )
    return web.Response(status=204)


_APPEND_BODIES: dict[str | None, Any] = {
    None: schemas.AppendMessages,
    "openai": schemas.OpenAIMessages,
    "responses": schemas.ResponsesItems,
    "anthropic": schemas.AnthropicMessages,
}
"""The body an append takes, by its ``?format=``."""


@operation(
    "Append one message, or several atomically",
    tag="messages",
    query=schemas.AppendQuery,
    body=tuple(_APPEND_BODIES.values()),
    response=(schemas.ContextOut, schemas.Appended),
    status=201,
    headers=(*WRITE_HEADERS, "Prefer"),
    errors=(404, 409, 412, 422),
    description=(
        "With `Prefer: return=minimal` the answer is `Appended` ({version, message_ids}).\n\n"
        "`?format=` takes the providers' own shapes as the body, stored losslessly: `openai` "
        "`{messages: [...]}` (Chat Completions message params: developer, system, user, "
        "assistant with tool_calls, tool with tool_call_id; text, image_url and file parts), "
        "`responses` `{items: [...]}` (Responses input items: messages with input_text, "
        "input_image, input_file or output_text parts, function_call, function_call_output, "
        "reasoning kept opaque), `anthropic` `{system, messages: [...]}` (Messages params: "
        "text, image, document, tool_use, tool_result, thinking kept opaque). A message that "
        "is invalid in its format is a 400 whose `details.path` names the field; a tool "
        "result must answer a call of the latest assistant message before it (in the body or "
        "in the context). Fields a format defines that ctxlog does not model (cache_control, "
        "annotations, item ids, ...) are kept and rendered back in that format."
    ),
)
async def append_messages(request: web.Request) -> web.Response:
    """Append messages; O(1) in the context's length when the answer is minimal."""
    context_id = wire.path_uuid(request)
    fmt = wire.query(request, schemas.AppendQuery).format
    body = await wire.read_json(request, _APPEND_BODIES[fmt])
    service = appkeys.contexts(request)
    who = caller(request)
    if isinstance(body, schemas.AppendMessages):
        messages = render.new_messages(body)
    else:
        messages, pending = formats.parse(
            fmt or "openai",
            body.items if isinstance(body, schemas.ResponsesItems) else body.messages,
            system=body.system if isinstance(body, schemas.AnthropicMessages) else None,
            path="$.items" if isinstance(body, schemas.ResponsesItems) else "$.messages",
        )
        if not messages:
            raise invalid("give system or at least one message", "$.messages")
        await formats.check_answers(service, who, context_id, pending)
    written = await service.append(
        who,
        context_id,
        messages,
        expected_version=wire.expected_version(request, body.expected_version),
        idempotency_key=wire.idempotency_key(request),
    )
    if wire.prefers_minimal(request):
        minimal = schemas.Appended(version=written.version, message_ids=written.message_ids)
        return wire.json_response(minimal, 201, version=written.version, replayed=written.duplicate)
    return await _context(request, written, 201)


@operation(
    "Edit a message's content",
    tag="messages",
    body=schemas.EditMessage,
    response=schemas.ContextOut,
    headers=WRITE_HEADERS,
    errors=(404, 412, 422),
)
async def edit_message(request: web.Request) -> web.Response:
    """Replace one message's content."""
    context_id = wire.path_uuid(request)
    message_id = wire.path_uuid(request, "message_id")
    body = await wire.read_json(request, schemas.EditMessage)
    written = await appkeys.contexts(request).edit(
        caller(request),
        context_id,
        message_id,
        body.content,
        expected_version=wire.expected_version(request, body.expected_version),
        idempotency_key=wire.idempotency_key(request),
    )
    return await _context(request, written)


@operation(
    "Redact a message (its content is blanked; it keeps its place)",
    tag="messages",
    body=schemas.RedactMessage,
    body_required=False,
    response=schemas.ContextOut,
    headers=WRITE_HEADERS,
    errors=(404, 412, 422),
)
async def redact_message(request: web.Request) -> web.Response:
    """Blank one message's content, keeping a hash of what it held."""
    context_id = wire.path_uuid(request)
    message_id = wire.path_uuid(request, "message_id")
    body = await wire.read_optional_json(request, schemas.RedactMessage)
    written = await appkeys.contexts(request).redact(
        caller(request),
        context_id,
        message_id,
        reason=body.reason,
        expected_version=wire.expected_version(request, body.expected_version),
        idempotency_key=wire.idempotency_key(request),
    )
    return await _context(request, written)


@operation(
    "Change metadata by a JSON merge patch (RFC 7386)",
    tag="contexts",
    body=schemas.Metadata,
    response=schemas.ContextOut,
    headers=WRITE_HEADERS,
    errors=(404, 412, 422),
)
async def patch_metadata(request: web.Request) -> web.Response:
    """Merge-patch the context's metadata (``null`` removes a key)."""
    context_id = wire.path_uuid(request)
    patch = await wire.read_json(request, dict[str, Any])
    written = await appkeys.contexts(request).update_metadata(
        caller(request),
        context_id,
        patch,
        expected_version=wire.expected_version(request),
        idempotency_key=wire.idempotency_key(request),
    )
    return await _context(request, written)


@operation(
    "Set the context's default window",
    tag="windows",
    body=schemas.WindowIn,
    response=schemas.ContextOut,
    headers=WRITE_HEADERS,
    errors=(404, 412, 422),
)
async def configure_window(request: web.Request) -> web.Response:
    """Replace the context's default window settings."""
    context_id = wire.path_uuid(request)
    body = await wire.read_json(request, schemas.WindowIn)
    written = await appkeys.contexts(request).configure_window(
        caller(request),
        context_id,
        body.settings(),
        expected_version=wire.expected_version(request),
        idempotency_key=wire.idempotency_key(request),
    )
    return await _context(request, written)


@operation(
    "Add a summary standing in for messages through one message",
    tag="messages",
    body=schemas.AddSummary,
    response=schemas.ContextOut,
    status=201,
    headers=WRITE_HEADERS,
    errors=(404, 412, 422),
)
async def add_summary(request: web.Request) -> web.Response:
    """Add a summary; windows show it instead of the messages it covers."""
    context_id = wire.path_uuid(request)
    body = await wire.read_json(request, schemas.AddSummary)
    written = await appkeys.contexts(request).add_summary(
        caller(request),
        context_id,
        body.text,
        str(body.through_message_id),
        expected_version=wire.expected_version(request, body.expected_version),
        idempotency_key=wire.idempotency_key(request),
    )
    return await _context(request, written, 201)


@operation(
    "Roll the context back to an earlier version (a new event; history stays)",
    tag="history",
    body=schemas.Rollback,
    response=schemas.ContextOut,
    headers=WRITE_HEADERS,
    errors=(404, 409, 412, 422),
)
async def rollback(request: web.Request) -> web.Response:
    """Return the context to its state as of ``to_version``."""
    context_id = wire.path_uuid(request)
    body = await wire.read_json(request, schemas.Rollback)
    written = await appkeys.contexts(request).rollback(
        caller(request),
        context_id,
        body.to_version,
        reason=body.reason,
        expected_version=wire.expected_version(request, body.expected_version),
        idempotency_key=wire.idempotency_key(request),
    )
    return await _context(request, written)


@operation(
    "Fork the context into a new one",
    tag="history",
    body=schemas.Fork,
    body_required=False,
    response=schemas.ContextOut,
    status=201,
    headers=("Idempotency-Key",),
    errors=(404, 409, 422),
)
async def fork(request: web.Request) -> web.Response:
    """A new context starting as this one at ``at_version`` (default: now)."""
    context_id = wire.path_uuid(request)
    body = await wire.read_optional_json(request, schemas.Fork)
    written = await appkeys.contexts(request).fork(
        caller(request),
        context_id,
        at_version=body.at_version,
        metadata=body.metadata,
        idempotency_key=wire.idempotency_key(request),
    )
    return await _context(request, written, 201, head=True)


# -- data subjects ----------------------------------------------------------------------------


@operation(
    "Erase a data subject in the caller's tenant (crypto-shredding; idempotent)",
    tag="audit",
    response=schemas.SubjectErasedOut,
    errors=(400,),
    description=(
        "Destroys the key of `subject` (a `metadata.subject` of messages or contexts) in the"
        " caller's tenant: that content (messages, their edits, summaries of them, served"
        " windows' digests) reads as `[erased]` everywhere from now on, in every process on"
        " the database, while the log, its hash chain and history stay intact. Each context"
        " that held it records a `subject.erased` event. An unknown or already erased subject"
        " is not an error. 503 when the erasure is done but another process holds the read"
        " model's file open, so it could not be rebuilt without the old bytes: erase again"
        " once that process is stopped."
    ),
)
async def erase_subject(request: web.Request) -> web.Response:
    """Crypto-shred a subject; answers with what was erased."""
    subject = request.match_info["subject"]
    if not 1 <= len(subject) <= 256 or "\x00" in subject:
        raise invalid("a subject is 1-256 characters, without NUL", "subject", "path")
    done = await appkeys.contexts(request).erase(caller(request), subject)
    return wire.json_response(
        schemas.SubjectErasedOut(
            subject=done.subject, tenant=done.tenant, keys_destroyed=done.keys_destroyed,
            contexts=done.contexts,
        )
    )  # fmt: skip
