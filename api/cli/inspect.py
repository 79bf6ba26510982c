"""``ctxlog history``, ``replay`` and ``show``: one conversation, as it evolved and as it was.

They read the log alone and fold states afresh (``projections.audit.Refold``): no read model
is opened, so they are safe beside a running server and show exactly what the log says.
"""

from __future__ import annotations

import contextlib
from datetime import datetime
from typing import Any

import click
import msgspec
from rich.text import Text

from eventstore import (
    ContextForked,
    ContextRolledBack,
    LogFilter,
    MessageAppended,
    MessageEdited,
    MessageRedacted,
    RecordedEvent,
)
from projections import ContextState, Message, TokenCounter, Window, window
from projections.audit import Refold

from .output import Output
from .render import (
    ShortIds,
    describe,
    event_record,
    event_type_text,
    excerpt,
    mentioned,
    state_record,
    window_text,
)
from .support import (
    EXIT_CODES,
    TIME,
    db_option,
    format_option,
    open_store,
    resolve_context,
    run,
)

_context_id = click.argument("context_id", metavar="ID")
"""A context: its id, or the first characters of one (at least 4, naming one context)."""


@click.command(epilog=EXIT_CODES, short_help="Versions of a context: time, actor, event, change.")
@_context_id
@db_option
@format_option
def history(context_id: str, db: str, fmt: str) -> None:
    """A table of a context's versions: time, actor, event, and what changed."""
    run(_history(db, context_id, Output(fmt)))


async def _history(db: str, context_id: str, out: Output) -> None:
    async with open_store(db) as store:
        context_id = await resolve_context(store, context_id)
        events = await Refold(store, TokenCounter()).events(context_id)
    ids = ShortIds(mid for e in events for mid in mentioned(e.event))
    if not out.text:
        out.records(event_record(e, change=describe(e.event, ids)) for e in events)
        return
    rows = [
        (
            e.version,
            out.when(e.recorded_at),
            e.metadata.actor or "-",
            event_type_text(e.type),
            describe(e.event, ids),
        )
        for e in events
    ]
    out.table([("v", "right"), "time", "actor", "event", "change"], rows)


@click.command(
    epilog=EXIT_CODES, short_help="Re-play a conversation as it evolved (--follow: live)."
)
@_context_id
@click.option("--to-version", type=click.IntRange(min=1), metavar="N", help="Stop at version N.")
@click.option("--follow", is_flag=True, help="Keep showing new events as they are appended.")
@db_option
@format_option
def replay(context_id: str, to_version: int | None, follow: bool, db: str, fmt: str) -> None:
    """Re-play a conversation as it evolved: messages as they came, and edits, redactions,
    summaries, rollbacks and forks in place. --follow then tails live appends (Ctrl-C ends
    it with status 0)."""
    if follow and to_version is not None:
        raise click.UsageError("--follow shows every new event; it cannot stop at --to-version")
    if follow and fmt == "json":
        raise click.UsageError("--follow never ends a JSON array: use --format ndjson")
    run(_replay(db, context_id, to_version, follow, Output(fmt)), interrupt_ok=follow)


async def _replay(
    db: str, context_id: str, to_version: int | None, follow: bool, out: Output
) -> None:
    async with open_store(db) as store:
        context_id = await resolve_context(store, context_id)
        refold = Refold(store, TokenCounter())
        player = _Player(refold, out)
        events = await refold.events(context_id, to_version)
        player.ids.add(mid for e in events for mid in mentioned(e.event))
        for rec in events:
            await player.play(rec)
        if out.fmt == "json":
            out.document(player.records)
        if follow:
            live = store.subscribe(events[-1].position, LogFilter(stream_id=context_id))
            async with contextlib.aclosing(live):
                async for rec in live:
                    await player.play(rec)


