"""The last version of each context a client has seen, so that ``if_match=SEEN`` is one
argument away. Bounded: the least recently touched contexts are forgotten first."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

from api.rest.schemas import ContextOut

from .wire import SEEN, Call, IfMatch, version_of

LIMIT = 10_000


class Versions:
    """Context id -> the newest version an answer showed."""

    def __init__(self, limit: int = LIMIT) -> None:
        self._seen: OrderedDict[str, int] = OrderedDict()
        self._limit = limit

    def get(self, context_id: str) -> int | None:
        """The newest version seen of ``context_id``, if any."""
        return self._seen.get(context_id)

    def note(self, call: Call[Any], head: Any, value: Any) -> None:
        """Remember the version an answer to ``call`` shows."""
        context_id = value.id if isinstance(value, ContextOut) else call.context_id
        if context_id is None:
            return
        version = version_of(call, head, value)
        if version is None:
            return
        if self._seen.get(context_id, -1) < version or call.method != "GET":
            self._seen[context_id] = version
        self._seen.move_to_end(context_id)
        if len(self._seen) > self._limit:
            self._seen.popitem(last=False)

    def query(self, call: Call[Any]) -> Mapping[str, str]:
        """The query string ``call`` sends: a read of a context asks for the newest version
        of it seen (``min_version``), so it is never answered from an older view."""
        if not call.reads or call.context_id is None or "min_version" in call.query:
            return call.query
        seen = self.get(call.context_id)
        return call.query if seen is None else {**call.query, "min_version": str(seen)}

    def resolve(self, call: Call[Any]) -> int | None:
        """The If-Match version ``call`` sends (``SEEN``: the one remembered)."""
        value: IfMatch = call.if_match
        if value is None or isinstance(value, int):
            return value
        if value != SEEN:
            raise ValueError(f"if_match is a version, SEEN or None, not {value!r}")
        if call.context_id is None or (seen := self.get(call.context_id)) is None:
            raise ValueError(
                f"{call.operation}: if_match=SEEN, but this client has seen no version of"
                f" context {call.context_id} yet (read it first)"
            )
        return seen
