"""The resources: a context, a past version of it, its window and its events, by URI.

``ctxlog://contexts/{id}`` is the context now, ``…/{id}@{version}`` the context as it was at
that version (it never changes), ``…/{id}/window`` the window under the context's default
settings, and ``…/{id}/events`` a page of its raw events (``?from_version=N&limit=M``). Every
read is one call to the contexts service and returns JSON.
"""

from __future__ import annotations

import dataclasses
import re
import urllib.parse
from typing import Any

import msgspec

import projections as pj
from projections.service import Caller, Contexts

from ..rest import render, schemas
from . import actions
from .protocol import invalid_params

SCHEME = "ctxlog://contexts/"
MIME = "application/json"
PAGE = 50
"""Resources per ``resources/list`` page (the caller's contexts, newest first)."""
EVENTS_PAGE = 100

_URI = re.compile(
    r"ctxlog://contexts/(?P<id>[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}"
    r"-[0-9a-fA-F]{12})(?:@(?P<version>[1-9][0-9]{0,17})|/(?P<kind>window|events))?"
    r"(?:\?(?P<query>.*))?"
)

TEMPLATES: list[dict[str, Any]] = [
    {
        "uriTemplate": "ctxlog://contexts/{id}",
        "name": "context",
        "title": "Context",
        "description": "A context as it is now: messages, summaries, metadata, window settings.",
        "mimeType": MIME,
    },
    {
        "uriTemplate": "ctxlog://contexts/{id}@{version}",
        "name": "context-version",
        "title": "Context at a version",
        "description": "A context as it was at a past version (time travel; never changes).",
        "mimeType": MIME,
    },
    {
        "uriTemplate": "ctxlog://contexts/{id}/window",
        "name": "context-window",
        "title": "Context window",
        "description": "What fits the context's default token window, with what was left out.",
        "mimeType": MIME,
    },
    {
        "uriTemplate": "ctxlog://contexts/{id}/events{?from_version,limit}",
        "name": "context-events",
        "title": "Context events",
        "description": "A page of the context's raw events (oldest first).",
        "mimeType": MIME,
    },
]


class NotFound(Exception):
    """A well-formed URI naming nothing the caller may read."""


@dataclasses.dataclass(frozen=True)
class Target:
    """What a resource URI names."""

    uri: str
    context_id: str
    version: int | None = None
    kind: str = "context"
    from_version: int | None = None
    limit: int = EVENTS_PAGE

    @property
    def immutable(self) -> bool:
        """A past version never changes (updates never come), except that content of a data
        subject in it reads "[erased]" once the subject is erased (see ``read``)."""
        return self.version is not None


def parse(uri: Any) -> Target:
    """The target of a URI; RpcError -32602 when it is not one of ours."""
    if not isinstance(uri, str):
        raise invalid_params("a resource uri (a string) is required")
    match = _URI.fullmatch(uri)
    if match is None:
        raise invalid_params(f"not a ctxlog resource: {uri[:200]!r}")
    kind = match["kind"] or "context"
    query = match["query"]
    if query is not None and kind != "events":
        raise invalid_params(f"{kind} resources take no query: {uri[:200]!r}")
    from_version, limit = None, EVENTS_PAGE
    for key, value in urllib.parse.parse_qsl(query or "", keep_blank_values=True):
        if key not in ("from_version", "limit") or not value.isdigit() or len(value) > 18:
            raise invalid_params(f"events take from_version and limit (integers): {uri[:200]!r}")
        if key == "from_version":
            from_version = int(value)
        elif not 1 <= int(value) <= 1000:
            raise invalid_params("limit must be between 1 and 1000")
        else:
            limit = int(value)
    version = None if match["version"] is None else int(match["version"])
    return Target(uri, match["id"].lower(), version, kind, from_version, limit)


def context_uri(context_id: str) -> str:
    """The URI of a context as it is now."""
    return SCHEME + context_id


async def list_page(contexts: Contexts, caller: Caller, cursor: Any) -> dict[str, Any]:
    """One page of ``resources/list``: the caller's contexts, newest first."""
    if cursor is not None and not isinstance(cursor, str):
        raise invalid_params("cursor must be a string")
    try:
        page = await contexts.list(caller, cursor=cursor, limit=PAGE)
    except pj.InvalidCommand as e:  # the only one list raises: a cursor it did not issue
        raise invalid_params(str(e)) from None
    result: dict[str, Any] = {"resources": [_resource(s) for s in page.contexts]}
    if page.next_cursor is not None:
        result["nextCursor"] = page.next_cursor
    return result


def _resource(state: pj.ContextState) -> dict[str, Any]:
    title = state.metadata.get("title")
    return {
        "uri": context_uri(state.context_id),
        "name": state.context_id,
        "title": title if isinstance(title, str) else f"Context {state.context_id[:8]}",
        "description": f"A context, at version {state.version}",
        "mimeType": MIME,
        "annotations": {"lastModified": state.updated_at.isoformat()},
    }


async def read(
    contexts: Contexts, caller: Caller, target: Target, budget: int
) -> tuple[dict[str, Any], bool]:
    """``resources/read``: the resource as JSON text (a context with the messages that fit
    ``budget`` bytes, as the ``get_context`` tool answers), and whether a client may cache it for
    long (a past version holding no content of a data subject: nothing can change it; one
    that does changes when the subject is erased). Raises the service's errors (the caller
    maps them to "not found")."""
    lasting = False
    body: msgspec.Struct
    if target.kind == "window":
        body = render.render_window(await contexts.window(caller, target.context_id))
    elif target.kind == "events":
        events = await contexts.history(
            caller, target.context_id, from_version=target.from_version, limit=target.limit
        )
        following = events[-1].version + 1 if len(events) == target.limit else None
        body = schemas.EventPage(
            events=await render.render_events(contexts, caller, events),
            next_from_version=following,
        )
    elif target.immutable:  # a past version: whole from history
        state = await contexts.get(caller, target.context_id, version=target.version)
        body = actions.part_of(state, 0, budget)
        lasting = not _erasable(state)
    else:
        body = await actions.context_part(contexts, caller, target.context_id, budget)
    text = msgspec.json.encode(body).decode()
    return {"contents": [{"uri": target.uri, "mimeType": MIME, "text": text}]}, lasting


def _erasable(state: pj.ContextState) -> bool:
    return any(m.subject for m in state.messages) or any(s.subjects for s in state.summaries)


async def check(contexts: Contexts, caller: Caller, target: Target) -> None:
    """Raise the service's not-found errors unless the caller may read the target's context."""
    await contexts.get(caller, target.context_id, include_messages=False)
