"""What a provider's request format costs beyond the text it carries, as each provider
documents it: framing per message, reply priming, images, tool definitions. Pure numbers.

A format is chosen by name (``framing(name)``); ``openai`` is the default, and it is the
framing every stored count already holds (``TokenCounter.count_message`` adds it), so a window
in another format swaps one framing for the other (see ``projections.accounting``).

- ``openai``, Chat Completions: OpenAI cookbook, "How to count tokens with tiktoken" (the
  gpt-3.5-turbo-0613, gpt-4 and gpt-4o families): each message costs 3 tokens of framing
  (``<|start|>{role}<|message|>…<|end|>``) besides its role, content and name; a name 1 more;
  the reply is primed with 3 (``<|start|>assistant<|message|>``). Images: 85 tokens at low
  detail, else 85 + 170 per 512-px tile; we never see pixels, so a 1024x1024 image (765).
- ``responses``, the Responses API: OpenAI documents no recipe of its own; its input items
  reach the model as the same chat turns, so the chat numbers are used (an assumption).
- ``anthropic``, the Messages API: Anthropic documents no per-message or priming cost (its
  ``count_tokens`` endpoint is the only exact count), so none is added. It documents images,
  about width x height / 750 tokens after scaling an image down to a long edge of 1,568 px
  and about 1,600 tokens ("Vision", image costs), and tool use: the tool definitions' own
  tokens plus a tool-use system prompt whose size depends on the model and ``tool_choice``
  ("Tool use pricing"; ``anthropic_tools``).
"""

from __future__ import annotations

import math
from typing import Literal

import msgspec

from .errors import InvalidCommand


class Framing(msgspec.Struct, frozen=True, kw_only=True):
    """The tokens a request format adds around messages: per message, per name, per reply."""

    format: str
    per_message: int
    per_name: int
    reply_priming: int

    def message(self, named: bool) -> int:
        """Framing tokens of one message (``named``: it has a ``name``)."""
        return self.per_message + (self.per_name if named else 0)


OPENAI = Framing(format="openai", per_message=3, per_name=1, reply_priming=3)
RESPONSES = Framing(format="responses", per_message=3, per_name=1, reply_priming=3)
ANTHROPIC = Framing(format="anthropic", per_message=0, per_name=0, reply_priming=0)

FORMATS: dict[str, Framing] = {f.format: f for f in (OPENAI, RESPONSES, ANTHROPIC)}
DEFAULT_FORMAT = OPENAI.format


def framing(name: str) -> Framing:
    """The framing of the request format called ``name``; InvalidCommand for an unknown one."""
    try:
        return FORMATS[name]
    except KeyError:
        known = ", ".join(FORMATS)
        raise InvalidCommand(f"unknown format {name!r}; known: {known}") from None


# -- images ------------------------------------------------------------------------------------

OPENAI_IMAGE_LOW = 85
OPENAI_IMAGE_DEFAULT = 765


def openai_image(detail: str | None) -> int:
    """Tokens of one image for OpenAI's models (pixels unknown: a 1024x1024 image)."""
    return OPENAI_IMAGE_LOW if detail == "low" else OPENAI_IMAGE_DEFAULT


ANTHROPIC_IMAGE_LONG_EDGE = 1568
ANTHROPIC_IMAGE_MAX = 1600
ANTHROPIC_PIXELS_PER_TOKEN = 750


def anthropic_image(width: int | None = None, height: int | None = None) -> int:
    """Tokens of one image for Claude: width x height / 750 after Anthropic's scaling (long
    edge at most 1,568 px, at most about 1,600 tokens); ``ANTHROPIC_IMAGE_MAX`` when the
    pixels are unknown, the most an image costs."""
    if not width or not height:
        return ANTHROPIC_IMAGE_MAX
    scale = min(1.0, ANTHROPIC_IMAGE_LONG_EDGE / max(width, height))
    pixels = (width * scale) * (height * scale)
    return min(math.ceil(pixels / ANTHROPIC_PIXELS_PER_TOKEN), ANTHROPIC_IMAGE_MAX)


# -- tool definitions ----------------------------------------------------------------------------

ToolChoice = Literal["auto", "none", "any", "tool"]

ANTHROPIC_TOOL_PROMPT: dict[str, tuple[int, int]] = {
    "claude-3-opus": (530, 281),
    "claude-3-sonnet": (159, 235),
    "claude-3-haiku": (264, 340),
}
"""Tool-use system prompt tokens (``auto``/``none``, ``any``/``tool``) of the Claude 3
models, as Anthropic's tool-use pricing table lists them."""

ANTHROPIC_TOOL_PROMPT_DEFAULT = (346, 313)
"""The same for Claude 3.5 and later (the 3.5, 3.7 and 4 families in that table)."""


def anthropic_tools(model: str, tool_choice: ToolChoice, definitions: int) -> int:
    """Tokens tool use adds to a Claude request: the definitions' own tokens (``definitions``,
    counted by the caller) plus the tool-use system prompt; 0 without tools."""
    if definitions <= 0:
        return 0
    auto, forced = next(
        (v for prefix, v in ANTHROPIC_TOOL_PROMPT.items() if model.startswith(prefix)),
        ANTHROPIC_TOOL_PROMPT_DEFAULT,
    )
    return definitions + (auto if tool_choice in ("auto", "none") else forced)
