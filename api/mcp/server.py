"""The MCP server proper, whatever carries it: one method table per protocol era, and the
result envelope each era wants.

Transports (``http.py``, ``stdio.py``) decode messages, work out the era and the caller, and
hand each request here as a ``Call``. The handshake (``initialize``) and the long-lived
``subscriptions/listen`` depend on the transport, so they call the helpers at the bottom
instead of the table.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager
from typing import Any

import eventstore as es
import projections as pj
from projections.service import Caller, Contexts

from ..settings import DEFAULT_RESPONSE_BUDGET_BYTES
from . import prompts, resources, tools
from .protocol import (
    HANDSHAKE_VERSIONS,
    INVALID_PARAMS,
    LATEST_HANDSHAKE,
    METHOD_NOT_FOUND,
    MODERN_VERSIONS,
    RESOURCE_NOT_FOUND_LEGACY,
    SERVER_INFO_KEY,
    SUPPORTED_VERSIONS,
    RpcError,
    Unavailable,
    invalid_params,
)
from .updates import Follower

INSTRUCTIONS = (
    "ctxlog keeps conversation contexts as an immutable event log. Create a context, append "
    "messages, and ask for the window that fits a token budget; read any past version (time "
    "travel), roll back, fork, diff versions, add summaries, and search messages. Resources "
    "ctxlog://contexts/{id} (and @{version}, /window, /events) can be read and subscribed to."
)
CAPABILITIES: dict[str, Any] = {
    "tools": {"listChanged": False},
    "resources": {"subscribe": True, "listChanged": True},
    "prompts": {"listChanged": False},
}
"""The stateless era's: ``resourcesListChanged`` is honoured on ``subscriptions/listen``."""
HANDSHAKE_CAPABILITIES: dict[str, Any] = {
    **CAPABILITIES,
    "resources": {"subscribe": True, "listChanged": False},
}
"""The handshake era's: list changes would have to be sent to every session unasked, so they
are not offered there; subscriptions to resources are."""
MAX_SUBSCRIPTIONS = 1000
"""Resources one session (or one listen stream) may watch."""
STATIC_TTL_MS = 3_600_000
"""How long a client may cache what never changes while the server runs (lists of tools,
prompts and templates; a past version of a context holding no content of a data subject,
which an erasure would change)."""


@dataclasses.dataclass
class Call:
    """One request's circumstances: who asks, in which protocol version, and (handshake era)
    the follower that holds the session's resource subscriptions."""

    caller: Caller
    version: str
    follower: Follower | None = None

    @property
    def modern(self) -> bool:
        """Whether the request is of the stateless era."""
        return self.version in MODERN_VERSIONS


ContextsSource = Callable[[], Awaitable[Contexts]]
Handler = Callable[["Server", Call, dict[str, Any]], Awaitable[dict[str, Any]]]
Traced = Callable[[str, dict[str, Any]], AbstractContextManager[None]]


