"""Many writers on one context (issue 21): appends without a precondition share the
context's turn, join one group commit and take consecutive versions; a command that needs
the context as it is (a delete) still waits for them, and a conflict in the lane (another
process wrote) ends as a retry, never as a caller's error."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from eventstore import EventMetadata, MessageAppended
from projections import Caller, ContextIsDeleted, Contexts, NewMessage
from tests.support.services import running_contexts

ACME = Caller(tenant="acme", actor="alice")
WRITERS = 64


def user(text: str) -> NewMessage:
    return NewMessage(role="user", content=text)


@pytest.fixture
async def svc(tmp_path: Path, readmodel: str) -> AsyncIterator[Contexts]:
    async with running_contexts(str(tmp_path / "log.db"), readmodel) as service:
        yield service


async def test_concurrent_writers_on_one_context_share_commits_and_take_consecutive_versions(
    svc: Contexts,
) -> None:
    cid = (await svc.create(ACME)).context_id
    # A write from elsewhere (as another process's would be: straight to the log), so the
    # writers may start from a version the log has left: that is a retry, not an error.
    elsewhere = MessageAppended(message_id="elsewhere", role="user", content="x")
    await svc.store.append(cid, [elsewhere], 1, metadata=EventMetadata(tenant="acme"))
    before = svc.store.batches
    written = await asyncio.gather(
        *(svc.append(ACME, cid, [user(f"w{i}")]) for i in range(WRITERS))
    )
    assert sorted(w.version for w in written) == list(range(3, 3 + WRITERS))
    # They were not queued one commit each behind the context's turn. (Not asserted on the
    # PostgreSQL read model: each writer's validation there is a round trip on a thread of its
    # own, so they reach the log's writer one by one, not within one turn of the event loop.)
    if not svc.readmodel.shared:
        assert svc.store.batches - before < WRITERS
    state = await svc.get(ACME, cid)
    assert state.version == 2 + WRITERS
    by_version = {m.version: m.content for m in state.messages}
    assert by_version == {2: "x", **{w.version: f"w{i}" for i, w in enumerate(written)}}


async def test_appends_of_several_messages_stay_together_and_a_delete_waits_for_them(
    svc: Contexts,
) -> None:
    cid = (await svc.create(ACME)).context_id
    before = svc.store.batches
    appends = [svc.append(ACME, cid, [user(f"a{i}"), user(f"b{i}")]) for i in range(WRITERS)]
    half = WRITERS // 2
    results = await asyncio.gather(
        *appends[:half], svc.delete(ACME, cid), *appends[half:], return_exceptions=True
    )
    assert svc.store.batches - before < half + 1
    ok = [r for r in results[:half] if not isinstance(r, BaseException)]
    assert sorted(w.version for w in ok) == list(range(3, 3 + 2 * half, 2))
    deleted = results[half]
    assert not isinstance(deleted, BaseException)
    assert deleted.version == 2 + 2 * half
    # The delete took its turn after the appends before it; the ones after it found the
    # context deleted. Nothing else failed: no conflict reached a caller.
    assert all(isinstance(r, ContextIsDeleted) for r in results[half + 1 :])
    state = await svc.get(ACME, cid, version=2 + 2 * half - 1)
    contents = [m.content for m in state.messages]
    for i in range(half):
        at = contents.index(f"a{i}")
        assert contents[at + 1] == f"b{i}"
