"""Window answers are kept encoded beside the window they encode (``api/rest/answers.py``):
a repeated read answers the same bytes as encoding the window would, and nothing kept
outlives a change of content: an append, an erasure, a rebuild."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
from aiohttp import web
from aiohttp.test_utils import TestClient

from api import appkeys, create_app, testing
from api.rest import render, wire
from api.rest.answers import WindowAnswers
from api.testing import ApiClient
from projections import Window

CTX = "/api/v1/contexts"


def window(**changes: Any) -> Window:
    base = Window(
        context_id="c", version=3, policy="tokens", max_tokens=100, last_n=None, model=None,
        encoding="cl100k_base", exact=True, entries=(), summary_id=None, total_tokens=0,
        window_hash="h",
    )  # fmt: skip
    return msgspec.structs.replace(base, **changes)


def test_an_answer_is_the_windows_encoding_and_reused_for_that_window_only() -> None:
    answers = WindowAnswers()
    shown = window()
    first = answers.encoded(shown, None, answers.generation)
    assert first == wire.encode(render.window_body(shown, None))
    assert answers.encoded(shown, None, answers.generation) is first
    # An equal window computed again is another object: encoded again, not assumed equal.
    again = window()
    assert answers.encoded(again, None, answers.generation) is not first
    # Each format is its own answer.
    openai = answers.encoded(shown, "openai", answers.generation)
    assert openai == wire.encode(render.window_body(shown, "openai"))


def test_a_window_read_before_a_clear_is_not_kept() -> None:
    answers = WindowAnswers()
    before = answers.generation
    answers.clear()  # an erasure applied while the window was being read
    shown = window()
    body = answers.encoded(shown, None, before)
    assert body == wire.encode(shown)
    assert len(answers) == 0
    answers.encoded(shown, None, answers.generation)
    assert len(answers) == 1
    answers.clear()
    assert len(answers) == 0


def test_answers_are_bounded_by_their_bytes() -> None:
    answers = WindowAnswers(max_bytes=1000)
    windows = [window(context_id=f"c{i}") for i in range(10)]
    size = len(answers.encoded(windows[0], None, answers.generation))
    for shown in windows[1:]:
        answers.encoded(shown, None, answers.generation)
    assert len(answers) == 1000 // size
    # The least recently used went first: the last ones are still there.
    last = answers.encoded(windows[-1], None, answers.generation)
    assert answers.encoded(windows[-1], None, answers.generation) is last


async def test_window_answers_follow_appends_erasures_and_rebuilds(
    aiohttp_client: Any, tmp_path: Path
) -> None:
    app = create_app(testing.settings(str(tmp_path / "answers.db")))
    client: TestClient[web.Request, web.Application] = await aiohttp_client(app)
    api = ApiClient(client, app[appkeys.OPENAPI], "key-alice")
    await api.wait_ready()
    cid = (await api.post(CTX, {}, expect=201)).json["id"]
    secret = {"role": "user", "content": "my secret", "metadata": {"subject": "user-7"}}
    await api.post(f"{CTX}/{cid}/messages", secret, expect=201)
    url = f"{CTX}/{cid}/window?max_tokens=1000"
    first = await api.get(url, expect=200)
    assert (await api.get(url, expect=200)).body == first.body
    assert len(app[appkeys.WINDOW_ANSWERS]) == 1
    assert b"my secret" in first.body
    await api.post(f"{CTX}/{cid}/messages", {"role": "user", "content": "more"}, expect=201)
    after = await api.get(url, expect=200)
    assert b"more" in after.body
    assert after.json["version"] == first.json["version"] + 1
    await api.post("/api/v1/subjects/user-7/erase", expect=200)
    assert len(app[appkeys.WINDOW_ANSWERS]) == 0  # forgotten with the service's caches
    erased = await api.get(url, expect=200)
    assert b"my secret" not in erased.body
    await app[appkeys.CONTEXTS].rebuild()
    assert len(app[appkeys.WINDOW_ANSWERS]) == 0
    assert (await api.get(url, expect=200)).body == erased.body
