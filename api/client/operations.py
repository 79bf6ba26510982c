"""One function per API operation, named as its OpenAPI ``operationId``: it takes the
operation's arguments and returns the ``Call`` to send. Both clients expose these as their
methods (``Operation`` binds each to the client's ``send``), so every signature is written once.

Bodies are the API's own request Structs (``api.rest.schemas``); answers decode into its
response Structs. Writes take ``idempotency_key`` (default ``AUTO``: a new key per call, the
same for its retries) and, where the server takes one, ``if_match`` (a version or ``SEEN``).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any, Generic, Literal, ParamSpec, TypeVar, overload
from urllib.parse import quote

from api.rest import schemas as s
from eventstore.events import Content

from .versions import Versions
from .wire import AUTO, Call, IfMatch, Retry, encode, key_for, query

if TYPE_CHECKING:
    from collections.abc import Awaitable

    from .aio import AsyncClient
    from .sync import Client

P = ParamSpec("P")
T = TypeVar("T")

V1 = "/api/v1"
AppendBody = s.AppendMessages | s.OpenAIMessages | s.ResponsesItems | s.AnthropicMessages
_FORMATS: dict[type[Any], str] = {
    s.OpenAIMessages: "openai",
    s.ResponsesItems: "responses",
    s.AnthropicMessages: "anthropic",
}
OK = frozenset({200})
CREATED = frozenset({201})
NO_CONTENT = frozenset({204})


class Operation(Generic[P, T]):
    """A client method made from a ``Call`` builder: on an ``AsyncClient`` it returns an
    awaitable of the answer, on a ``Client`` the answer itself."""

    def __init__(self, build: Callable[P, Call[T]]) -> None:
        self.build = build
        self.__doc__ = build.__doc__
        self.__name__ = build.__name__

    @overload
    def __get__(self, obj: None, owner: type[Any]) -> Operation[P, T]: ...
    @overload
    def __get__(self, obj: AsyncClient, owner: type[Any]) -> Callable[P, Awaitable[T]]: ...
    @overload
    def __get__(self, obj: Client, owner: type[Any]) -> Callable[P, T]: ...
    def __get__(self, obj: Any, owner: type[Any]) -> Any:
        if obj is None:
            return self
        build, send = self.build, obj.send

        def bound(*args: P.args, **kwargs: P.kwargs) -> Any:
            return send(build(*args, **kwargs))

        bound.__doc__, bound.__name__ = self.__doc__, self.__name__
        return bound


def _ctx(context_id: str | uuid.UUID) -> str:
    text = str(context_id)
    return quote(text, safe="")


# -- the server -------------------------------------------------------------------------------


def get_server_info() -> Call[s.Root]:
    """``GET /``: the server's name and version."""
    return Call("get_server_info", "GET", "/", s.Root, OK)


def get_health() -> Call[s.Health]:
    """``GET /healthz``: ok, or starting / behind / failed with a reason (503 is an answer)."""
    return Call("get_health", "GET", "/healthz", s.Health, frozenset({200, 503}))


# -- contexts ---------------------------------------------------------------------------------


def create_context(
    *,
    metadata: dict[str, Any] | None = None,
    window: s.WindowIn | None = None,
    idempotency_key: str | None = AUTO,
) -> Call[s.ContextOut]:
    """``POST /contexts``: a new, empty context (the same one again for a repeated key)."""
    body = s.CreateContext(metadata=metadata or {}, window=window)
    return Call(
        "create_context", "POST", f"{V1}/contexts", s.ContextOut, CREATED,
        body=encode(body), idempotency_key=key_for(idempotency_key),
    )  # fmt: skip


def list_contexts(
    *, cursor: str | None = None, limit: int = 50, metadata: dict[str, str] | None = None
) -> Call[s.ContextList]:
    """``GET /contexts``: a page of contexts, newest first, filtered by metadata key = value."""
    params = query(cursor=cursor, limit=limit)
    params.update({f"metadata.{k}": v for k, v in (metadata or {}).items()})
    return Call("list_contexts", "GET", f"{V1}/contexts", s.ContextList, OK, query=params)


