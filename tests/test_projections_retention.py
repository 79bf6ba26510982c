"""Retention on a clock the test controls: contexts of a policy's tenant idle longer than its
days are deleted (a tombstone by ``ctxlog-retention``), their subjects erased when the policy
says so and only when no context outside the policy holds them; the erased content is gone
from the files; everything else is left exactly as it was; a second run does nothing."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from eventstore import ERASED, ContextDeleted, EventStore, SubjectErased
from projections import Caller, Contexts, NewMessage
from projections.retention import ACTOR, Retention, RetentionPolicy
from tests.support.aged import DAY, Story, files_holding, recorded_at

ACME = Caller(tenant="acme", actor="ada")
GLOBEX = Caller(tenant="globex", actor="gus")
NOW = time.time()
OLD = NOW - 40 * DAY
SECRET_OLD = "old-secret-content-5e1d"
SECRET_SHARED = "shared-secret-content-77aa"
SECRET_RECENT = "recent-secret-content-2b9c"
POLICY = RetentionPolicy(tenant="acme", idle_days=30, erase=True)


async def tell(service: Contexts, monkeypatch: pytest.MonkeyPatch) -> Story:
    story = Story()

    async def context(caller: Caller, content: str, subject: str | None = None) -> str:
        metadata = {"subject": subject} if subject else {}
        cid = (await service.create(caller, metadata=metadata)).context_id
        await service.append(caller, cid, [NewMessage(role="user", content=content)])
        return cid

    with recorded_at(monkeypatch, OLD):
        story.old = await context(ACME, SECRET_OLD, "u-old")
        story.shared = await context(ACME, SECRET_SHARED, "u-shared")
        story.plain = await context(ACME, "plain old text")
        story.gone = await context(ACME, "deleted by hand")
        await service.delete(ACME, story.gone)
        story.other = await context(GLOBEX, "globex's old text", "u-old")
    story.recent = await context(ACME, SECRET_RECENT, "u-shared")
    return story


@pytest.fixture
async def service(tmp_path: Path) -> AsyncIterator[Contexts]:
    store = await EventStore.open_url(str(tmp_path / "r.db"))
    svc = Contexts(store)
    await svc.start()
    yield svc
    await svc.close()
    await store.close()


async def events(service: Contexts, cid: str) -> list[object]:
    return list(await service.store.read_stream(cid))


async def test_a_plan_lists_what_a_policy_takes_and_changes_nothing(
    service: Contexts, monkeypatch: pytest.MonkeyPatch
) -> None:
    story = await tell(service, monkeypatch)
    head = await service.store.head()
    plan = await Retention(service, clock=lambda: NOW).plan(POLICY)
    assert [item.context_id for item in plan.delete] == [story.old, story.shared, story.plain]
    assert plan.erase == ["u-old"]
    assert [(k.subject, k.outside) for k in plan.kept] == [("u-shared", [story.recent])]
    assert await service.store.head() == head
    # On a clock 11 days later the recent context is idle too, and u-shared goes with it.
    later = await Retention(service, clock=lambda: NOW + 31 * DAY).plan(POLICY)
    assert {item.context_id for item in later.delete} == {
        story.old, story.shared, story.plain, story.recent,
    }  # fmt: skip
    assert later.erase == ["u-old", "u-shared"]
    # Without erase, nothing is to be erased; with a longer idle time, nothing is idle.
    assert not (await Retention(service, clock=lambda: NOW).plan(
        RetentionPolicy(tenant="acme", idle_days=30)
    )).erase  # fmt: skip
    long = RetentionPolicy(tenant="acme", idle_days=50, erase=True)
    assert not (await Retention(service, clock=lambda: NOW).plan(long)).delete


async def test_applying_deletes_erases_and_touches_nothing_else(
    service: Contexts, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    story = await tell(service, monkeypatch)
    untouched = {cid: await events(service, cid) for cid in (story.recent, story.gone, story.other)}
    done = await Retention(service, clock=lambda: NOW).apply(POLICY)
    assert done.deleted == [story.old, story.shared, story.plain]
    assert [e.subject for e in done.erased] == ["u-old"]
    assert done.erased[0].keys_destroyed == 1
    for cid in done.deleted:
        last = await service.store.read_stream(cid, backward=True, limit=2)
        tombstone = next(r for r in last if isinstance(r.event, ContextDeleted))
        assert tombstone.metadata.actor == ACTOR
        assert isinstance(tombstone.event, ContextDeleted)
        assert "retention" in (tombstone.event.reason or "")
    old = await service.store.read_stream(story.old)
    assert any(isinstance(r.event, SubjectErased) for r in old)
    contents = [r.event.content for r in old if hasattr(r.event, "content")]
    assert contents == [ERASED]
    # Outside the policy: another tenant (same subject name), a recent context, a context a
    # user deleted, and the content of a subject still in use are exactly as they were.
    for cid, before in untouched.items():
        assert await events(service, cid) == before
    assert (await service.get(GLOBEX, story.other)).messages[0].content == "globex's old text"
    shared = await service.store.read_stream(story.shared)
    assert [r.event.content for r in shared if hasattr(r.event, "content")] == [SECRET_SHARED]
    # In the files: u-old's key is gone from the key table, its content from every file
    # (the log holds it sealed; the read model was rebuilt without it).
    db = Path(service.store.recorder.path)  # type: ignore[attr-defined]
    with sqlite3.connect(db) as conn:
        subjects = {row[0] for row in conn.execute("SELECT subject FROM subject_keys")}
    assert "u-old" in subjects  # globex's u-old is another tenant's subject, kept
    with sqlite3.connect(db) as conn:
        acme = {
            row[0] for row in conn.execute("SELECT subject FROM subject_keys WHERE tenant = 'acme'")
        }
    assert acme == {"u-shared"}
    # The read model was rebuilt into a new file without it; the log holds it sealed.
    assert files_holding(tmp_path, SECRET_OLD) == []
    assert files_holding(tmp_path, SECRET_SHARED) == ["r.db.readmodel"]  # still in use
    # A second run finds nothing more to do.
    again = await Retention(service, clock=lambda: NOW).apply(POLICY)
    assert (again.deleted, again.erased, again.plan.delete) == ([], [], [])


async def test_a_context_written_to_after_the_plan_is_skipped(
    service: Contexts, monkeypatch: pytest.MonkeyPatch
) -> None:
    story = await tell(service, monkeypatch)
    keeper = Retention(service, clock=lambda: NOW)
    real_plan = keeper.plan

    async def plan_then_write(policy: RetentionPolicy):  # type: ignore[no-untyped-def]
        planned = await real_plan(policy)
        await service.append(ACME, story.plain, [NewMessage(role="user", content="I'm back")])
        return planned

    monkeypatch.setattr(keeper, "plan", plan_then_write)
    done = await keeper.apply(POLICY)
    assert done.skipped == [story.plain]
    assert not (await service.get(ACME, story.plain)).deleted


async def test_an_open_server_policy_takes_contexts_without_a_tenant(
    service: Contexts, monkeypatch: pytest.MonkeyPatch
) -> None:
    with recorded_at(monkeypatch, OLD):
        cid = (await service.create(Caller())).context_id
        other = (await service.create(ACME)).context_id
    done = await Retention(service, clock=lambda: NOW).apply(
        RetentionPolicy(tenant="", idle_days=1)
    )
    assert done.deleted == [cid]
    assert not (await service.get(ACME, other)).deleted