class _Player:
    """Shows each event with its effect on the conversation, tracking the messages."""

    def __init__(self, refold: Refold, out: Output) -> None:
        self.refold = refold
        self.out = out
        self.events: list[RecordedEvent] = []
        self.messages: dict[str, Message | MessageAppended] = {}
        self.redacted: set[str] = set()
        self.records: list[dict[str, Any]] = []
        """What ``--format json`` prints at the end, as one array."""
        self.ids = ShortIds()
        """How message ids show: the replay's own are registered before it starts."""

    def _restore(self, state: ContextState) -> list[Message]:
        self.messages = {m.message_id: m for m in state.messages}
        self.redacted = {m.message_id for m in state.messages if m.redacted}
        return list(state.messages)

    async def play(self, rec: RecordedEvent) -> None:
        """Apply ``rec`` to the tracked messages and print it with its effect."""
        self.events.append(rec)
        lines: list[Text] = []
        effect: dict[str, Any] = {}
        match rec.event:
            case MessageAppended(message_id=mid) as appended if mid not in self.messages:
                self.messages[mid] = appended
                lines.append(_line("+", appended, "green"))
            case MessageEdited(message_id=mid, content=content) if (
                mid in self.messages and mid not in self.redacted
            ):
                before = self.messages[mid]
                effect["before"] = before.content
                self.messages[mid] = msgspec.structs.replace(before, content=content)
                lines += [_line("~", before, "yellow strike"), _line("→", self.messages[mid])]
            case MessageRedacted(message_id=mid, reason=reason) if mid in self.messages:
                before = self.messages[mid]
                effect["before"] = before.content
                self.redacted.add(mid)
                note = f" (redacted{': ' + reason if reason else ''})"
                lines.append(_line("✗", before, "red strike", note))
            case ContextRolledBack(to_version=target) if 1 <= target < rec.version:
                state = await self.refold.fold(self.events[:target])
                shown = self._restore(state)
                effect["messages"] = [m.message_id for m in shown]
                lines.append(Text(f"  ↺ back to v{target}: {len(shown)} messages", "magenta"))
                lines += [_line(" ", m) for m in shown]
            case ContextForked(parent_id=parent, parent_version=at) if rec.version == 1:
                shown = self._restore(await self.refold.state(parent, at))
                effect["messages"] = [m.message_id for m in shown]
                lines.append(Text(f"  ⑂ from {parent} v{at}: {len(shown)} messages", "magenta"))
                lines += [_line(" ", m) for m in shown]
            case _:
                lines.append(Text(f"  {describe(rec.event, self.ids)}", "cyan"))
        if not self.out.text:
            record = event_record(rec, change=describe(rec.event, self.ids), effect=effect)
            if self.out.fmt == "json":
                self.records.append(record)
            else:
                self.out.records([record])
            return
        who = rec.metadata.actor or "-"
        header = f"v{rec.version} · {self.out.when(rec.recorded_at)} · {who} · {rec.type}"
        for line in (Text(header, "bold"), *lines):
            self.out.print(line)


def _line(mark: str, m: Message | MessageAppended, style: str = "", note: str = "") -> Text:
    who = m.role if m.name is None else f"{m.role} {m.name}"
    return Text(f"  {mark} [{who}] {excerpt(m.content, 100)}{note}", style)


@click.command(epilog=EXIT_CODES, short_help="A context or its window, now or at a version/time.")
@_context_id
@click.option("--version", type=click.IntRange(min=1), metavar="N", help="As of version N.")
@click.option("--at", type=TIME, help="As of a time (ISO 8601, or ago: 15m, 2h, 7d).")
@click.option(
    "--window",
    "budget",
    type=click.IntRange(min=0),
    metavar="TOKENS",
    help="Show the window that fits TOKENS, with its accounting.",
)
@click.option("--model", help="The window's model (its tokenizer decides exactness).")
@db_option
@format_option
def show(
    context_id: str,
    version: int | None,
    at: datetime | None,
    budget: int | None,
    model: str | None,
    db: str,
    fmt: str,
) -> None:
    """A context (or its window, with the accounting) now, at a version or at a time."""
    if version is not None and at is not None:
        raise click.UsageError("give --version or --at, not both")
    if model is not None and budget is None:
        raise click.UsageError("--model goes with --window")
    run(_show(db, context_id, version, at, budget, model, Output(fmt)))


