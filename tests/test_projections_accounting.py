"""Window accounting per model: exact in the model's own encoding (recounted when the stored
counts are in another), or a documented estimate that says so; the format's framing."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from eventstore import EventStore
from eventstore.events import (
    EventMetadata,
    ImagePart,
    SummaryAdded,
    TextPart,
    WindowConfigured,
    WindowSettings,
)
from projections import Caller, Contexts, ContextState, InvalidCommand, TokenCounter, fold, window
from tests.support.factories import Stream, created, msg

CL100K = TokenCounter("cl100k_base")
O200K = TokenCounter("o200k_base")

ENGLISH = (
    "Please summarise the quarterly report in three short paragraphs, and highlight any "
    "unexpected changes in operating expenses compared with the previous quarter."
)
JAPANESE = "東京タワーは日本の東京都港区芝公園にある総合電波塔です。" * 3


def story(stream_id: str = "ctx") -> Stream:
    return Stream(stream_id).add(
        created(),
        msg("sys", "You are a careful analyst.", "system"),
        msg("u1", ENGLISH),
        msg("a1", "Here is the summary you asked for.", "assistant", name="analyst"),
        msg("u2", JAPANESE),
        msg("a2", [TextPart(text="A chart:"), ImagePart(url="https://x/c.png")], "assistant"),
    )


def in_encoding(stream: Stream, counter: TokenCounter) -> ContextState:
    return fold(stream.events, counter=counter)


def test_gpt_4o_is_counted_exactly_in_o200k() -> None:
    stored = story().state()  # counted in cl100k_base on append
    w = window(stored, 10_000, model="gpt-4o")
    assert (w.encoding, w.exact, w.reason) == ("o200k_base", True, None)
    by_id = {m.message_id: m for m in stored.messages}
    for entry in w.entries:
        m = by_id[entry.id]
        assert entry.tokens == O200K.count_message(m.role, m.content, m.name)
    assert w.total_tokens == sum(e.tokens for e in w.entries) + 3
    # The same window as from counts stored in o200k_base in the first place.
    native = window(in_encoding(story(), O200K), 10_000, model="gpt-4o")
    assert native == w
    # And back: gpt-4 over o200k counts is recounted in cl100k_base.
    assert window(in_encoding(story(), O200K), 10_000, model="gpt-4") == window(
        stored, 10_000, model="gpt-4"
    )


def test_selection_uses_the_models_counts() -> None:
    # Japanese costs far fewer tokens in o200k_base: a budget between the two counts fits
    # the newest message for gpt-4o and not for gpt-4.
    s = Stream().add(created(), msg("u1", JAPANESE))
    state = s.state()
    cl, o2 = CL100K.count_message("user", JAPANESE), O200K.count_message("user", JAPANESE)
    assert o2 < cl
    budget = o2 + 3
    assert [e.id for e in window(state, budget, model="gpt-4o").entries] == ["u1"]
    narrow = window(state, budget, model="gpt-4")
    assert narrow.entries == ()
    assert narrow.newest_does_not_fit
    assert narrow.exact
    assert narrow.reason is not None
    assert f"needs {cl} tokens" in narrow.reason


def test_the_summary_and_pinned_messages_are_recounted_too() -> None:
    s = story().add(SummaryAdded(summary_id="s1", text=JAPANESE, through_message_id="u1"))
    w = window(s.state(), 10_000, model="gpt-4o")
    summary = next(e for e in w.entries if e.kind == "summary")
    pinned = next(e for e in w.entries if e.kind == "system")
    assert summary.tokens == O200K.count_message("system", JAPANESE)
    assert pinned.tokens == O200K.count_message("system", "You are a careful analyst.")


def test_claude_is_an_estimate_that_says_which() -> None:
    stored = story().state()
    w = window(stored, 10_000, model="claude-sonnet-4")
    assert (w.encoding, w.exact) == ("cl100k_base", False)
    assert w.reason == (
        "claude-sonnet-4 has no local tokenizer; estimated as the larger of characters / 3.5 "
        "(Anthropic: a Claude token is about 3.5 English characters; images 1600 tokens each)"
        " and the cl100k_base count"
    )
    tokens = {e.id: e.tokens for e in w.entries}
    by_id = {m.message_id: m for m in stored.messages}
    # English: characters / 3.5 is the larger (cl100k_base packs about 4.5 per token).
    english = 3 + math.ceil(len("user") / 3.5) + math.ceil(len(ENGLISH) / 3.5)
    assert english > by_id["u1"].tokens
    assert tokens["u1"] == english
    # Japanese: characters / 3.5 would undercount it; the cl100k_base count stands.
    assert tokens["u2"] == by_id["u2"].tokens
    # An image costs Anthropic's most, 1,600 tokens.
    chart = 3 + math.ceil(len("assistant") / 3.5) + math.ceil(len("A chart:") / 3.5) + 1600
    assert tokens["a2"] == chart


@pytest.mark.parametrize(
    ("model", "needle"),
    [
        ("gemini-2.5-pro", "characters / 4 (Google: a Gemini token is about 4 characters)"),
        ("llama-3.1-70b", "characters / 4 (OpenAI's rule of thumb"),
        ("mistral-large", "characters / 4 (OpenAI's rule of thumb"),
        ("text-davinci-003", "text-davinci-003 uses p50k_base, which ctxlog does not ship"),
        ("gpt-oss-120b", "gpt-oss-120b uses o200k_harmony, which ctxlog does not ship"),
    ],
)
def test_other_models_are_estimates_with_their_reason(model: str, needle: str) -> None:
    w = window(story().state(), 10_000, model=model)
    assert not w.exact
    assert w.reason is not None
    assert needle in w.reason


def test_an_encoding_setting_is_exact_when_shipped_and_estimated_otherwise() -> None:
    s = story()
    shipped = s.add(WindowConfigured(window=WindowSettings(encoding="o200k_base"))).state()
    w = window(shipped, 10_000)
    assert (w.encoding, w.exact, w.reason) == ("o200k_base", True, None)
    other = story().add(WindowConfigured(window=WindowSettings(encoding="p50k_base"))).state()
    w = window(other, 10_000)
    assert not w.exact
    assert w.reason is not None
    assert w.reason.startswith("encoding 'p50k_base' is not shipped with ctxlog; estimated")


def test_an_estimate_that_does_not_fit_gives_both_reasons() -> None:
    state = Stream().add(created(), msg("u1", ENGLISH)).state()
    w = window(state, 10, model="claude-opus-4")
    assert w.newest_does_not_fit
    assert w.reason is not None
    estimate, fit = w.reason.split("; the newest message")
    assert estimate.startswith("claude-opus-4 has no local tokenizer")
    assert "needs" in fit


# -- framing per format -------------------------------------------------------------------


def test_openai_framing_is_reported_and_totals_are_unchanged() -> None:
    state = story().state()
    w = window(state, 10_000)
    assert w.format == "openai"
    # 5 messages at 3, one of them named (+1), and 3 for the reply.
    assert w.overhead_tokens == 5 * 3 + 1 + 3
    assert w.total_tokens == sum(m.tokens for m in state.messages) + 3
    assert w.reply_priming == 3


def test_anthropic_framing_adds_none() -> None:
    state = story().state()
    openai = window(state, 10_000)
    w = window(state, 10_000, format_name="anthropic")
    assert (w.format, w.overhead_tokens, w.reply_priming) == ("anthropic", 0, 0)
    for ours, theirs in zip(w.entries, openai.entries, strict=True):
        assert ours.tokens == theirs.tokens - 3 - (1 if theirs.name else 0)
    assert w.total_tokens == openai.total_tokens - openai.overhead_tokens


def test_an_unknown_format_is_refused() -> None:
    with pytest.raises(InvalidCommand, match="unknown format 'xml'"):
        window(story().state(), 100, format_name="xml")


# -- the read model answers the same ----------------------------------------------------------


async def test_the_read_model_counts_as_the_fold_does(tmp_path: Path) -> None:
    store = await EventStore.open_url(str(tmp_path / "log.db"))
    svc = Contexts(store)
    await svc.start()
    try:
        s = story("w").add(SummaryAdded(summary_id="s1", text="so far", through_message_id="u1"))
        meta = EventMetadata(actor="tester", tenant="t")
        await store.append("w", [r.event for r in s.events], metadata=meta)
        await svc.projector.catch_up()
        state = s.state()
        caller = Caller(tenant="t")
        for model in (None, "gpt-4", "gpt-4o", "o3-mini", "claude-sonnet-4", "gemini-2.0"):
            for budget in (None, 5, 60, 150, 10_000):
                for fmt in ("openai", "anthropic"):
                    got = await svc.window(
                        caller, "w", max_tokens=budget, model=model, format_name=fmt
                    )
                    assert got == window(state, budget, model=model, format_name=fmt), (
                        model,
                        budget,
                        fmt,
                    )
    finally:
        await svc.close()
        await store.close()
