"""How a window counts its tokens for a model and a request format: exactly, in the model's
own encoding, or by a documented estimate that says so.

Every count in a context is stored once, on append, in the service's encoding (``stored``,
cl100k_base by default), with OpenAI's chat framing (``overhead.OPENAI``) included. A window:

- for a model whose encoding ctxlog ships (``tokens.OFFLINE_ENCODINGS``; gpt-4o, gpt-4.1,
  gpt-4.5, gpt-5 and the o-series use o200k_base; gpt-4, gpt-3.5-turbo and text-embedding-3
  cl100k_base) is exact: the stored counts when they are in that encoding, else the window's
  messages recounted in it as the window is read (O(window), like the read itself).
- for any other model is an estimate, ``exact`` False with a ``reason`` naming it. No local
  tokenizer exists for Claude (Anthropic publishes none), Gemini, Llama, Mistral…, and a
  tiktoken encoding ctxlog does not ship (p50k_base, r50k_base, gpt2, o200k_harmony) is
  never downloaded. The estimate of a message is the larger of two counts with the same
  framing: its text's characters divided by the provider's documented characters per token
  (Anthropic: "a Claude token is about 3.5 English characters"; Google: "a Gemini token is
  about 4 characters"; otherwise 4, OpenAI's rule of thumb for English text), and its stored
  count. Those ratios are stated for English: text in other scripts has far more tokens per
  character, and the stored BPE count keeps such text from being undercounted, which is the
  costly direction for a budget (a prompt the model refuses). Claude's images count as
  Anthropic's documented most (``overhead.anthropic_image``): we never see pixels.

The format (``overhead.FORMATS``, default ``openai``) decides the framing: a window in
another format takes OpenAI's framing out of each count and puts its own in. A window reports
the framing it counted (per-message framing and reply priming) as ``overhead_tokens``, part
of ``total_tokens``.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass

import msgspec

from eventstore.events import Content, ImagePart

from .errors import EncodingUnavailable, UnknownModel
from .overhead import DEFAULT_FORMAT, OPENAI, Framing, anthropic_image, framing
from .state import Message, Summary
from .tokens import ChatRecipe, counter, encoding_name_for_model

Recount = Callable[[str, Content, str | None], int]


class CharEstimate(ChatRecipe):
    """The chat recipe over characters: a text costs ``ceil(len / chars_per_token)``."""

    def __init__(self, chars_per_token: float, image_tokens: int | None = None) -> None:
        """``image_tokens``: what one image costs, if the provider documents it."""
        self.chars_per_token = chars_per_token
        self.image_tokens = image_tokens

    def count_text(self, text: str) -> int:
        """Tokens of plain text, estimated from its length."""
        return math.ceil(len(text) / self.chars_per_token)

    def count_image(self, part: ImagePart) -> int:
        """The provider's tokens per image, else OpenAI's."""
        return super().count_image(part) if self.image_tokens is None else self.image_tokens


@dataclass(frozen=True)
class Estimate:
    """A provider's documented characters per token, for models named with its prefixes."""

    prefixes: tuple[str, ...]
    chars_per_token: float
    source: str
    image_tokens: int | None = None
    """What one image costs, where the provider documents it (pixels unknown)."""

    def recipe(self) -> CharEstimate:
        """The chat recipe over this estimate."""
        return CharEstimate(self.chars_per_token, self.image_tokens)

    def describe(self) -> str:
        """The estimate in words, with its source."""
        images = "" if self.image_tokens is None else f"; images {self.image_tokens} tokens each"
        return f"characters / {self.chars_per_token:g} ({self.source}{images})"


ESTIMATES = (
    Estimate(
        prefixes=("claude",),
        chars_per_token=3.5,
        source="Anthropic: a Claude token is about 3.5 English characters",
        image_tokens=anthropic_image(),
    ),
    Estimate(
        prefixes=("gemini", "gemma"),
        chars_per_token=4.0,
        source="Google: a Gemini token is about 4 characters",
    ),
)
GENERIC = Estimate(
    prefixes=(),
    chars_per_token=4.0,
    source="OpenAI's rule of thumb: a token is about 4 characters of English text",
)


