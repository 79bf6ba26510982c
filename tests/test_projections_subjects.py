"""What belongs to a data subject (``projections.subjects``): every piece of content of a
subject is sealed with that subject's key, so erasing the subject erases all of it: a
message, its edits, the summaries standing in for it, and the record of a window that
showed it."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from api import appkeys, create_app, testing
from api.testing import ApiClient
from eventstore import (
    ERASED,
    EventStore,
    MessageEdited,
    SummaryAdded,
    ToolCallPart,
    ToolResultPart,
    WindowServed,
)
from projections import Caller, Contexts, NewMessage
from tests.support.clients import AppClient

CTX = "/api/v1/contexts"
ADA = Caller(tenant="acme", actor="ada")


def _log_bytes(db: Path) -> bytes:
    """The log's files (not the read model's), as they are on disk."""
    return b"".join(
        p.read_bytes() for p in db.parent.glob(db.name + "*") if ".readmodel" not in p.name
    )


@pytest.fixture
async def api(aiohttp_client: Any, tmp_path: Path) -> ApiClient:
    app = create_app(testing.settings(str(tmp_path / "ctx.db")))
    client: AppClient = await aiohttp_client(app)
    alice = ApiClient(client, app[appkeys.OPENAPI], "key-alice")
    await alice.wait_ready()
    return alice


async def test_an_edit_of_a_subjects_message_is_erased_with_the_subject(
    api: ApiClient, tmp_path: Path
) -> None:
    """The issue's case: a message naming user-7 in a context without a subject, its content
    replaced by PATCH, then user-7 erased: the edit was sealed with the context's subject
    (none), so it stayed plaintext in the context and in the message.edited event."""
    cid = (await api.post(CTX, {"metadata": {}}, expect=201)).json["id"]
    message = {"role": "user", "content": "first words", "metadata": {"subject": "user-7"}}
    mid = (await api.post(f"{CTX}/{cid}/messages", message, expect=201)).json["messages"][0]["id"]
    await api.post(f"{CTX}/{cid}/messages", {"role": "user", "content": "nobody's"}, expect=201)
    edit = {"content": "user-7 lives at 12 Elm Street"}
    await api.patch(f"{CTX}/{cid}/messages/{mid}", edit, expect=200)
    assert b"12 Elm Street" not in await asyncio.to_thread(_log_bytes, tmp_path / "ctx.db")

    erased = await api.post("/api/v1/subjects/user-7/erase", None, expect=200)
    assert erased.json["contexts"] == [cid]

    got = await api.get(f"{CTX}/{cid}", expect=200)
    assert [m["content"] for m in got.json["messages"]] == [ERASED, "nobody's"]
    events = (await api.get(f"{CTX}/{cid}/events", expect=200)).json["events"]
    edited = [e for e in events if e["type"] == "message.edited"]
    assert [e["data"]["content"] for e in edited] == [ERASED]
    assert "Elm Street" not in str(events)
    found = await api.get("/api/v1/events?type=message.edited", expect=200)
    assert "Elm Street" not in str(found.json)


async def test_a_summary_of_several_subjects_is_erased_with_any_of_them(tmp_path: Path) -> None:
    """A summary stands in for messages of user-7 and user-8 in a context of subject team-1:
    it is sealed under all three keys, so erasing any one of them erases it; a summary of
    messages without a subject, in a context without one, is not sealed at all."""
    db = tmp_path / "log.db"
    store = await EventStore.open_url(str(db))
    service = Contexts(store)
    try:
        await service.start()
        texts = {}
        for erase in ("user-7", "user-8", "team-1"):
            cid = (await service.create(ADA, metadata={"subject": "team-1"})).context_id
            await service.append(ADA, cid, [
                NewMessage(role="user", content="seven", metadata={"subject": "user-7"}),
                NewMessage(role="user", content="eight", metadata={"subject": "user-8"}),
            ])  # fmt: skip
            through = (await service.get(ADA, cid)).messages[-1].message_id
            texts[erase] = f"summary erased with {erase}"
            await service.add_summary(ADA, cid, texts[erase], through)
            assert texts[erase].encode() not in await asyncio.to_thread(_log_bytes, db)
            await service.erase(ADA, erase)
            state = await service.get(ADA, cid)
            assert [s.text for s in state.summaries] == [ERASED]
            events = [rec.event async for rec in store.iter_stream(cid)]
            assert [e.text for e in events if isinstance(e, SummaryAdded)] == [ERASED]
            assert state.summaries[0].subjects == ("team-1", "user-7", "user-8")

        plain = (await service.create(ADA)).context_id
        await service.append(ADA, plain, [NewMessage(role="user", content="no one's")])
        through = (await service.get(ADA, plain)).messages[0].message_id
        await service.add_summary(ADA, plain, "a summary of no one", through)
        assert b"a summary of no one" in await asyncio.to_thread(_log_bytes, db)
    finally:
        await service.close()
        await store.close()


async def test_a_served_windows_digest_is_sealed_and_erased(tmp_path: Path) -> None:
    """``window.served`` records a sha256 of the content the model saw: a fingerprint anyone
    could check a guess against, so it is sealed with the shown subjects' keys and reads
    "[erased]" after the erasure; the message ids stay (they are not content)."""
    db = tmp_path / "log.db"
    store = await EventStore.open_url(str(db))
    service = Contexts(store)
    try:
        await service.start()
        cid = (await service.create(ADA)).context_id
        await service.append(ADA, cid, [
            NewMessage(role="user", content="mine", metadata={"subject": "user-7"}),
            NewMessage(role="user", content="no one's"),
        ])  # fmt: skip
        window = await service.window(ADA, cid, max_tokens=1000, record=True)
        served = [rec async for rec in store.iter_stream(cid)][-1]
        assert isinstance(served.event, WindowServed)
        assert served.event.window_hash == window.window_hash
        assert window.window_hash.encode() not in await asyncio.to_thread(_log_bytes, db)

        await service.erase(ADA, "user-7")
        served = [rec async for rec in store.iter_stream(cid)][-2]
        assert isinstance(served.event, WindowServed)
        assert served.event.window_hash == ERASED
        assert served.event.message_ids == window.message_ids
        assert [ref.subject for ref in served.sealed_by] == ["user-7"]
    finally:
        await service.close()
        await store.close()


async def test_an_edit_keeps_the_subject_the_message_was_sealed_under(tmp_path: Path) -> None:
    """A message sealed under its context's subject stays that subject's after the context's
    subject changes: its edits are sealed under the same key, erased with it."""
    store = await EventStore.open_url(str(tmp_path / "log.db"))
    service = Contexts(store)
    try:
        await service.start()
        cid = (await service.create(ADA, metadata={"subject": "user-7"})).context_id
        await service.append(ADA, cid, [NewMessage(role="user", content="seven's")])
        mid = (await service.get(ADA, cid)).messages[0].message_id
        await service.update_metadata(ADA, cid, {"subject": "user-8"})
        await service.edit(ADA, cid, mid, "seven's, edited")
        await service.erase(ADA, "user-7")
        assert [m.content for m in (await service.get(ADA, cid)).messages] == [ERASED]
        edit = [rec async for rec in store.iter_stream(cid)][3]
        assert isinstance(edit.event, MessageEdited)
        assert edit.event.content == ERASED
        assert [ref.subject for ref in edit.sealed_by] == ["user-7"]
    finally:
        await service.close()
        await store.close()


async def test_tool_calls_and_results_in_content_are_sealed_and_erased(tmp_path: Path) -> None:
    """Tool call arguments and tool results are content parts: sealed with the message, so
    erased with it; the message's own ``name`` is not content (it stays, as metadata does)."""
    db = tmp_path / "log.db"
    store = await EventStore.open_url(str(db))
    service = Contexts(store)
    try:
        await service.start()
        cid = (await service.create(ADA, metadata={"subject": "user-7"})).context_id
        call = ToolCallPart(id="c1", name="lookup", arguments={"address": "12 Elm Street"})
        result = ToolResultPart(call_id="c1", content="user-7 owes 40 dollars")
        await service.append(ADA, cid, [
            NewMessage(role="assistant", content=[call], name="planner"),
            NewMessage(role="tool", content=[result]),
        ])  # fmt: skip
        files = await asyncio.to_thread(_log_bytes, db)
        assert b"Elm Street" not in files
        assert b"40 dollars" not in files
        await service.erase(ADA, "user-7")
        state = await service.get(ADA, cid)
        assert [(m.content, m.name) for m in state.messages] == [
            (ERASED, "planner"), (ERASED, None)
        ]  # fmt: skip
    finally:
        await service.close()
        await store.close()
