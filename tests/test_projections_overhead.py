"""The overhead model: each provider format's documented framing, images and tool use."""

from __future__ import annotations

import pytest

from projections import InvalidCommand
from projections import overhead as oh
from tests.support.factories import COUNTER


def test_formats_are_chosen_by_name_openai_by_default() -> None:
    assert oh.framing(oh.DEFAULT_FORMAT) is oh.OPENAI
    assert set(oh.FORMATS) == {"openai", "responses", "anthropic"}
    assert oh.framing("anthropic") is oh.ANTHROPIC
    with pytest.raises(InvalidCommand, match="known: openai, responses, anthropic"):
        oh.framing("gemini")


def test_openai_framing_is_the_cookbooks() -> None:
    assert (oh.OPENAI.message(named=False), oh.OPENAI.message(named=True)) == (3, 4)
    assert oh.OPENAI.reply_priming == 3
    # What the counter adds to a message is exactly this framing.
    content = COUNTER.count_text("user") + COUNTER.count_text("hi")
    assert COUNTER.count_message("user", "hi") == content + oh.OPENAI.message(named=False)


def test_anthropic_documents_no_message_framing() -> None:
    assert (oh.ANTHROPIC.message(named=True), oh.ANTHROPIC.reply_priming) == (0, 0)


@pytest.mark.parametrize(
    ("size", "tokens"),
    [
        # Anthropic's own table (Vision: "evaluate image size"): ~54, ~1334, ~1590.
        ((200, 200), 54),
        ((1000, 1000), 1334),
        ((1092, 1092), 1590),
        # Larger images are scaled down first, and never cost more than about 1,600.
        ((4000, 3000), 1600),
        ((1568, 100), 210),
        ((3136, 200), 210),
    ],
)
def test_anthropic_images_cost_width_times_height_over_750(
    size: tuple[int, int], tokens: int
) -> None:
    assert oh.anthropic_image(*size) == tokens


def test_an_image_of_unknown_size_costs_anthropics_most() -> None:
    assert oh.anthropic_image() == oh.ANTHROPIC_IMAGE_MAX == 1600


def test_openai_images() -> None:
    assert (oh.openai_image("low"), oh.openai_image("high"), oh.openai_image(None)) == (
        85,
        765,
        765,
    )


@pytest.mark.parametrize(
    ("model", "choice", "prompt"),
    [
        ("claude-3-opus-20240229", "auto", 530),
        ("claude-3-opus-20240229", "tool", 281),
        ("claude-3-sonnet-20240229", "any", 235),
        ("claude-3-haiku-20240307", "auto", 264),
        ("claude-3-5-sonnet-20241022", "auto", 346),
        ("claude-sonnet-4-20250514", "none", 346),
        ("claude-opus-4-1", "any", 313),
    ],
)
def test_anthropic_tool_use_adds_its_system_prompt(model: str, choice: str, prompt: int) -> None:
    assert oh.anthropic_tools(model, choice, definitions=120) == 120 + prompt  # type: ignore[arg-type]


def test_no_tools_cost_nothing() -> None:
    assert oh.anthropic_tools("claude-sonnet-4", "auto", definitions=0) == 0
