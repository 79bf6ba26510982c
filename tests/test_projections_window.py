"""Windows: budget, pinning, summaries, tool-call units, last_n, accounting, served record."""

from __future__ import annotations

from collections.abc import Iterator

import msgspec
import pytest

from eventstore.events import (
    ContextDeleted,
    ImagePart,
    MessageEdited,
    MessageRedacted,
    Part,
    SummaryAdded,
    TextPart,
    ToolCallPart,
    ToolResultPart,
    WindowConfigured,
    WindowSettings,
)
from projections import (
    REPLY_PRIMING,
    ContextIsDeleted,
    ContextState,
    InvalidCommand,
    LeftOut,
    Message,
    select_tail,
    served_event,
    window,
)
from tests.support.factories import Stream, created, msg


def conversation() -> Stream:
    return Stream().add(
        created(),
        msg("sys", "You are terse.", "system"),
        msg("u1", "first question"),
        msg("a1", "first answer", "assistant"),
        msg("u2", "second question"),
        msg("a2", "second answer", "assistant"),
    )


def tokens(state: ContextState, *ids: str) -> int:
    return sum(m.tokens for m in state.messages if m.message_id in ids)


def ids(w: object) -> list[str]:
    return [e.id for e in w.entries]  # type: ignore[attr-defined]


def test_empty_context_costs_only_reply_priming() -> None:
    w = window(Stream().add(created()).state(), 100)
    assert w.entries == ()
    assert w.total_tokens == REPLY_PRIMING
    assert w.left_out == ()
    assert not w.newest_does_not_fit


def test_everything_fits_exactly_at_the_budget() -> None:
    state = conversation().state()
    exact = state.total_tokens + REPLY_PRIMING
    w = window(state, exact)
    assert ids(w) == ["sys", "u1", "a1", "u2", "a2"]
    assert w.total_tokens == exact
    assert [e.tokens for e in w.entries] == [m.tokens for m in state.messages]
    assert w.left_out == ()
    # One token less and the oldest non-system message goes, the rest stays contiguous.
    w = window(state, exact - 1)
    assert ids(w) == ["sys", "a1", "u2", "a2"]
    assert w.left_out == (LeftOut(reason="over_budget", count=1, newest_message_id="u1"),)
    assert w.total_tokens == exact - tokens(state, "u1")


def test_system_messages_are_pinned_first_even_mid_conversation() -> None:
    s = conversation().add(msg("sys2", "Now answer in French.", "system"), msg("u3", "third"))
    state = s.state()
    fixed = tokens(state, "sys", "sys2") + REPLY_PRIMING
    w = window(state, fixed + tokens(state, "u3"))
    assert ids(w) == ["sys", "sys2", "u3"]
    assert [e.kind for e in w.entries] == ["system", "system", "message"]
    # Pinned messages are shown even when they alone exceed the budget.
    w = window(state, 1)
    assert ids(w) == ["sys", "sys2"]
    assert w.newest_does_not_fit
    assert w.total_tokens == fixed


def test_selection_is_a_contiguous_suffix() -> None:
    s = Stream().add(created(), msg("tiny", "hi"), msg("big", "word " * 200), msg("new", "ok"))
    state = s.state()
    w = window(state, tokens(state, "new", "tiny") + REPLY_PRIMING)
    assert ids(w) == ["new"]  # "tiny" would fit, but not without the hole where "big" is
    assert w.left_out == (LeftOut(reason="over_budget", count=2, newest_message_id="big"),)


def test_summary_replaces_the_messages_it_covers() -> None:
    s = conversation().add(
        SummaryAdded(summary_id="s1", text="Two questions were answered.", through_message_id="a1")
    )
    state = s.state()
    w = window(state, 10_000)
    assert ids(w) == ["sys", "s1", "u2", "a2"]
    assert w.entries[1].kind == "summary"
    assert w.entries[1].role == "system"
    assert w.entries[1].content == "Two questions were answered."
    assert w.summary_id == "s1"
    assert w.left_out == (LeftOut(reason="covered_by_summary", count=2, newest_message_id="a1"),)
    summary_tokens = state.summaries[0].tokens
    assert w.total_tokens == tokens(state, "sys", "u2", "a2") + summary_tokens + REPLY_PRIMING
    assert w.message_ids == ["sys", "u2", "a2"]


