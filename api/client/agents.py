"""``CtxlogSession``: the OpenAI Agents SDK's ``Session`` on ctxlog
(``pip install 'ctxlog[agents]'``).

A session is a context (its id derived from the session id in the caller's tenant, created
once with an Idempotency-Key: two workers opening a session get the same context, and neither
loses the other's first write). Items are stored through the ``responses`` format, losslessly,
and read back rendered by it:

- ``add_items`` is one atomic append, without a precondition: concurrent writers all land.
- ``get_items(limit)`` reads the window (all of it, or the last ``limit`` messages' items).
- ``pop_item`` removes the newest item with one event at the version it read (If-Match, again
  on a conflict): a rollback to the version before the newest message when that message is one
  item, else an edit that drops the last item's parts from it (a run of assistant items, such
  as reasoning, text and function calls, is one stored message). A rollback would also undo
  anything else done to the context after that message, so when something was (a redaction,
  a metadata change) ``pop_item`` refuses rather than undo it. A function call whose output
  was popped reads back as a text item: a window never hands a provider a call without its
  result.
- ``clear_session`` rolls the context back to its creation: the items are gone from the
  session, and every one of them stays in the context's history (time travel, audit, fork).
"""

from __future__ import annotations

import hashlib
from typing import Any, Final

from api.rest import schemas as s
from eventstore.events import OpaquePart, Part, RefusalPart, TextPart, ToolCallPart

from . import operations as op
from .aio import AsyncClient
from .errors import CtxlogError, VersionConflict
from .steps import Step, run_async

try:
    from agents.memory import SessionSettings
except ImportError as e:  # pragma: no cover - the extra is not installed
    raise ImportError("CtxlogSession needs openai-agents: pip install 'ctxlog[agents]'") from e

SESSION_KEY = "openai_agents.session_id"
"""The context metadata naming its session."""
ADAPTER_KEY = "ctxlog.adapter"
ADAPTER = "openai-agents"
RETRIES = 8
FORMAT: Final = "responses"


def _key(session_id: str) -> str:
    return "openai-agents-session:" + hashlib.sha256(session_id.encode()).hexdigest()


def item_groups(content: str | list[Part]) -> list[list[int]]:
    """The parts of a stored message that render as each Responses item, in order (as
    ``api.formats.responses`` renders them): consecutive text and refusal parts of one item,
    each function call, each reasoning item; other providers' opaque parts render as none."""
    if isinstance(content, str):
        return [[]]
    groups: list[list[int]] = []
    text_item: Any = None
    in_text = False
    for i, part in enumerate(content):
        if isinstance(part, TextPart | RefusalPart):
            marker = _item_marker(part)
            if in_text and marker == text_item:
                groups[-1].append(i)
            else:
                groups.append([i])
                text_item, in_text = marker, True
            continue
        in_text = False
        if isinstance(part, ToolCallPart) or (
            isinstance(part, OpaquePart) and part.format == FORMAT
        ):
            groups.append([i])
    return groups


def _item_marker(part: TextPart | RefusalPart) -> Any:
    extra = part.extra if isinstance(part.extra, dict) else {}
    return extra.get(FORMAT, {}).get("item")


