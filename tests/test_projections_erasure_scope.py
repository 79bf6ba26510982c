"""An erasure finds every context that ever held the subject's content (by the keys that
sealed it, not by metadata that may have changed), and no cache outlives it; one cut short
is completed at the next start or by erasing again."""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from pathlib import Path
from typing import Any

import pytest

from eventstore import ERASED, DuplicateEventId, EventMetadata, EventStore, SubjectErased
from projections import Caller, Contexts, NewMessage
from projections.erasure import Erased
from projections.errors import ProjectorBehind
from projections.readmodel import ReadModel
from projections.runner import Projector
from tests.conftest import PG_DSN

ADA = Caller(tenant="acme", actor="ada")
SECRET = "ada-lives-at-42-secret-street"


async def test_an_erase_finds_a_context_that_no_longer_names_the_subject(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The subject is removed from the context's metadata before the erase; a window is read
    (and cached) before it and again while the erasure rebuilds the read model: the context
    records the erasure, and no window, state or past version shows the content after."""
    store = await EventStore.open_url(str(tmp_path / "log.db"))
    service = Contexts(store)
    try:
        await service.start()
        cid = (await service.create(ADA, metadata={"subject": "ada"})).context_id
        await service.append(ADA, cid, [NewMessage(role="user", content=SECRET)])
        await service.update_metadata(ADA, cid, {"subject": None})
        assert SECRET in str(await service.window(ADA, cid, max_tokens=1000))
        assert isinstance(service.readmodel, ReadModel)
        adopt = service.readmodel.adopt
        during: list[str] = []

        async def adopt_after_a_read(fresh: Any) -> int:  # a reader in the middle of it
            during.append(str(await service.window(ADA, cid, max_tokens=1000)))
            return await adopt(fresh)

        monkeypatch.setattr(service.readmodel, "adopt", adopt_after_a_read)
        done = await service.erase(ADA, "ada")
        assert during
        window = str(await service.window(ADA, cid, max_tokens=1000))
        assert SECRET not in window
        assert ERASED in window
        assert [m.content for m in (await service.get(ADA, cid)).messages] == [ERASED]
        assert [m.content for m in (await service.get(ADA, cid, version=2)).messages] == [ERASED]
        assert done.contexts == [cid]
        events = [rec.event async for rec in store.iter_stream(cid)]
        assert isinstance(events[-1], SubjectErased)
    finally:
        await service.close()
        await store.close()


async def _erased_key_left_unrecorded(db: Path) -> str:
    """A context of ada's, then an erasure cut off right after destroying the key (the
    process died before recording it): returns the context's id."""
    store = await EventStore.open_url(str(db))
    service = Contexts(store)
    try:
        await service.start()
        cid = (await service.create(ADA, metadata={"subject": "ada"})).context_id
        await service.append(ADA, cid, [NewMessage(role="user", content=SECRET)])
        assert SECRET in str(await service.get(ADA, cid))
    finally:
        await service.close()
    try:
        assert await store.erase_subject("acme", "ada") == 1  # and nothing more
    finally:
        await store.close()
    return cid


async def test_an_erasure_cut_short_is_forgotten_at_start_and_recorded_by_erasing_again(
    tmp_path: Path,
) -> None:
    db = tmp_path / "log.db"
    cid = await _erased_key_left_unrecorded(db)
    store = await EventStore.open_url(str(db))
    service = Contexts(store)
    try:
        await service.start()  # finds the key missing: the read model forgets at once
        assert [m.content for m in (await service.get(ADA, cid)).messages] == [ERASED]
        done = await service.erase(ADA, "ada")
        assert done == Erased(subject="ada", tenant="acme", keys_destroyed=0, contexts=[cid])
        events = [rec.event async for rec in store.iter_stream(cid)]
        assert isinstance(events[-1], SubjectErased)
        assert events[-1].key_ids  # the key the cut-off erasure destroyed
        again = await service.erase(ADA, "ada")  # now complete: nothing more to record
        assert again.contexts == [cid]
        assert len([rec async for rec in store.iter_stream(cid)]) == len(events)
    finally:
        await service.close()
        await store.close()
    readmodel = sqlite3.connect(f"{db}.readmodel")
    try:
        assert not readmodel.execute(
            "SELECT count(*) FROM messages WHERE content LIKE ?", (f"%{SECRET}%",)
        ).fetchone()[0]
    finally:
        readmodel.close()