def test_latest_summary_wins() -> None:
    s = conversation().add(
        SummaryAdded(summary_id="s1", text="one", through_message_id="u1"),
        SummaryAdded(summary_id="s2", text="two", through_message_id="u2"),
    )
    assert ids(window(s.state(), 10_000)) == ["sys", "s2", "a2"]


def test_multipart_content_uses_stored_counts() -> None:
    parts: list[Part] = [
        TextPart(text="what is in this picture?"), ImagePart(url="http://x", detail="high")
    ]
    state = Stream().add(created(), msg("u1", parts)).state()
    w = window(state, 10_000)
    assert w.entries[0].content == parts
    assert w.entries[0].tokens == state.messages[0].tokens > 765
    assert w.total_tokens == state.messages[0].tokens + REPLY_PRIMING


def tool_turn(s: Stream) -> Stream:
    calls: list[Part] = [
        ToolCallPart(id="c1", name="weather", arguments={"city": "Paris"}),
        ToolCallPart(id="c2", name="weather", arguments={"city": "Rome"}),
    ]
    return s.add(
        msg("u1", "weather in Paris and Rome?"),
        msg("call", calls, "assistant"),
        msg("r1", [ToolResultPart(call_id="c1", content="18C")], "tool"),
        msg("r2", [ToolResultPart(call_id="c2", content="25C " * 50)], "tool"),
        msg("a1", "Paris 18C, Rome 25C.", "assistant"),
    )


def test_tool_call_and_its_results_are_all_in_or_all_out() -> None:
    state = tool_turn(Stream().add(created())).state()
    unit = tokens(state, "call", "r1", "r2")
    a1 = tokens(state, "a1")
    # Room for a1 and both results, but not for the call: the whole unit stays out.
    w = window(state, a1 + unit - 1 + REPLY_PRIMING)
    assert ids(w) == ["a1"]
    assert w.left_out == (LeftOut(reason="over_budget", count=4, newest_message_id="r2"),)
    w = window(state, a1 + unit + REPLY_PRIMING)
    assert ids(w) == ["call", "r1", "r2", "a1"]


def test_results_of_a_call_covered_by_the_summary_are_covered_too() -> None:
    s = tool_turn(Stream().add(created()))
    s.add(SummaryAdded(summary_id="s", text="asked the weather", through_message_id="call"))
    w = window(s.state(), 10_000)
    assert ids(w) == ["s", "a1"]
    assert w.left_out == (LeftOut(reason="covered_by_summary", count=4, newest_message_id="r2"),)


def test_newest_message_over_budget_is_flagged_with_a_reason() -> None:
    state = conversation().add(msg("huge", "lorem ipsum " * 500)).state()
    w = window(state, 200)
    assert ids(w) == ["sys"]
    assert w.newest_does_not_fit
    assert w.reason is not None
    assert "'huge'" in w.reason
    assert str(tokens(state, "huge")) in w.reason
    assert w.left_out[0] == LeftOut(reason="over_budget", count=5, newest_message_id="huge")


def test_last_n_policy_keeps_units_whole() -> None:
    state = tool_turn(Stream().add(created())).state()
    assert ids(window(state, policy="last_n", last_n=1)) == ["a1"]
    # Three would split the call from its results: stop before the whole unit instead.
    w = window(state, policy="last_n", last_n=3)
    assert ids(w) == ["a1"]
    assert w.left_out[0] == LeftOut(reason="beyond_last_n", count=4, newest_message_id="r2")
    assert ids(window(state, policy="last_n", last_n=4)) == ["call", "r1", "r2", "a1"]
    # A budget still applies under last_n.
    assert ids(window(state, tokens(state, "a1") + REPLY_PRIMING, policy="last_n", last_n=4)) == [
        "a1"
    ]
    with pytest.raises(InvalidCommand):
        window(state, policy="last_n")