def estimate_for(model: str | None) -> Estimate:
    """The estimate for a model without a local tokenizer: its provider's, else GENERIC."""
    name = (model or "").lower()
    return next((e for e in ESTIMATES if name.startswith(e.prefixes)), GENERIC)


class Accounting:
    """How one window counts: in ``encoding`` (for an estimate, the stored counts' encoding
    it starts from), ``exact`` or not and why (``reason``, never None when not exact), and
    with which format's ``framing``."""

    def __init__(
        self,
        *,
        encoding: str,
        framing: Framing,
        recount: Recount | None = None,
        estimate: Estimate | None = None,
        reason: str | None = None,
    ) -> None:
        """``recount`` counts a message in ``encoding`` when the stored counts are not in it;
        ``estimate`` makes the counts estimates, explained by ``reason``."""
        if estimate is not None and not reason:
            raise ValueError("an estimate needs its reason")
        self.encoding = encoding
        self.framing = framing
        self.exact = estimate is None
        self.reason = reason
        self._recount = recount
        self._estimate = None if estimate is None else estimate.recipe().count_message
        self.stored = recount is None and estimate is None and framing == OPENAI
        """The stored counts are the window's counts, as they are."""
        self._delta = framing.message(False) - OPENAI.message(False)
        self._named_delta = framing.message(True) - OPENAI.message(True)
        self.reframed = recount is None and estimate is None and framing != OPENAI
        """The window's counts are the stored ones with another format's framing: simple
        arithmetic, done as a window selects (``tokens``) instead of copying each message."""

    def count(self, role: str, content: Content, name: str | None, stored: int) -> int:
        """The window's count of one message whose stored count is ``stored``."""
        tokens = stored if self._recount is None else self._recount(role, content, name)
        if self._estimate is not None:
            tokens = max(tokens, self._estimate(role, content, name))
        return tokens - OPENAI.message(bool(name)) + self.framing.message(bool(name))

    def tokens(self, message: Message) -> int:
        """The window's count of ``message`` when it is only ``reframed``."""
        return message.tokens + (self._named_delta if message.name else self._delta)

    def message(self, message: Message) -> Message:
        """``message`` with the window's count as its ``tokens``."""
        if self.stored:
            return message
        tokens = self.count(message.role, message.content, message.name, message.tokens)
        return msgspec.structs.replace(message, tokens=tokens)

    def summary(self, summary: Summary) -> Summary:
        """``summary`` with the window's count as its ``tokens`` (a system message)."""
        if self.stored:
            return summary
        tokens = self.count("system", summary.text, None, summary.tokens)
        return msgspec.structs.replace(summary, tokens=tokens)


@functools.lru_cache(maxsize=1024)  # model names come from clients: bounded
def accounting(
    model: str | None, encoding: str | None, stored: str, format_name: str = DEFAULT_FORMAT
) -> Accounting:
    """How a window for ``model`` (else ``encoding``, else the stored one) counts, in the
    request format ``format_name``; InvalidCommand for an unknown format."""
    frame = framing(format_name)
    if model is not None:
        try:
            target = encoding_name_for_model(model)
        except UnknownModel:
            return _estimated(model, f"{model} has no local tokenizer", stored, frame)
        missing = f"{model} uses {target}, which ctxlog does not ship"
    else:
        target = encoding or stored
        missing = f"encoding {target!r} is not shipped with ctxlog"
    if target == stored:
        return Accounting(encoding=stored, framing=frame)
    try:
        recount = counter(target).count_message
    except EncodingUnavailable:
        return _estimated(model, missing, stored, frame)
    return Accounting(encoding=target, framing=frame, recount=recount)


def _estimated(model: str | None, why: str, stored: str, frame: Framing) -> Accounting:
    est = estimate_for(model)
    reason = f"{why}; estimated as the larger of {est.describe()} and the {stored} count"
    return Accounting(encoding=stored, framing=frame, estimate=est, reason=reason)