async def _show(
    db: str,
    context_id: str,
    version: int | None,
    at: datetime | None,
    budget: int | None,
    model: str | None,
    out: Output,
) -> None:
    async with open_store(db) as store:
        context_id = await resolve_context(store, context_id)
        refold = Refold(store, TokenCounter())
        if at is not None:
            state = await refold.state_at_time(context_id, at)
        else:
            state = await refold.state(context_id, version)
    if budget is not None:
        shown = window(state, budget, model=model)
        if out.text:
            _print_window(out, shown)
        else:
            out.document(msgspec.to_builtins(shown))
    elif out.text:
        _print_state(out, state)
    else:
        out.document(state_record(state))


def _print_state(out: Output, state: ContextState) -> None:
    parent = state.parent
    out.pairs([
        ("context", state.context_id),
        ("version", state.version),
        ("tenant", state.tenant or "-"),
        ("created", out.when(state.created_at)),
        ("updated", out.when(state.updated_at)),
        ("by", state.updated_by or "-"),
        ("parent", "-" if parent is None else f"{parent.context_id} v{parent.version}"),
        ("deleted", "yes" if state.deleted else "no"),
        ("metadata", msgspec.json.encode(state.metadata).decode()),
        ("window", window_text(state.window)),
        ("messages", len(state.messages)),
        ("tokens", f"{state.total_tokens} ({state.token_encoding})"),
    ])  # fmt: skip
    short = ShortIds(m.message_id for m in state.messages)
    short.add(s.summary_id for s in state.summaries)
    rows = []
    for seq, m in enumerate(state.messages):
        flags = " ".join(
            f for f in ("redacted" if m.redacted else "",
                        f"edited v{m.edited_version}" if m.edited_version else "") if f
        )  # fmt: skip
        rows.append((seq, short(m.message_id), m.role, m.tokens, m.version, flags,
                     excerpt(m.content, 100)))  # fmt: skip
    if rows:
        out.print()
        out.table(["#", "id", "role", ("tokens", "right"), ("v", "right"), "", "content"], rows)
    if state.summaries:
        out.print()
        out.table(
            ["summary", "through", ("tokens", "right"), ("v", "right"), "text"],
            [(short(s.summary_id), short(s.through_message_id), s.tokens, s.version,
              excerpt(s.text, 100)) for s in state.summaries],
        )  # fmt: skip


def _print_window(out: Output, shown: Window) -> None:
    short = ShortIds(e.id for e in shown.entries)
    short.add(lo.newest_message_id for lo in shown.left_out)
    out.table(
        ["kind", "id", "role", ("tokens", "right"), "content"],
        [(e.kind, short(e.id), e.role, e.tokens, excerpt(e.content, 100)) for e in shown.entries],
    )
    budget = "none" if shown.max_tokens is None else f"{shown.max_tokens}"
    left = "; ".join(
        f"{lo.count} {lo.reason} (newest {short(lo.newest_message_id)})" for lo in shown.left_out
    )
    out.print()
    out.pairs([
        ("context", f"{shown.context_id} v{shown.version}"),
        ("tokens", f"{shown.total_tokens} of {budget} (reply priming {shown.reply_priming})"),
        ("policy", shown.policy if shown.last_n is None else f"{shown.policy} {shown.last_n}"),
        ("model", f"{shown.model or '-'} ({shown.encoding}{'' if shown.exact else ', estimated'})"),
        ("left out", left or "nothing"),
        ("note", shown.reason or ("the newest message does not fit"
                                  if shown.newest_does_not_fit else "-")),
        ("window hash", shown.window_hash),
    ])  # fmt: skip