def get_context(
    context_id: str | uuid.UUID,
    *,
    version: int | None = None,
    at: datetime | None = None,
    messages: bool = True,
) -> Call[s.ContextOut]:
    """``GET /contexts/{id}``: the context now, at a version, or as it was at a time."""
    params = query(version=version, at=at, messages=None if messages else False)
    return Call(
        "get_context", "GET", f"{V1}/contexts/{_ctx(context_id)}", s.ContextOut, OK,
        query=params, context_id=str(context_id),
        reads=True,
    )  # fmt: skip


def delete_context(
    context_id: str | uuid.UUID,
    *,
    reason: str | None = None,
    if_match: IfMatch = None,
    idempotency_key: str | None = AUTO,
) -> Call[None]:
    """``DELETE /contexts/{id}``: a tombstone; the history stays."""
    body = None if reason is None else encode(s.DeleteContext(reason=reason))
    return Call(
        "delete_context", "DELETE", f"{V1}/contexts/{_ctx(context_id)}", None, NO_CONTENT,
        body=body, idempotency_key=key_for(idempotency_key), if_match=if_match,
        context_id=str(context_id),
    )  # fmt: skip


def append_messages(
    context_id: str | uuid.UUID,
    body: AppendBody | list[s.MessageIn],
    *,
    if_match: IfMatch = None,
    idempotency_key: str | None = AUTO,
) -> Call[s.Appended]:
    """``POST /contexts/{id}/messages``: append atomically, answered minimally (version and
    message ids: O(1) in the context's length). The body's type picks the format: ctxlog's
    own messages (``AppendMessages`` or a list of ``MessageIn``), ``OpenAIMessages``,
    ``ResponsesItems`` or ``AnthropicMessages``."""
    if isinstance(body, list):
        body = s.AppendMessages(messages=body)
    fmt = _FORMATS.get(type(body))
    return Call(
        "append_messages", "POST", f"{V1}/contexts/{_ctx(context_id)}/messages", s.Appended,
        CREATED, query=query(format=fmt), body=encode(body),
        headers={"Prefer": "return=minimal"}, idempotency_key=key_for(idempotency_key),
        if_match=if_match, context_id=str(context_id),
    )  # fmt: skip


def list_messages(
    context_id: str | uuid.UUID,
    *,
    version: int | None = None,
    after: int | None = None,
    limit: int = 100,
    direction: Literal["forward", "backward"] = "forward",
) -> Call[s.MessagePageOut]:
    """``GET /contexts/{id}/messages``: a page of messages, now or at a version."""
    params = query(version=version, after=after, limit=limit, direction=direction)
    return Call(
        "list_messages", "GET", f"{V1}/contexts/{_ctx(context_id)}/messages", s.MessagePageOut,
        OK, query=params, context_id=str(context_id),
        reads=True,
    )  # fmt: skip


def edit_message(
    context_id: str | uuid.UUID,
    message_id: str | uuid.UUID,
    content: Content,
    *,
    if_match: IfMatch = None,
    idempotency_key: str | None = AUTO,
) -> Call[s.ContextOut]:
    """``PATCH /contexts/{id}/messages/{message_id}``: replace a message's content."""
    return Call(
        "edit_message", "PATCH",
        f"{V1}/contexts/{_ctx(context_id)}/messages/{_ctx(message_id)}", s.ContextOut, OK,
        body=encode(s.EditMessage(content=content)), idempotency_key=key_for(idempotency_key),
        if_match=if_match, context_id=str(context_id),
    )  # fmt: skip


def redact_message(
    context_id: str | uuid.UUID,
    message_id: str | uuid.UUID,
    *,
    reason: str | None = None,
    if_match: IfMatch = None,
    idempotency_key: str | None = AUTO,
) -> Call[s.ContextOut]:
    """``POST /contexts/{id}/messages/{message_id}/redact``: blank a message, keep its place."""
    return Call(
        "redact_message", "POST",
        f"{V1}/contexts/{_ctx(context_id)}/messages/{_ctx(message_id)}/redact", s.ContextOut,
        OK, body=encode(s.RedactMessage(reason=reason)),
        idempotency_key=key_for(idempotency_key), if_match=if_match, context_id=str(context_id),
    )  # fmt: skip


