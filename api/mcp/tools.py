"""The tools: each one decodes its arguments, calls the contexts service once or twice, and
returns a Struct that is both the ``structuredContent`` and (as JSON) the text of the result.

Failures a model can act on — arguments that do not fit the schema, an unknown context, a
version out of range, a conflict — are results with ``isError: true`` that say what went
wrong. Only an unknown tool or malformed call parameters are JSON-RPC errors (-32602).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec

import eventstore as es
import projections as pj
from projections.service import Caller, Contexts

from .. import formats
from ..errors import translate
from ..rest import schemas
from . import actions
from . import schemas as s
from .json_schema import compact_schema
from .protocol import invalid_params

Run = Callable[[Contexts, Caller, Any, int], Awaitable[msgspec.Struct]]
"""A tool's action: the service, the caller, the arguments, and the response budget (bytes
of messages a context in the answer may hold, ``Settings.response_budget_bytes``)."""


@dataclasses.dataclass(frozen=True)
class Tool:
    """One tool: its name, what it says about itself, and how it runs."""

    name: str
    title: str
    description: str
    args: type[s.Args]
    output: Any
    run: Run
    read_only: bool = False
    destructive: bool = False
    idempotent: bool = False
    depth: int = 0
    """How deep nested Structs of the arguments are spelled out in ``inputSchema``."""

    def describe(self, version: str) -> dict[str, Any]:
        """The ``tools/list`` entry (2025-03-26 predates titles and output schemas)."""
        entry: dict[str, Any] = {
            "name": self.name,
            "description": self.description,
            "inputSchema": compact_schema(self.args, self.depth),
            "annotations": {
                "title": self.title,
                "readOnlyHint": self.read_only,
                "destructiveHint": self.destructive,
                "idempotentHint": self.idempotent,
                "openWorldHint": False,
            },
        }
        if version != "2025-03-26":
            entry["title"] = self.title
            # The result's fields, not their nested shapes: what a client needs to pick a
            # result apart; the nested ones are the REST API's, in its OpenAPI document.
            entry["outputSchema"] = compact_schema(self.output, 0, arguments=False)
        return entry


_TOOLS = (
    Tool(
        name="create_context",
        title="Create a context",
        description=(
            "Create a new, empty conversation context (optionally with metadata and a default "
            "token window). Returns the context, including its id."
        ),
        args=s.CreateContextArgs,
        output=schemas.ContextOut,
        run=actions.create,
        depth=1,  # the window settings' fields
    ),
    Tool(
        name="append_messages",
        title="Append messages",
        description=(
            "Append messages to a context, atomically: ctxlog's own (role system, developer, "
            "user, assistant or tool), or with format an OpenAI or Anthropic SDK's messages. "
            "Returns the new version and the message ids."
        ),
        args=s.AppendMessagesArgs,
        output=s.Change,
        run=actions.append,
    ),
    Tool(
        name="get_context",
        title="Get a context",
        description=(
            "Read a context with its messages, summaries, metadata and window settings: as it "
            "is now, at a past version, or as it was at a time (time travel)."
        ),
        args=s.GetContextArgs,
        output=s.ContextPart,
        run=actions.get,
        read_only=True,
        idempotent=True,
    ),
    Tool(
        name="get_window",
        title="Get the context window",
        description=(
            "The messages that fit a token budget (pinned system messages, the latest summary, "
            "then the newest messages), with an account of what was left out and why. With "
            "format, also as messages ready to send to that provider. record=true logs "
            "exactly what was served."
        ),
        args=s.GetWindowArgs,
        output=schemas.Window,
        run=actions.window,
    ),
    Tool(
        name="get_history",
        title="Get a context's events",
        description=(
            "A page of the context's raw event history (who changed what, when), from a "
            "version on, forward or backward; next_from_version continues."
        ),
        args=s.GetHistoryArgs,
        output=schemas.EventPage,
        run=actions.history,
        read_only=True,
        idempotent=True,
    ),
    Tool(
        name="rollback",
        title="Roll back a context",
        description=(
            "Return the context to its state as of an earlier version. This is itself a new "
            "event, so it can be undone by rolling back again."
        ),
        args=s.RollbackArgs,
        output=s.Change,
        run=actions.rollback,
    ),
    Tool(
        name="fork",
        title="Fork a context",
        description=(
            "Branch a new context from a version of this one (default: the current version), "
            "without copying its history. Returns the new context's id."
        ),
        args=s.ForkArgs,
        output=s.Forked,
        run=actions.fork,
    ),
    Tool(
        name="diff",
        title="Diff two versions",
        description=(
            "What changed between two versions of a context: messages added, removed, edited "
            "or redacted, metadata, window settings and summaries."
        ),
        args=s.DiffArgs,
        output=schemas.StateDiff,
        run=actions.diff,
        read_only=True,
        idempotent=True,
    ),
    Tool(
        name="add_summary",
        title="Add a summary",
        description=(
            "Add a summary that windows show in place of every message up to and including "
            "through_message_id."
        ),
        args=s.AddSummaryArgs,
        output=s.Change,
        run=actions.summary,
    ),
    Tool(
        name="edit_message",
        title="Edit a message",
        description=("Replace one message's content (the previous content stays in the history)."),
        args=s.EditMessageArgs,
        output=s.Change,
        run=actions.edit,
    ),
    Tool(
        name="redact_message",
        title="Redact a message",
        description=(
            "Blank one message's content for good; it keeps its place, and a hash of what it "
            "held stays for audit."
        ),
        args=s.RedactMessageArgs,
        output=s.Change,
        run=actions.redact,
        destructive=True,
        idempotent=True,
    ),
    Tool(
        name="search_messages",
        title="Search messages",
        description=(
            "Full-text search over the current messages of your contexts (or of one context): "
            "every word must appear; best matches first, with snippets."
        ),
        args=s.SearchMessagesArgs,
        output=schemas.SearchPage,
        run=actions.search,
        read_only=True,
        idempotent=True,
    ),
    Tool(
        name="list_contexts",
        title="List contexts",
        description=(
            "A page of your contexts, newest first, optionally only those whose metadata has "
            "given key = value pairs; next_cursor continues."
        ),
        args=s.ListContextsArgs,
        output=schemas.ContextList,
        run=actions.list,
        read_only=True,
        idempotent=True,
    ),
)
TOOLS: dict[str, Tool] = {tool.name: tool for tool in _TOOLS}


def list_tools(version: str) -> list[dict[str, Any]]:
    """Every tool, as ``tools/list`` describes it at ``version``."""
    return [tool.describe(version) for tool in TOOLS.values()]


async def call_tool(
    contexts: Contexts, caller: Caller, params: dict[str, Any], version: str, budget: int
) -> dict[str, Any]:
    """The result of ``tools/call``; RpcError -32602 for an unknown tool or bad params."""
    name = params.get("name")
    if not isinstance(name, str):
        raise invalid_params("tools/call needs the tool's name")
    tool = TOOLS.get(name)
    if tool is None:
        raise invalid_params(f"Unknown tool: {name}")
    arguments = params.get("arguments", {})
    if arguments is None:
        arguments = {}
    if not isinstance(arguments, dict):
        raise invalid_params("tool arguments must be an object")
    try:
        args = msgspec.convert(arguments, tool.args)
    except msgspec.ValidationError as e:
        return _failure(version, "invalid_arguments", f"invalid arguments: {e}", {})
    try:
        if isinstance(args, s.ReadArgs) and args.min_version is not None:
            await contexts.reach(caller, str(args.context_id), args.min_version)
        out = await tool.run(contexts, caller, args, budget)
    except (msgspec.ValidationError, formats.FormatError) as e:
        error = translate(e)
        assert error is not None
        return _failure(version, "invalid_arguments", error.message, error.details)
    except (pj.ProjectionError, es.EventStoreError) as e:
        error = translate(e)
        if error is None:
            raise
        return _failure(version, error.code, error.message, error.details)
    data = msgspec.to_builtins(out)
    result: dict[str, Any] = {"content": [_text(data)], "isError": False}
    if version != "2025-03-26":
        result["structuredContent"] = data
    return result


def _text(data: Any) -> dict[str, Any]:
    return {"type": "text", "text": msgspec.json.encode(data).decode()}


def _failure(version: str, code: str, message: str, details: dict[str, Any]) -> dict[str, Any]:
    body = {"error": {"code": code, "message": message, "details": details}}
    result: dict[str, Any] = {"content": [{"type": "text", "text": message}], "isError": True}
    if version != "2025-03-26":
        result["structuredContent"] = body
    return result