def test_defaults_come_from_the_context_window_settings() -> None:
    s = conversation().add(WindowConfigured(window=WindowSettings(policy="last_n", last_n=2)))
    w = window(s.state())
    assert ids(w) == ["sys", "u2", "a2"]
    assert w.policy == "last_n"
    assert w.max_tokens is None


def test_redacted_messages_appear_as_blank_placeholders() -> None:
    state = conversation().add(MessageRedacted(message_id="u2")).state()
    w = window(state, 10_000)
    entry = w.entries[3]
    assert (entry.id, entry.content, entry.redacted) == ("u2", "", True)
    assert entry.tokens == tokens(state, "u2")


def test_deleted_context_has_no_window() -> None:
    with pytest.raises(ContextIsDeleted):
        window(conversation().add(ContextDeleted()).state(), 100)


def test_exact_says_whether_the_model_is_counted_exactly() -> None:
    state = conversation().state()
    assert window(state, 100).exact
    assert window(state, 100, model="gpt-4").exact
    assert window(state, 100, model="gpt-4o").exact  # recounted in o200k_base
    other = window(state, 100, model="some-other-model")
    assert not other.exact
    assert other.reason is not None
    assert other.reason.startswith("some-other-model has no local tokenizer")


def test_window_hash_covers_what_was_shown() -> None:
    s = conversation()
    before = window(s.state(), 10_000)
    assert before.window_hash == window(s.state(), 10_000).window_hash
    assert len(before.window_hash) == 64
    s.add(MessageEdited(message_id="u2", content="second question, rephrased"))
    assert window(s.state(), 10_000).window_hash != before.window_hash
    # A budget that leaves out the edited message shows the same as before the edit.
    narrow = tokens(s.state(), "sys", "a2") + REPLY_PRIMING
    assert window(s.state(), narrow).window_hash == window(s.state(6), narrow).window_hash
    assert window(s.state(), narrow).window_hash != before.window_hash


def test_served_event_records_exactly_the_window() -> None:
    s = conversation().add(SummaryAdded(summary_id="s1", text="sum", through_message_id="u1"))
    w = window(s.state(), 10_000, model="gpt-4")
    event = served_event(w)
    assert event.message_ids == ["sys", "a1", "u2", "a2"]
    assert event.summary_id == "s1"
    assert (event.policy, event.max_tokens, event.model) == ("tokens", 10_000, "gpt-4")
    assert event.encoding == "cl100k_base"
    assert event.total_tokens == w.total_tokens
    assert event.window_hash == w.window_hash
    # Serving a window is recorded but changes nothing in the window.
    assert window(s.add(event).state(), 10_000, model="gpt-4").window_hash == w.window_hash


def test_select_tail_reads_only_as_far_as_the_window() -> None:
    state = conversation().state()
    newest_first = [m for m in reversed(state.messages) if m.role != "system"]
    read: list[str] = []

    def cursor() -> Iterator[Message]:
        for m in newest_first:
            read.append(m.message_id)
            yield m
        raise AssertionError("read past the window")  # pragma: no cover

    tail = select_tail(cursor(), budget=tokens(state, "a2", "u2"))
    assert [m.message_id for m in tail.messages] == ["u2", "a2"]
    assert tail.stop == "over_budget"
    assert [m.message_id for m in tail.blocked] == ["a1"]
    assert read == ["a2", "u2", "a1"]  # one unit past the window, no further


def test_select_tail_with_no_budget_takes_everything() -> None:
    state = conversation().state()
    tail = select_tail(reversed(state.messages), budget=None)
    assert [m.message_id for m in tail.messages] == ["u1", "a1", "u2", "a2"]
    assert tail.stop is None
    assert tail.tokens == state.total_tokens - tokens(state, "sys")


def test_window_is_a_frozen_struct_that_encodes() -> None:
    w = window(conversation().state(), 100)
    decoded = msgspec.json.decode(msgspec.json.encode(w))
    assert decoded["window_hash"] == w.window_hash
    with pytest.raises(AttributeError):
        w.total_tokens = 0  # type: ignore[misc]