def patch_metadata(
    context_id: str | uuid.UUID,
    patch: dict[str, Any],
    *,
    if_match: IfMatch = None,
    idempotency_key: str | None = AUTO,
) -> Call[s.ContextOut]:
    """``PATCH /contexts/{id}/metadata``: an RFC 7386 merge patch (None removes a key)."""
    return Call(
        "patch_metadata", "PATCH", f"{V1}/contexts/{_ctx(context_id)}/metadata", s.ContextOut,
        OK, body=encode(patch), idempotency_key=key_for(idempotency_key), if_match=if_match,
        context_id=str(context_id),
    )  # fmt: skip


def _window_query(
    max_tokens: int | None,
    model: str | None,
    policy: s.Policy | None,
    last_n: int | None,
    format: s.Format | None,
) -> s.WindowQuery:
    return s.WindowQuery(
        max_tokens=max_tokens, model=model, policy=policy, last_n=last_n, format=format
    )


def get_window(
    context_id: str | uuid.UUID,
    *,
    max_tokens: int | None = None,
    model: str | None = None,
    policy: s.Policy | None = None,
    last_n: int | None = None,
    format: s.Format | None = None,
) -> Call[s.Window]:
    """``GET /contexts/{id}/window``: what fits, with its accounting (``format``: also the
    messages ready to send to that provider)."""
    params = _window_query(max_tokens, model, policy, last_n, format)
    return Call(
        "get_window", "GET", f"{V1}/contexts/{_ctx(context_id)}/window", s.Window, OK,
        query=query(**_fields(params)), context_id=str(context_id),
        reads=True,
    )  # fmt: skip


def record_window(
    context_id: str | uuid.UUID,
    *,
    max_tokens: int | None = None,
    model: str | None = None,
    policy: s.Policy | None = None,
    last_n: int | None = None,
    format: s.Format | None = None,
    idempotency_key: str | None = AUTO,
) -> Call[s.Window]:
    """``POST /contexts/{id}/window``: the window, recorded as what the model was shown."""
    params = _window_query(max_tokens, model, policy, last_n, format)
    body = s.RecordWindow(**_fields(params))
    return Call(
        "record_window", "POST", f"{V1}/contexts/{_ctx(context_id)}/window", s.Window, OK,
        body=encode(body), idempotency_key=key_for(idempotency_key), context_id=str(context_id),
    )  # fmt: skip


def configure_window(
    context_id: str | uuid.UUID,
    window: s.WindowIn,
    *,
    if_match: IfMatch = None,
    idempotency_key: str | None = AUTO,
) -> Call[s.ContextOut]:
    """``PUT /contexts/{id}/window``: the context's default window settings."""
    return Call(
        "configure_window", "PUT", f"{V1}/contexts/{_ctx(context_id)}/window", s.ContextOut, OK,
        body=encode(window), idempotency_key=key_for(idempotency_key), if_match=if_match,
        context_id=str(context_id),
    )  # fmt: skip


def add_summary(
    context_id: str | uuid.UUID,
    text: str,
    through_message_id: str | uuid.UUID,
    *,
    if_match: IfMatch = None,
    idempotency_key: str | None = AUTO,
) -> Call[s.ContextOut]:
    """``POST /contexts/{id}/summaries``: a summary standing in for messages through one."""
    body = s.AddSummary(text=text, through_message_id=uuid.UUID(str(through_message_id)))
    return Call(
        "add_summary", "POST", f"{V1}/contexts/{_ctx(context_id)}/summaries", s.ContextOut,
        CREATED, body=encode(body), idempotency_key=key_for(idempotency_key), if_match=if_match,
        context_id=str(context_id),
    )  # fmt: skip


def rollback(
    context_id: str | uuid.UUID,
    to_version: int,
    *,
    reason: str | None = None,
    if_match: IfMatch = None,
    idempotency_key: str | None = AUTO,
) -> Call[s.ContextOut]:
    """``POST /contexts/{id}/rollback``: back to the state of ``to_version`` (a new event)."""
    return Call(
        "rollback", "POST", f"{V1}/contexts/{_ctx(context_id)}/rollback", s.ContextOut, OK,
        body=encode(s.Rollback(to_version=to_version, reason=reason)),
        idempotency_key=key_for(idempotency_key), if_match=if_match, context_id=str(context_id),
    )  # fmt: skip