class CtxlogSession:
    """The Agents SDK's ``Session`` protocol over one ctxlog context."""

    def __init__(
        self,
        session_id: str,
        *,
        client: AsyncClient,
        session_settings: SessionSettings | None = None,
        subject: str | None = None,
    ) -> None:
        self.session_id = session_id
        self.session_settings = session_settings
        self.client = client
        self.subject = subject
        """A data subject for the session's content (erasing it erases the items)."""
        self._context_id: str | None = None

    @property
    def context_id(self) -> str | None:
        """The session's context, once opened."""
        return self._context_id

    def _open(self) -> Step[str]:
        if self._context_id is not None:
            return self._context_id
        metadata: dict[str, Any] = {ADAPTER_KEY: ADAPTER, SESSION_KEY: self.session_id}
        if self.subject:
            metadata["subject"] = self.subject
        created = yield op.create_context(metadata=metadata, idempotency_key=_key(self.session_id))
        self._context_id = str(created.id)
        return self._context_id

    async def get_items(self, limit: int | None = None) -> list[Any]:
        """The session's items, oldest first (``limit``: only the newest that many)."""
        return await run_async(self._get_items(limit), self.client)

    def _get_items(self, limit: int | None) -> Step[list[Any]]:
        if limit is None and self.session_settings is not None:
            limit = self.session_settings.limit
        if limit is not None and limit <= 0:
            return []
        context_id = yield from self._open()
        if limit is None:
            window = yield op.get_window(context_id, format=FORMAT)
        else:
            window = yield op.get_window(context_id, format=FORMAT, policy="last_n", last_n=limit)
        items = list(window.messages) if isinstance(window.messages, list) else []
        return items if limit is None else items[-limit:]

    async def add_items(self, items: list[Any]) -> None:
        """Append the items, atomically (one append; concurrent writers all land)."""
        if items:
            await run_async(self._add_items(items), self.client)

    def _add_items(self, items: list[Any]) -> Step[None]:
        context_id = yield from self._open()
        plain = [dict(item) if not isinstance(item, dict) else item for item in items]
        yield op.append_messages(context_id, s.ResponsesItems(items=plain))

    async def pop_item(self) -> Any | None:
        """Remove the newest item and return it (None when the session is empty)."""
        return await run_async(self._pop_item(), self.client)

    def _pop_item(self) -> Step[Any | None]:
        context_id = yield from self._open()
        for _ in range(RETRIES):
            page = yield op.list_messages(context_id, direction="backward", limit=1)
            if not page.messages:
                return None
            newest, version = page.messages[0], page.version
            window = yield from self._newest_window(context_id, newest.id, page.total)
            if window.version != version or not isinstance(window.messages, list):
                continue  # another writer got in between: read again
            item = window.messages[-1]
            groups = item_groups(newest.content)
            try:
                if newest.role != "assistant" or len(groups) <= 1:
                    yield from self._check_nothing_after(context_id, newest, version)
                    yield op.rollback(
                        context_id, newest.version - 1, reason="pop_item", if_match=version
                    )
                else:
                    assert isinstance(newest.content, list)
                    dropped = set(groups[-1])
                    kept = [p for i, p in enumerate(newest.content) if i not in dropped]
                    yield op.edit_message(context_id, newest.id, kept, if_match=version)
            except VersionConflict:
                continue
            return item
        raise VersionConflict(
            "pop_item", 412, "version_conflict", "other writers kept getting ahead"
        )

    def _newest_window(self, context_id: str, newest: str, total: int) -> Step[s.Window]:
        """The smallest last-N window that renders the newest message: a tool result is
        shown only with the call it answers, so N grows until the window ends with it."""
        n = 1
        while True:
            window: s.Window = yield op.get_window(
                context_id, format=FORMAT, policy="last_n", last_n=n
            )
            if (window.entries and window.entries[-1].id == newest) or n >= total:
                return window
            n = min(total, n * 2)

    def _check_nothing_after(
        self, context_id: str, newest: s.MessageOut, version: int
    ) -> Step[None]:
        """A rollback to before ``newest`` undoes what changed after it: allow only edits of
        ``newest`` itself (earlier pops), so refuse when the state changed otherwise."""
        if newest.version == version:
            return
        diff = yield op.get_diff(context_id, newest.version, version)
        others = (
            diff.added, diff.removed, diff.redacted, diff.metadata, diff.window,
            diff.summaries_added, diff.summaries_removed,
            tuple(m for m in diff.edited if m != newest.id),
        )  # fmt: skip
        if any(others):
            raise CtxlogError(
                "pop_item",
                f"the session changed after its newest item (between versions {newest.version}"
                f" and {version}: not only that item); removing the item would undo it",
            )

    async def clear_session(self) -> None:
        """Empty the session: a rollback to its creation (its history keeps every item)."""
        await run_async(self._clear(), self.client)

    def _clear(self) -> Step[None]:
        context_id = yield from self._open()
        for _ in range(RETRIES):
            page = yield op.list_messages(context_id, limit=1)
            if page.total == 0:
                return
            try:
                yield op.rollback(context_id, 1, reason="clear_session", if_match=page.version)
            except VersionConflict:
                continue
            return
        raise VersionConflict(
            "clear_session", 412, "version_conflict", "other writers kept getting ahead"
        )
