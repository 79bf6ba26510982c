"""Adapter logic written once for both clients: a *step* is a generator that yields the
``Call``s it needs and gets their answers back (or their errors thrown in), so the same code
runs on an ``AsyncClient`` (``run_async``) and on a ``Client`` (``run_sync``)."""

from __future__ import annotations

from collections.abc import Generator
from typing import TYPE_CHECKING, Any, TypeVar

from .errors import CtxlogError
from .wire import Call

if TYPE_CHECKING:
    from .aio import AsyncClient
    from .sync import Client

T = TypeVar("T")
Step = Generator[Call[Any], Any, T]
"""Yields calls, is sent their answers, returns a T."""


async def run_async(step: Step[T], client: AsyncClient) -> T:
    """Run ``step`` with the async client."""
    try:
        call = next(step)
        while True:
            try:
                answer = await client.send(call)
            except CtxlogError as e:
                call = step.throw(e)
            else:
                call = step.send(answer)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]


def run_sync(step: Step[T], client: Client) -> T:
    """Run ``step`` with the sync client."""
    try:
        call = next(step)
        while True:
            try:
                answer = client.send(call)
            except CtxlogError as e:
                call = step.throw(e)
            else:
                call = step.send(answer)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