def fork(
    context_id: str | uuid.UUID,
    *,
    at_version: int | None = None,
    metadata: dict[str, Any] | None = None,
    idempotency_key: str | None = AUTO,
) -> Call[s.ContextOut]:
    """``POST /contexts/{id}/fork``: a new context starting as this one (O(1): no copy)."""
    return Call(
        "fork", "POST", f"{V1}/contexts/{_ctx(context_id)}/fork", s.ContextOut, CREATED,
        body=encode(s.Fork(at_version=at_version, metadata=metadata)),
        idempotency_key=key_for(idempotency_key),
    )  # fmt: skip


# -- history and audit ------------------------------------------------------------------------


def get_history(
    context_id: str | uuid.UUID,
    *,
    from_version: int | None = None,
    limit: int = 100,
    direction: Literal["forward", "backward"] = "forward",
) -> Call[s.EventPage]:
    """``GET /contexts/{id}/events``: a page of the context's raw events."""
    params = query(from_version=from_version, limit=limit, direction=direction)
    return Call(
        "get_history", "GET", f"{V1}/contexts/{_ctx(context_id)}/events", s.EventPage, OK,
        query=params, context_id=str(context_id),
        reads=True,
    )  # fmt: skip


def get_diff(
    context_id: str | uuid.UUID, from_version: int, to_version: int | None = None
) -> Call[s.StateDiff]:
    """``GET /contexts/{id}/diff``: how ``to_version`` (default: now) differs from another."""
    return Call(
        "get_diff", "GET", f"{V1}/contexts/{_ctx(context_id)}/diff", s.StateDiff, OK,
        query=query(**{"from": from_version, "to": to_version}), context_id=str(context_id),
        reads=True,
    )  # fmt: skip


def get_parent_diff(
    context_id: str | uuid.UUID, *, parent_version: int | None = None
) -> Call[s.StateDiff]:
    """``GET /contexts/{id}/diff/parent``: what a fork has that its parent has not."""
    return Call(
        "get_parent_diff", "GET", f"{V1}/contexts/{_ctx(context_id)}/diff/parent", s.StateDiff,
        OK, query=query(parent_version=parent_version), context_id=str(context_id),
        reads=True,
    )  # fmt: skip


def get_lineage(context_id: str | uuid.UUID) -> Call[s.LineageOut]:
    """``GET /contexts/{id}/lineage``: ancestors (parent first) and direct forks."""
    return Call(
        "get_lineage", "GET", f"{V1}/contexts/{_ctx(context_id)}/lineage", s.LineageOut, OK,
        context_id=str(context_id),
    )  # fmt: skip


