"""Read-your-writes across servers: a read of one context that names ``min_version`` waits
until this server's read model holds that version (``Contexts.reach``)."""

from __future__ import annotations

from typing import TypeVar

from aiohttp import web

from .. import appkeys
from ..auth import caller
from . import wire
from .schemas import ReadAfter

Q = TypeVar("Q", bound=ReadAfter)


async def context_query(request: web.Request, type_: type[Q]) -> tuple[str, Q]:
    """The path's context id and the query string as ``type_``, once this server holds the
    ``min_version`` it asks for (503 with Retry-After if it does not in time)."""
    context_id = wire.path_uuid(request)
    params = wire.query(request, type_)
    await reached(request, context_id, params)
    return context_id, params


async def reached(request: web.Request, context_id: str, params: ReadAfter) -> None:
    """Wait for ``params.min_version`` of the context (nothing when not given)."""
    if params.min_version is not None:
        await appkeys.contexts(request).reach(caller(request), context_id, params.min_version)