@pytest.mark.skipif(PG_DSN is None, reason="set CTXLOG_TEST_PG_DSN to run PostgreSQL tests")
async def test_an_erase_on_postgres_reaches_another_server(tmp_path: Path) -> None:
    """With PostgreSQL the servers share one read model: the elected projector forgets, and
    the other server's caches forget when it sees the erasure go by."""
    url = f"{PG_DSN}?schema=erase_{uuid.uuid4().hex[:8]}"
    stores = [await EventStore.open_url(url) for _ in range(2)]
    one, two = (Contexts(store, poll_interval=0.05) for store in stores)
    try:
        for service in (one, two):
            await service.start()
        cid = (await one.create(ADA, metadata={"subject": "ada"})).context_id
        await one.append(ADA, cid, [NewMessage(role="user", content=SECRET)])
        mid = (await one.get(ADA, cid)).messages[0].message_id
        await one.add_summary(ADA, cid, f"summary {SECRET}", mid)
        fork = (await one.fork(ADA, cid)).context_id
        await two.projector.catch_up()
        assert SECRET in str(await two.get(ADA, fork))
        assert (await two.search(ADA, "secret")).hits
        done = await one.erase(ADA, "ada")
        assert sorted(done.contexts) == sorted([cid, fork])
        for service in (one, two):
            async with asyncio.timeout(30):
                while SECRET in str(await service.get(ADA, cid)):  # noqa: ASYNC110
                    await asyncio.sleep(0.05)
            for context_id in (cid, fork):
                state = await service.get(ADA, context_id)
                assert [m.content for m in state.messages] == [ERASED]
                past = 1 if context_id == fork else 2
                assert SECRET not in str(await service.get(ADA, context_id, version=past))
                assert SECRET not in str(await service.window(ADA, context_id, max_tokens=500))
            assert not (await service.search(ADA, "secret")).hits
    finally:
        for service in (one, two):
            await service.close()
        recorder: Any = stores[0].recorder
        async with recorder._connection() as conn:
            await conn.execute(f"DROP SCHEMA {recorder.schema} CASCADE")
            await conn.execute(f"DROP SCHEMA IF EXISTS {recorder.schema}_readmodel CASCADE")
        for store in stores:
            await store.close()


async def test_a_keyed_retry_after_its_subject_was_erased_replays(tmp_path: Path) -> None:
    """A command retried with its Idempotency-Key after the subject was erased: its content
    is sealed with the subject's new key now, so the bytes differ from what was stored; it
    is still the same command, answered with its first result, and nothing is written.
    (What the destroyed key sealed cannot be compared any more: the rest of the event is.)"""
    store = await EventStore.open_url(str(tmp_path / "log.db"))
    service = Contexts(store)
    try:
        await service.start()
        cid = (await service.create(ADA, metadata={"subject": "ada"})).context_id
        message = [NewMessage(role="user", content=SECRET)]
        first = await service.append(ADA, cid, message, idempotency_key="k1")
        mid = (await service.get(ADA, cid)).messages[0].message_id
        edited = await service.edit(ADA, cid, mid, f"{SECRET}, edited", idempotency_key="k2")
        await service.erase(ADA, "ada")
        head = await store.head()
        again = await service.append(ADA, cid, message, idempotency_key="k1")
        assert (again.duplicate, again.version) == (True, first.version)
        edit = await service.edit(ADA, cid, mid, f"{SECRET}, edited", idempotency_key="k2")
        assert (edit.duplicate, edit.version) == (True, edited.version)
        assert await store.head() == head
        await service.append(ADA, cid, [NewMessage(role="user", content="another")])
        other = (await service.get(ADA, cid)).messages[1].message_id
        with pytest.raises(DuplicateEventId):  # the same key for another message: refused
            await service.edit(ADA, cid, other, f"{SECRET}, edited", idempotency_key="k2")
    finally:
        await service.close()
        await store.close()