def list_events(
    *,
    after: int = 0,
    limit: int = 100,
    type: str | None = None,
    context_id: str | uuid.UUID | None = None,
    actor: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> Call[s.AuditPage]:
    """``GET /events``: the audit query over the caller's tenant's log."""
    params = query(
        after=after, limit=limit, type=type, context_id=context_id, actor=actor, since=since,
        until=until,
    )  # fmt: skip
    return Call("list_events", "GET", f"{V1}/events", s.AuditPage, OK, query=params)


def search_messages(
    q: str,
    *,
    context_id: str | uuid.UUID | None = None,
    limit: int = 20,
    cursor: str | None = None,
) -> Call[s.SearchPage]:
    """``GET /search``: full-text search over current messages, best first."""
    params = query(q=q, context_id=context_id, limit=limit, cursor=cursor)
    return Call("search_messages", "GET", f"{V1}/search", s.SearchPage, OK, query=params)


def erase_subject(subject: str) -> Call[s.SubjectErasedOut]:
    """``POST /subjects/{subject}/erase``: crypto-shred a data subject (idempotent)."""
    return Call(
        "erase_subject", "POST", f"{V1}/subjects/{_ctx(subject)}/erase", s.SubjectErasedOut, OK
    )


# -- checkpoints (an agent framework's state) --------------------------------------------------


def save_checkpoint(
    context_id: str | uuid.UUID,
    body: s.SaveCheckpoint,
    *,
    if_match: IfMatch = None,
    idempotency_key: str | None = AUTO,
) -> Call[s.Recorded]:
    """``POST /contexts/{id}/checkpoints``: record a framework's checkpoint."""
    return Call(
        "save_checkpoint", "POST", f"{V1}/contexts/{_ctx(context_id)}/checkpoints", s.Recorded,
        CREATED, body=encode(body), idempotency_key=key_for(idempotency_key), if_match=if_match,
        context_id=str(context_id),
    )  # fmt: skip


def record_writes(
    context_id: str | uuid.UUID,
    body: s.RecordWrites,
    *,
    if_match: IfMatch = None,
    idempotency_key: str | None = AUTO,
) -> Call[s.Recorded]:
    """``POST /contexts/{id}/checkpoints/writes``: record a task's pending writes."""
    return Call(
        "record_writes", "POST", f"{V1}/contexts/{_ctx(context_id)}/checkpoints/writes",
        s.Recorded, CREATED, body=encode(body), idempotency_key=key_for(idempotency_key),
        if_match=if_match, context_id=str(context_id),
    )  # fmt: skip


def remove_checkpoints(
    context_id: str | uuid.UUID,
    body: s.RemoveCheckpoints,
    *,
    if_match: IfMatch = None,
    idempotency_key: str | None = AUTO,
) -> Call[s.Recorded]:
    """``POST /contexts/{id}/checkpoints/remove``: checkpoints that no longer count."""
    return Call(
        "remove_checkpoints", "POST", f"{V1}/contexts/{_ctx(context_id)}/checkpoints/remove",
        s.Recorded, OK, body=encode(body), idempotency_key=key_for(idempotency_key),
        if_match=if_match, context_id=str(context_id),
    )  # fmt: skip


def _fields(struct: Any) -> dict[str, Any]:
    return {f: getattr(struct, f) for f in struct.__struct_fields__}


ALL = (
    get_server_info, get_health, create_context, list_contexts, get_context, delete_context,
    append_messages, list_messages, edit_message, redact_message, patch_metadata, get_window,
    record_window, configure_window, add_summary, rollback, fork, get_history, get_diff,
    get_parent_diff, get_lineage, list_events, search_messages, erase_subject, save_checkpoint,
    record_writes, remove_checkpoints,
)  # fmt: skip
"""Every operation both clients have as a method."""


class Operations:
    """The operations as methods, and the settings every client keeps; ``AsyncClient`` and
    ``Client`` inherit them."""

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        timeout: float = 30.0,
        retry: Retry | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.retry = retry or Retry()
        self.timeout = timeout
        self.versions = Versions()
        self._headers = {"User-Agent": "ctxlog-client", **(headers or {})}
        if api_key is not None:
            self._headers["X-API-Key"] = api_key

    get_server_info = Operation(get_server_info)
    get_health = Operation(get_health)
    create_context = Operation(create_context)
    list_contexts = Operation(list_contexts)
    get_context = Operation(get_context)
    delete_context = Operation(delete_context)
    append_messages = Operation(append_messages)
    list_messages = Operation(list_messages)
    edit_message = Operation(edit_message)
    redact_message = Operation(redact_message)
    patch_metadata = Operation(patch_metadata)
    get_window = Operation(get_window)
    record_window = Operation(record_window)
    configure_window = Operation(configure_window)
    add_summary = Operation(add_summary)
    rollback = Operation(rollback)
    fork = Operation(fork)
    get_history = Operation(get_history)
    get_diff = Operation(get_diff)
    get_parent_diff = Operation(get_parent_diff)
    get_lineage = Operation(get_lineage)
    list_events = Operation(list_events)
    search_messages = Operation(search_messages)
    erase_subject = Operation(erase_subject)
    save_checkpoint = Operation(save_checkpoint)
    record_writes = Operation(record_writes)
    remove_checkpoints = Operation(remove_checkpoints)
