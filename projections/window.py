"""Token-windowed views of a context: what a model is shown, with its accounting.

Rules, in order of the result's ``entries``:

1. Every system-role message (``system``, and ``developer``, OpenAI's newer name for it:
   ``eventstore.PINNED_ROLES``) is pinned, in its original order, even one older than the
   summary or placed mid-conversation (it moves to the front). Pinned messages always count
   against the budget; they are never left out.
2. The latest summary (``ContextState.latest_summary``) follows as a system entry; the
   non-system messages it covers (everything up to and including ``through_message_id``) are
   left out as ``covered_by_summary``.
3. Then the most recent non-system messages that fit, as a contiguous suffix: selection walks
   newest-first in *units* and stops at the first unit that does not fit (``over_budget``, or
   ``beyond_last_n`` under the last_n policy), even if an older, smaller unit would fit, so a
   window never has holes. A unit is one message, except that an assistant message with tool
   calls and the tool messages answering them (matching ``call_id``), plus anything between
   them, are one unit: all in or all out. Tool results whose call is covered by the summary
   are covered too. Results whose call is gone altogether (e.g. redacted) stand alone.
4. Redacted messages are included as their blank placeholder (content ``""``, ``redacted``
   true, costing only the per-message overhead), so turn order stays as it was and the
   record shows that something was there.

``total_tokens`` = pinned + summary + included messages + ``reply_priming``; under the tokens
policy it is at most ``max_tokens`` unless the pinned part alone exceeds it. ``max_tokens``
None means no budget. ``overhead_tokens`` is the part of it that is the request format's
framing (per message, and the reply priming). Counts come from the state (counted once, on
append) when they are in the model's encoding; otherwise ``projections.accounting`` recounts
or estimates the messages the window reads, and ``exact``/``reason`` say which. ``exact``
False always comes with a ``reason``; a reason for a newest message that does not fit follows
it, after "; ".

For the SQL read model: ``select_tail`` takes any newest-first iterable of non-system
``Message``s (a DB cursor over ``messages WHERE role != 'system' ORDER BY seq DESC``) and reads
only as far as the window reaches plus one unit, so a window costs O(window), not O(context).
Pinned messages and the summary are the caller's (indexed) lookups; ``window`` below is the
in-memory composition of the same pieces over a ``ContextState``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Literal

import msgspec

from eventstore.events import (
    PINNED_ROLES,
    Content,
    Role,
    ToolCallPart,
    ToolResultPart,
    WindowServed,
    WindowSettings,
)

from .accounting import Accounting, accounting
from .errors import ContextIsDeleted, InvalidCommand
from .overhead import DEFAULT_FORMAT
from .state import ContextState, Message, Summary
from .tokens import REPLY_PRIMING

Policy = Literal["tokens", "last_n"]
Reason = Literal["over_budget", "covered_by_summary", "beyond_last_n"]


class WindowEntry(msgspec.Struct, frozen=True, kw_only=True):
    """One entry of a window: a pinned system message, the summary, or a message."""

    kind: Literal["system", "summary", "message"]
    id: str
    role: Role
    content: Content
    name: str | None = None
    tokens: int
    redacted: bool = False


class LeftOut(msgspec.Struct, frozen=True, kw_only=True):
    """Non-system messages left out for one reason: how many, and the newest of them."""

    reason: Reason
    count: int
    newest_message_id: str


class Window(msgspec.Struct, frozen=True, kw_only=True):
    """A window and its accounting: counts in ``encoding``; ``exact`` False (with a
    ``reason``) when they are an estimate because the model has no local tokenizer."""

    context_id: str
    version: int
    policy: Policy
    max_tokens: int | None
    last_n: int | None
    model: str | None
    encoding: str
    exact: bool
    entries: tuple[WindowEntry, ...]
    summary_id: str | None
    total_tokens: int
    overhead_tokens: int = 0
    format: str = DEFAULT_FORMAT
    reply_priming: int = REPLY_PRIMING
    left_out: tuple[LeftOut, ...] = ()
    newest_does_not_fit: bool = False
    reason: str | None = None
    window_hash: str

    @property
    def message_ids(self) -> list[str]:
        """Ids of the messages shown (pinned and recent), in window order; not the summary."""
        return [e.id for e in self.entries if e.kind != "summary"]


class Tail(msgspec.Struct, frozen=True, kw_only=True):
    """What ``select_tail`` chose: messages oldest-first, and why it stopped."""

    messages: tuple[Message, ...]
    tokens: int
    stop: Reason | None
    blocked: tuple[Message, ...] = ()
    covered_results: tuple[Message, ...] = ()


def _call_ids(message: Message) -> set[str]:
    if isinstance(message.content, str):
        return set()
    return {p.id for p in message.content if isinstance(p, ToolCallPart)}


def _result_ids(message: Message) -> set[str]:
    if isinstance(message.content, str):
        return set()
    return {p.call_id for p in message.content if isinstance(p, ToolResultPart)}


def _units(
    newest_first: Iterable[Message], through: str | None
) -> Iterator[tuple[list[Message], bool]]:
    """(unit newest-first, covered) pairs; a unit spans tool results back to their call."""
    unit: list[Message] = []
    pending: set[str] = set()
    for message in newest_first:
        if message.message_id == through:
            if unit:  # results whose call the summary covers
                yield unit, True
            return
        if message.role in PINNED_ROLES:
            continue  # pinned by the caller
        unit.append(message)
        pending |= _result_ids(message)
        pending -= _call_ids(message)
        if not pending:
            yield unit, False
            unit = []
    if unit:  # results whose call is not there at all
        yield unit, False


def _stored(message: Message) -> int:
    return message.tokens


def select_tail(
    newest_first: Iterable[Message],
    *,
    budget: int | None,
    last_n: int | None = None,
    through_message_id: str | None = None,
    cost: Callable[[Message], int] = _stored,
) -> Tail:
    """The newest units that fit ``budget`` tokens (None: any) and ``last_n`` messages, each
    message costing ``cost(message)`` (default: its stored ``tokens``).

    Reads ``newest_first`` lazily and stops one unit past the window or at
    ``through_message_id`` (the summary's boundary); system messages in it are skipped.
    """
    taken: list[Message] = []
    tokens = 0
    for unit, covered in _units(newest_first, through_message_id):
        if covered:
            return Tail(
                messages=tuple(reversed(taken)),
                tokens=tokens,
                stop=None,
                covered_results=tuple(reversed(unit)),
            )
        size = sum(cost(m) for m in unit)
        stop: Reason | None = None
        if last_n is not None and len(taken) + len(unit) > last_n:
            stop = "beyond_last_n"
        elif budget is not None and tokens + size > budget:
            stop = "over_budget"
        if stop is not None:
            return Tail(
                messages=tuple(reversed(taken)),
                tokens=tokens,
                stop=stop,
                blocked=tuple(reversed(unit)),
            )
        taken.extend(unit)
        tokens += size
    return Tail(messages=tuple(reversed(taken)), tokens=tokens, stop=None)


def _entry(message: Message, kind: Literal["system", "message"], tokens: int) -> WindowEntry:
    return WindowEntry(
        kind=kind,
        id=message.message_id,
        role=message.role,
        content=message.content,
        name=message.name,
        tokens=tokens,
        redacted=message.redacted,
    )


def window_hash(entries: Sequence[WindowEntry]) -> str:
    """sha256 hex of the entries' canonical JSON: [kind, id, role, name, content] each."""
    rendering = [[e.kind, e.id, e.role, e.name, e.content] for e in entries]
    return hashlib.sha256(msgspec.json.encode(rendering, order="sorted")).hexdigest()


def compose(
    *,
    context_id: str,
    version: int,
    pinned: Sequence[Message],
    summary: Summary | None,
    newest_first: Iterable[Message],
    policy: Policy,
    max_tokens: int | None,
    last_n: int | None,
    model: str | None,
    counting: Accounting,
) -> tuple[Window, Tail]:
    """A Window from its parts (any source), counted as ``counting`` says (the stored counts,
    recounted or estimated); ``left_out`` is left for the caller to count."""
    cost = _stored
    if not counting.stored:
        pinned = [counting.message(m) for m in pinned]
        summary = None if summary is None else counting.summary(summary)
        if counting.reframed:
            cost = counting.tokens  # arithmetic on the stored counts, no copies
        else:
            newest_first = _counted(newest_first, counting)
    priming = counting.framing.reply_priming
    fixed = sum(m.tokens for m in pinned) + (summary.tokens if summary else 0) + priming
    budget = None if max_tokens is None else max(max_tokens - fixed, 0)
    tail = select_tail(
        newest_first,
        budget=budget,
        last_n=last_n if policy == "last_n" else None,
        through_message_id=summary.through_message_id if summary else None,
        cost=cost,
    )
    entries = [_entry(m, "system", m.tokens) for m in pinned]
    if summary is not None:
        entries.append(WindowEntry(
            kind="summary", id=summary.summary_id, role="system",
            content=summary.text, tokens=summary.tokens,
        ))  # fmt: skip
    entries.extend(_entry(m, "message", cost(m)) for m in tail.messages)
    newest_does_not_fit = tail.stop is not None and not tail.messages
    reason = counting.reason
    if newest_does_not_fit:
        newest = tail.blocked[-1]
        size = sum(cost(m) for m in tail.blocked)
        what = f"the newest message {newest.message_id!r}"
        if len(tail.blocked) > 1:
            what += f" with its tool call/results ({len(tail.blocked)} messages)"
        if tail.stop == "over_budget":
            fit = (
                f"{what} needs {size} tokens but only {budget} of the {max_tokens}-token "
                f"budget remain after {fixed} for pinned system messages, the summary and "
                f"reply priming"
            )
        else:
            fit = f"{what} is more than last_n={last_n} messages"
        reason = fit if reason is None else f"{reason}; {fit}"
    framing = counting.framing
    overhead = sum(framing.message(bool(e.name)) for e in entries) + priming
    result = Window(
        context_id=context_id,
        version=version,
        policy=policy,
        max_tokens=max_tokens,
        last_n=last_n,
        model=model,
        encoding=counting.encoding,
        exact=counting.exact,
        entries=tuple(entries),
        summary_id=summary.summary_id if summary else None,
        total_tokens=fixed + tail.tokens,
        overhead_tokens=overhead,
        format=framing.format,
        reply_priming=priming,
        newest_does_not_fit=newest_does_not_fit,
        reason=reason,
        window_hash=window_hash(entries),
    )
    return result, tail


def _counted(newest_first: Iterable[Message], counting: Accounting) -> Iterator[Message]:
    """The messages with the window's counts, counted lazily as the selection reads them
    (system messages are pinned by the caller and skipped by the selection: left as they are)."""
    for message in newest_first:
        yield message if message.role in PINNED_ROLES else counting.message(message)


def resolve(
    settings: WindowSettings,
    token_encoding: str,
    max_tokens: int | None,
    model: str | None,
    policy: Policy | None,
    last_n: int | None,
    format_name: str = DEFAULT_FORMAT,
) -> tuple[Policy, int | None, int | None, str | None, Accounting]:
    """(policy, max_tokens, last_n, model, accounting) of a window request: what the caller
    asked, else the context's settings; the accounting says how its tokens are counted.
    InvalidCommand for policy last_n without n, or an unknown format."""
    policy = policy or settings.policy or "tokens"
    max_tokens = settings.max_tokens if max_tokens is None else max_tokens
    last_n = settings.last_n if last_n is None else last_n
    model = model or settings.model
    if policy == "last_n" and last_n is None:
        raise InvalidCommand("policy 'last_n' needs last_n")
    counting = accounting(model, settings.encoding, token_encoding, format_name)
    return policy, max_tokens, last_n, model, counting


def window(
    state: ContextState,
    max_tokens: int | None = None,
    *,
    model: str | None = None,
    policy: Policy | None = None,
    last_n: int | None = None,
    format_name: str = DEFAULT_FORMAT,
) -> Window:
    """The window of ``state``; unset arguments default to the context's window settings.
    ``format_name`` is the request format whose framing is counted (``overhead.FORMATS``).

    Raises ContextIsDeleted for a deleted context and InvalidCommand for last_n without n
    or an unknown format.
    """
    if state.deleted:
        raise ContextIsDeleted(state.context_id)
    policy, max_tokens, last_n, model, counting = resolve(
        state.window, state.token_encoding, max_tokens, model, policy, last_n, format_name
    )
    summary = state.latest_summary
    pinned = [m for m in state.messages if m.role in PINNED_ROLES]
    result, tail = compose(
        context_id=state.context_id,
        version=state.version,
        pinned=pinned,
        summary=summary,
        newest_first=reversed(state.messages),
        policy=policy,
        max_tokens=max_tokens,
        last_n=last_n,
        model=model,
        counting=counting,
    )
    return msgspec.structs.replace(result, left_out=_left_out(state, summary, tail))


def _left_out(state: ContextState, summary: Summary | None, tail: Tail) -> tuple[LeftOut, ...]:
    """Count what the tail left out, by reason (O(messages) here; a COUNT(*) in SQL)."""
    left: list[LeftOut] = []
    covered_end = -1 if summary is None else state.index[summary.through_message_id]
    if tail.stop is not None:
        newest = tail.blocked[-1]
        end = state.index[newest.message_id]
        count = sum(
            1 for m in state.messages[covered_end + 1 : end + 1] if m.role not in PINNED_ROLES
        )
        left.append(LeftOut(reason=tail.stop, count=count, newest_message_id=newest.message_id))
    if summary is not None:
        covered = state.messages[: covered_end + 1]
        count = sum(1 for m in covered if m.role not in PINNED_ROLES) + len(tail.covered_results)
        if count:
            newest_id = (
                tail.covered_results[-1].message_id
                if tail.covered_results
                else next(m.message_id for m in reversed(covered) if m.role not in PINNED_ROLES)
            )
            left.append(
                LeftOut(reason="covered_by_summary", count=count, newest_message_id=newest_id)
            )
    return tuple(left)


def served_event(window: Window) -> WindowServed:
    """The WindowServed event recording exactly what ``window`` showed a model."""
    return WindowServed(
        policy=window.policy,
        max_tokens=window.max_tokens,
        encoding=window.encoding,
        model=window.model,
        message_ids=window.message_ids,
        summary_id=window.summary_id,
        total_tokens=window.total_tokens,
        window_hash=window.window_hash,
        format=window.format,
        exact=window.exact,
    )