class Server:
    """Answers MCP requests by calling the contexts service."""

    def __init__(
        self,
        version: str,
        contexts: ContextsSource,
        *,
        traced: Traced | None = None,
        budget: int = DEFAULT_RESPONSE_BUDGET_BYTES,
    ) -> None:
        self.info = {"name": "ctxlog", "title": "ctxlog", "version": version}
        self.contexts = contexts
        self.budget = budget
        """Bytes of messages a context in an answer may hold (``response_budget_bytes``)."""
        self.traced = traced
        """Wraps each request in a span continuing its ``_meta.traceparent`` (``tracing``)."""

    async def handle(self, call: Call, method: str, params: dict[str, Any]) -> dict[str, Any]:
        """The result of a request; RpcError for a protocol-level failure."""
        table = _MODERN if call.modern else _HANDSHAKE
        handler = table.get(method)
        if handler is None:
            raise RpcError(METHOD_NOT_FOUND, f"Method not found: {method}")
        if self.traced is None:
            return self.finish(call, await handler(self, call, params))
        with self.traced(method, params):
            return self.finish(call, await handler(self, call, params))

    def finish(self, call: Call, result: dict[str, Any]) -> dict[str, Any]:
        """The era's envelope around a result (the stateless era: ``resultType`` and the
        server's identity)."""
        if call.modern:
            result.setdefault("resultType", "complete")
            result["_meta"] = {**result.get("_meta", {}), SERVER_INFO_KEY: dict(self.info)}
        return result

    # -- the handshake and the long-lived subscription --------------------------------------

    def initialize(self, params: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        """The version ``initialize`` settles on (the client's if we speak it, else our
        newest) and the result announcing it."""
        requested = params.get("protocolVersion")
        version = requested if requested in HANDSHAKE_VERSIONS else LATEST_HANDSHAKE
        assert isinstance(version, str)
        result = {
            "protocolVersion": version,
            "capabilities": HANDSHAKE_CAPABILITIES,
            "serverInfo": dict(self.info),
            "instructions": INSTRUCTIONS,
        }
        return version, result

    async def listen(
        self, call: Call, params: dict[str, Any], follower: Follower
    ) -> dict[str, Any]:
        """Set ``follower`` up for a ``subscriptions/listen`` request; returns the filter it
        honours (for the acknowledgement). URIs the caller cannot read are left out."""
        wanted = params.get("notifications")
        if not isinstance(wanted, dict):
            raise invalid_params("subscriptions/listen needs a notifications filter (an object)")
        uris = wanted.get("resourceSubscriptions") or []
        if not isinstance(uris, list):
            raise invalid_params("resourceSubscriptions must be a list of URIs")
        if len(uris) > MAX_SUBSCRIPTIONS:
            raise invalid_params(f"at most {MAX_SUBSCRIPTIONS} resources per subscription")
        honored: dict[str, Any] = {}
        contexts = await self.contexts()
        kept: list[str] = []
        for uri in uris:
            try:
                target = resources.parse(uri)
                await resources.check(contexts, call.caller, target)
            except (RpcError, pj.ProjectionError, es.InvalidStreamId):
                continue  # not honoured: the acknowledgement leaves it out
            follower.add(target)
            kept.append(uri)
        if kept:
            honored["resourceSubscriptions"] = kept
        if wanted.get("resourcesListChanged") is True:
            follower.list_changed = True
            honored["resourcesListChanged"] = True
        return honored


# -- methods ----------------------------------------------------------------------------------


async def _ping(server: Server, call: Call, params: dict[str, Any]) -> dict[str, Any]:
    return {}


async def _discover(server: Server, call: Call, params: dict[str, Any]) -> dict[str, Any]:
    return {
        "supportedVersions": list(SUPPORTED_VERSIONS),
        "capabilities": CAPABILITIES,
        "instructions": INSTRUCTIONS,
        "ttlMs": STATIC_TTL_MS,
        "cacheScope": "public",
    }


def _static(call: Call, result: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    # A single page: a cursor can only be one this server never issued.
    if params.get("cursor") is not None:
        raise invalid_params("invalid cursor")
    if call.modern:
        result.update(ttlMs=STATIC_TTL_MS, cacheScope="public")
    return result


async def _tools_list(server: Server, call: Call, params: dict[str, Any]) -> dict[str, Any]:
    return _static(call, {"tools": tools.list_tools(call.version)}, params)


async def _tools_call(server: Server, call: Call, params: dict[str, Any]) -> dict[str, Any]:
    contexts = await server.contexts()
    return await tools.call_tool(contexts, call.caller, params, call.version, server.budget)


async def _prompts_list(server: Server, call: Call, params: dict[str, Any]) -> dict[str, Any]:
    return _static(call, {"prompts": prompts.PROMPTS}, params)


async def _prompts_get(server: Server, call: Call, params: dict[str, Any]) -> dict[str, Any]:
    return await prompts.get_prompt(await server.contexts(), call.caller, params)


async def _templates(server: Server, call: Call, params: dict[str, Any]) -> dict[str, Any]:
    return _static(call, {"resourceTemplates": resources.TEMPLATES}, params)


async def _resources_list(server: Server, call: Call, params: dict[str, Any]) -> dict[str, Any]:
    result = await resources.list_page(await server.contexts(), call.caller, params.get("cursor"))
    if call.modern:
        result.update(ttlMs=0, cacheScope="private")
    return result


def _not_found(call: Call, uri: str) -> RpcError:
    code = INVALID_PARAMS if call.modern else RESOURCE_NOT_FOUND_LEGACY
    return RpcError(code, "Resource not found", {"uri": uri})


async def _read(server: Server, call: Call, params: dict[str, Any]) -> dict[str, Any]:
    target = resources.parse(params.get("uri"))
    try:
        contexts = await server.contexts()
        result, lasting = await resources.read(contexts, call.caller, target, server.budget)
    except (pj.ContextNotFound, pj.ContextIsDeleted, pj.InvalidVersion, es.InvalidStreamId):
        raise _not_found(call, target.uri) from None
    except (pj.InvalidCommand, pj.UnknownModel, pj.EncodingUnavailable) as e:
        raise invalid_params(str(e)) from None
    except (es.StoreUnavailable, es.StoreClosed):
        raise Unavailable("the database is unavailable") from None
    if call.modern:
        ttl = STATIC_TTL_MS if lasting else 0
        result.update(ttlMs=ttl, cacheScope="private")
    return result


async def _subscribe(server: Server, call: Call, params: dict[str, Any]) -> dict[str, Any]:
    target = resources.parse(params.get("uri"))
    if call.follower is None:
        raise RpcError(METHOD_NOT_FOUND, "subscriptions need a session")
    try:
        await resources.check(await server.contexts(), call.caller, target)
    except (pj.ContextNotFound, pj.ContextIsDeleted, es.InvalidStreamId):
        raise _not_found(call, target.uri) from None
    if len(call.follower.uris) >= MAX_SUBSCRIPTIONS and target.uri not in call.follower.uris:
        raise invalid_params(f"at most {MAX_SUBSCRIPTIONS} subscriptions per session")
    call.follower.add(target)
    await call.follower.start()
    return {}


async def _unsubscribe(server: Server, call: Call, params: dict[str, Any]) -> dict[str, Any]:
    target = resources.parse(params.get("uri"))
    if call.follower is not None:
        call.follower.remove(target.uri)
    return {}


_COMMON: dict[str, Handler] = {
    "tools/list": _tools_list,
    "tools/call": _tools_call,
    "resources/list": _resources_list,
    "resources/templates/list": _templates,
    "resources/read": _read,
    "prompts/list": _prompts_list,
    "prompts/get": _prompts_get,
}
_HANDSHAKE: dict[str, Handler] = {
    **_COMMON,
    "ping": _ping,
    "resources/subscribe": _subscribe,
    "resources/unsubscribe": _unsubscribe,
}
_MODERN: dict[str, Handler] = {**_COMMON, "server/discover": _discover}
