"""Whole-context answers (issue 21, issue 15 item 16): ``GET /contexts/{id}`` and a write's
answer copy each message's JSON out of the read model instead of encoding it again; they
must equal, byte for byte, the fold of the log rendered the ordinary way, after edits,
redactions and erasures, and after a rebuild of the read model. Past the response budget
the messages page with a ``next`` link; a fork answers with its head."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient

from api import appkeys, create_app, testing
from api.rest import render, wire
from api.testing import ApiClient, Reply
from projections.context import fold

CTX = "/api/v1/contexts"
TOOLS = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Weather in Paris?", "name": "ann"},
    {"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_1", "type": "function",
         "function": {"name": "weather", "arguments": '{"city":"Paris"}'}}]},
    {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
]  # fmt: skip


async def serve(
    aiohttp_client: Any, tmp_path: Path, **settings: Any
) -> tuple[web.Application, ApiClient]:
    app = create_app(testing.settings(str(tmp_path / "whole.db"), **settings))
    client: TestClient[web.Request, web.Application] = await aiohttp_client(app)
    api = ApiClient(client, app[appkeys.OPENAPI], "key-alice")
    await api.wait_ready()
    return app, api


async def folded(app: web.Application, cid: str, upto: int | None = None) -> bytes:
    """The context as the fold of its events (through version ``upto``), rendered and
    encoded the ordinary way."""
    service = app[appkeys.CONTEXTS]
    events = await service.store.read_stream(cid)
    events = [e for e in events if upto is None or e.version <= upto]
    return wire.encode(render.render_context(fold(events, counter=service.counter)))


async def same_as_fold(app: web.Application, answer: Reply) -> None:
    """A write's or a read's answer is the fold as of the version it names."""
    expected = await folded(app, answer.json["id"], answer.json["version"])
    assert answer.body == expected


async def test_a_whole_context_equals_the_fold_byte_for_byte(
    aiohttp_client: Any, tmp_path: Path
) -> None:
    app, api = await serve(aiohttp_client, tmp_path)
    cid = (await api.post(CTX, {"metadata": {"subject": "ctx-owner", "ü": [1, None]}},
                          expect=201)).json["id"]  # fmt: skip
    await same_as_fold(
        app, await api.post(f"{CTX}/{cid}/messages?format=openai", {"messages": TOOLS}, expect=201)
    )
    odd = 'quotes " and \\ back\\slash, \x01\x1f\x7f control, "é€𝄞" and \u2028 too'
    body = {"messages": [
        {"role": "user", "content": odd, "metadata": {"k": odd, "n": 1.5, "t": True}},
        {"role": "assistant", "content": "to be edited"},
        {"role": "user", "content": "to be redacted"},
        {"role": "user", "content": "to be erased", "metadata": {"subject": "user-42"}},
        {"role": "user", "content": [{"type": "text", "text": "parts"}], "name": 'x"y'},
    ]}  # fmt: skip
    appended_reply = await api.post(f"{CTX}/{cid}/messages", body, expect=201)
    ids = [m["id"] for m in appended_reply.json["messages"]]
    edited = await api.patch(f"{CTX}/{cid}/messages/{ids[-4]}", {"content": "edited ✓"}, expect=200)
    redacted = await api.post(f"{CTX}/{cid}/messages/{ids[-3]}/redact", {}, expect=200)
    tool = ids[3]  # the tool result: its redaction keeps a skeleton
    for answer in (appended_reply, edited, redacted):
        await same_as_fold(app, answer)
    await same_as_fold(app, await api.get(f"{CTX}/{cid}", expect=200))
    await same_as_fold(app, await api.post(f"{CTX}/{cid}/messages/{tool}/redact", {}, expect=200))
    await api.post("/api/v1/subjects/user-42/erase", expect=200)
    now = await api.get(f"{CTX}/{cid}", expect=200)
    expected = await folded(app, cid)
    assert now.body == expected
    assert b"to be erased" not in now.body
    assert b"to be redacted" not in now.body
    assert b"[erased]" in now.body
    # A write's answer is the same assembly, as of its version.
    assert edited.json["messages"][-4]["content"] == "edited ✓"
    assert redacted.json["messages"][-3]["redacted"] is True
    # An append after the erasure: the answer adds to what was read, and holds.
    more = {"role": "user", "content": "after"}
    await same_as_fold(app, await api.post(f"{CTX}/{cid}/messages", more, expect=201))
    await same_as_fold(app, await api.post(f"{CTX}/{cid}/messages", more, expect=201))
    # A rebuilt read model assembles the same bytes.
    expected = await folded(app, cid)
    await app[appkeys.CONTEXTS].rebuild()
    assert (await api.get(f"{CTX}/{cid}", expect=200)).body == expected
    # A rollback rewrites the messages: the next answer does not add to the old ones.
    back = await api.post(f"{CTX}/{cid}/rollback", {"to_version": 3}, expect=200)
    await same_as_fold(app, back)
    await same_as_fold(app, await api.post(f"{CTX}/{cid}/messages", more, expect=201))


async def test_past_the_budget_the_messages_page_and_a_fork_answers_with_its_head(
    aiohttp_client: Any, tmp_path: Path
) -> None:
    _app, api = await serve(aiohttp_client, tmp_path, response_budget_bytes=2_000)
    cid = (await api.post(CTX, {}, expect=201)).json["id"]
    texts = [f"{i:03d} " + "x" * 200 for i in range(30)]
    body = {"messages": [{"role": "user", "content": t} for t in texts]}
    appended = await api.post(f"{CTX}/{cid}/messages", body, expect=201)
    now = await api.get(f"{CTX}/{cid}", expect=200)
    for answer in (appended, now):
        given = [m["content"] for m in answer.json["messages"]]
        assert 0 < len(given) < len(texts)
        assert given == texts[: len(given)]
        assert sum(len(wire.encode(m)) for m in answer.json["messages"]) <= 2_000
        assert answer.headers["Link"] == f'<{answer.json["next"]}>; rel="next"'
    # The next link pages the rest, at the answer's version.
    seen = [m["content"] for m in now.json["messages"]]
    url = now.json["next"]
    await api.post(f"{CTX}/{cid}/messages", {"role": "user", "content": "later"}, expect=201)
    while url is not None:
        page = (await api.get(url, expect=200)).json
        assert page["version"] == now.json["version"]
        seen += [m["content"] for m in page["messages"]]
        url = (
            None
            if page["next_after"] is None
            else (f"{CTX}/{cid}/messages?version={page['version']}&after={page['next_after']}")
        )
    assert seen == texts
    # From history (a past version) and for a replayed write, the same rule: the first
    # messages within the budget, and a link to the rest at that version.
    keyed = {"Idempotency-Key": "again"}
    first = await api.post(f"{CTX}/{cid}/messages", body, headers=keyed, expect=201)
    replayed = await api.post(f"{CTX}/{cid}/messages", body, headers=keyed, expect=201)
    past = await api.get(f"{CTX}/{cid}?version={now.json['version']}", expect=200)
    for answer, version in ((past, now.json["version"]), (replayed, first.json["version"])):
        assert answer.json["version"] == version
        given = [m["content"] for m in answer.json["messages"]]
        assert 0 < len(given) < len(texts)
        assert given == texts[: len(given)]
        assert sum(len(wire.encode(m)) + 1 for m in answer.json["messages"]) <= 2_001
        assert answer.json["next"] == (
            f"/api/v1/contexts/{cid}/messages?version={version}&after={len(given) - 1}&limit=1000"
        )
        assert answer.headers["Link"] == f'<{answer.json["next"]}>; rel="next"'
    assert replayed.json == first.json
    # One message at a time: each answer adds to the one before, and is cut the same way.
    one = (await api.post(CTX, {}, expect=201)).json["id"]
    for i, text in enumerate(texts[:15]):
        answer = await api.post(f"{CTX}/{one}/messages", {"role": "user", "content": text})
        given = [m["content"] for m in answer.json["messages"]]
        assert given == texts[: min(i + 1, len(given))]
        assert sum(len(wire.encode(m)) + 1 for m in answer.json["messages"]) <= 2_001
        assert (answer.json["next"] is None) == (len(given) == i + 1)
    assert answer.json["next"] is not None
    # A fork's answer is its head: no messages, a link to them.
    fork = await api.post(f"{CTX}/{cid}/fork", {"at_version": 31}, expect=201)
    assert fork.json["messages"] == []
    assert fork.json["total_tokens"] > 0
    first = (await api.get(fork.json["next"], expect=200)).json
    assert [m["content"] for m in first["messages"]] == texts
    # Under the default budget (issue 15: 10,000 messages of 500 characters come back
    # whole), nothing pages.
    (tmp_path / "roomy").mkdir()
    _, roomy = await serve(aiohttp_client, tmp_path / "roomy")
    cid = (await roomy.post(CTX, {}, expect=201)).json["id"]
    await roomy.post(f"{CTX}/{cid}/messages", body, expect=201)
    whole = (await roomy.get(f"{CTX}/{cid}", expect=200)).json
    assert len(whole["messages"]) == len(texts)
    assert whole["next"] is None


class _Writer:
    """What ``Pieces.write`` hands the socket, write by write."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []

    async def write(self, chunk: bytes | memoryview) -> None:
        self.writes.append(bytes(chunk))


async def test_a_body_in_pieces_is_sent_in_slices_with_small_pieces_together() -> None:
    big = b"x" * (wire.SLICE * 2 + 5)
    runs = [b'{"a":1}', b'{"b":2}', big, b'{"c":3}']
    pieces = [b'{"messages":[']
    for run in runs:
        pieces += (run, b",")
    pieces[-1] = b"]}"
    writer = _Writer()
    await wire.Pieces(pieces).write(writer)  # type: ignore[arg-type]
    assert b"".join(writer.writes) == b"".join(pieces)
    assert all(len(w) <= wire.SLICE for w in writer.writes)
    # The head, two runs and their commas in one write; the big run in three slices; the
    # comma after it, the last run and the tail in one.
    assert [len(w) for w in writer.writes] == [
        len(b'{"messages":[{"a":1},{"b":2},'),
        wire.SLICE,
        wire.SLICE,
        5,
        len(b',{"c":3}]}'),
    ]
    small = [b"y" * 1000] * (wire.SLICE // 1000 + 10)
    writer = _Writer()
    await wire.Pieces(small).write(writer)  # type: ignore[arg-type]
    assert b"".join(writer.writes) == b"".join(small)
    assert len(writer.writes) == 2  # a slice's worth, then the rest