async def test_a_write_during_an_erasure_reads_its_own_write_after_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While an erasure rebuilds the read model the projector is stopped: a command's read of
    its own write waits for the new read model (it used to fail, after writing)."""
    store = await EventStore.open_url(str(tmp_path / "log.db"))
    service = Contexts(store)
    try:
        await service.start()
        cid = (await service.create(ADA, metadata={"subject": "ada"})).context_id
        await service.append(ADA, cid, [NewMessage(role="user", content=SECRET)])
        other = (await service.create(ADA)).context_id
        assert isinstance(service.readmodel, ReadModel)
        adopt, held = service.readmodel.adopt, asyncio.Event()

        async def adopt_when_let(fresh: Any) -> int:
            await held.wait()
            return await adopt(fresh)

        monkeypatch.setattr(service.readmodel, "adopt", adopt_when_let)
        erasing = asyncio.create_task(service.erase(ADA, "ada"))
        async with asyncio.timeout(30):  # until the erasure's rebuild stopped the projector
            while service.projector.running:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
        await service.append(ADA, other, [NewMessage(role="user", content="meanwhile")])
        reading = asyncio.create_task(service.get(ADA, other))
        await asyncio.sleep(0.05)  # the read is waiting for the read model, not failing
        assert not reading.done()
        held.set()
        assert [m.content for m in (await reading).messages] == ["meanwhile"]
        await erasing
    finally:
        await service.close()
        await store.close()


async def test_a_keyed_retry_is_sealed_for_the_subjects_of_its_first_attempt(
    tmp_path: Path,
) -> None:
    """The retry of an edit whose message was rolled away since: the message's subject is no
    longer in the read model, yet the retry is sealed for the subject the first attempt was
    (and its subject was erased meanwhile too): it replays."""
    store = await EventStore.open_url(str(tmp_path / "log.db"))
    service = Contexts(store)
    try:
        await service.start()
        cid = (await service.create(ADA, metadata={"subject": "team"})).context_id
        own = NewMessage(role="user", content=SECRET, metadata={"subject": "ada"})
        await service.append(ADA, cid, [own])
        mid = (await service.get(ADA, cid)).messages[0].message_id
        edited = await service.edit(ADA, cid, mid, f"{SECRET}, edited", idempotency_key="e1")
        await service.rollback(ADA, cid, 1)  # the message is gone from the context
        await service.erase(ADA, "ada")
        again = await service.edit(ADA, cid, mid, f"{SECRET}, edited", idempotency_key="e1")
        assert (again.duplicate, again.version) == (True, edited.version)
    finally:
        await service.close()
        await store.close()


async def test_an_erasure_applied_but_not_yet_forgotten_is_forgotten_at_the_next_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The process dies after its projector applied the subject.erased events and before it
    folded the contexts again: the next start still forgets the content."""
    db = tmp_path / "log.db"
    store = await EventStore.open_url(str(db))
    service = Contexts(store)
    try:
        await service.start()
        cid = (await service.create(ADA, metadata={"subject": "ada"})).context_id
        await service.append(ADA, cid, [NewMessage(role="user", content=SECRET)])

        async def dies(*args: Any, **kwargs: Any) -> None:
            raise RuntimeError("killed")

        monkeypatch.setattr(Projector, "_refold", dies)
        # The projector retries a batch that failed; the erase waiting on it is told so.
        with pytest.raises(ProjectorBehind):
            await service.erase(ADA, "ada")
    finally:
        await service.close()
        await store.close()
    monkeypatch.undo()
    store = await EventStore.open_url(str(db))
    service = Contexts(store)
    try:
        await service.start()
        assert [m.content for m in (await service.get(ADA, cid)).messages] == [ERASED]
    finally:
        await service.close()
        await store.close()


async def test_a_key_destroyed_while_a_rebuild_replays_is_forgotten(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rebuild reads the subject's content while its key still exists; then the key is
    destroyed and the erasure recorded (by another request, or another process), and the
    replay reads that too: the new read model must not keep what it opened before."""
    store = await EventStore.open_url(str(tmp_path / "log.db"))
    service = Contexts(store)
    try:
        await service.start()
        cid = (await service.create(ADA, metadata={"subject": "ada"})).context_id
        await service.append(ADA, cid, [NewMessage(role="user", content=SECRET)])
        await service.append(ADA, cid, [NewMessage(role="user", content=f"{SECRET} again")])
        read_all, erased = store.read_all, False

        async def read_all_then_erase(*args: Any, **kwargs: Any) -> Any:
            nonlocal erased
            page = await read_all(*args, **kwargs)
            if not erased and any(SECRET in str(rec.event) for rec in page[0]):
                erased = True
                key_ids = await store.destroy_subject_key("acme", "ada")
                meta = EventMetadata(tenant="acme", actor="ada")
                erasure = SubjectErased(subject="ada", key_ids=key_ids)
                await store.append(cid, [erasure], metadata=meta)
            return page

        monkeypatch.setattr(store, "read_all", read_all_then_erase)
        await service.projector.rebuild(batch_size=2)
        monkeypatch.undo()
        assert erased
        state = await service.get(ADA, cid)
        assert isinstance([rec async for rec in store.iter_stream(cid)][-1].event, SubjectErased)
        assert [m.content for m in state.messages] == [ERASED, ERASED]
    finally:
        await service.close()
        await store.close()
