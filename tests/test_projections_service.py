"""The Contexts service: commands, typed errors, tenant isolation, idempotency, queries."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from eventstore import (
    ContextForked,
    DuplicateEventId,
    EventStore,
    RecordedEvent,
    VersionConflict,
    WindowSettings,
)
from projections import (
    Caller,
    ContextIsDeleted,
    ContextNotFound,
    Contexts,
    DuplicateMessage,
    InvalidCommand,
    InvalidVersion,
    MessageNotFound,
    NewMessage,
    window,
)
from tests.support.services import running_contexts

ACME = Caller(tenant="acme", actor="alice")
OTHER = Caller(tenant="other", actor="mallory")


def user(text: str, message_id: str | None = None) -> NewMessage:
    return NewMessage(role="user", content=text, message_id=message_id)


@pytest.fixture
async def svc(readmodel: str) -> AsyncIterator[Contexts]:
    async with running_contexts(":memory:", readmodel, snapshot_every=4) as service:
        yield service


async def test_commands_read_their_own_writes(svc: Contexts) -> None:
    assert svc.ready
    cid = (await svc.create(ACME, metadata={"app": "x"})).context_id
    written = await svc.append(ACME, cid, [user("hi", "m1"), user("there")])
    assert written.version == 3
    assert len(written.message_ids) == 2
    assert written.message_ids[0] == "m1"
    await svc.edit(ACME, cid, "m1", "hello")
    await svc.update_metadata(ACME, cid, {"app": None, "k": "v"})
    await svc.configure_window(ACME, cid, WindowSettings(max_tokens=100))
    await svc.add_summary(ACME, cid, "greeting", "m1")
    state = await svc.get(ACME, cid)
    assert state.version == 7
    assert [m.content for m in state.messages] == ["hello", "there"]
    assert state.metadata == {"k": "v"}
    assert state.window.max_tokens == 100
    assert state.tenant == "acme"
    assert state.summaries[0].through_message_id == "m1"
    await svc.redact(ACME, cid, "m1", reason="pii")
    assert (await svc.get(ACME, cid)).messages[0].redacted


async def test_typed_errors(svc: Contexts) -> None:
    cid = (await svc.create(ACME)).context_id
    await svc.append(ACME, cid, [user("a", "m1")])
    with pytest.raises(ContextNotFound):
        await svc.append(ACME, "nope", [user("x")])
    with pytest.raises(DuplicateMessage):
        await svc.append(ACME, cid, [user("again", "m1")])
    with pytest.raises(InvalidCommand):
        await svc.append(ACME, cid, [user("x", "m9"), user("y", "m9")])
    with pytest.raises(MessageNotFound):
        await svc.edit(ACME, cid, "m2", "x")
    with pytest.raises(InvalidVersion):
        await svc.rollback(ACME, cid, 9)
    with pytest.raises(InvalidCommand):
        await svc.configure_window(ACME, cid, WindowSettings(max_tokens=0))
    with pytest.raises(VersionConflict):
        await svc.append(ACME, cid, [user("x")], expected_version=1)
    await svc.redact(ACME, cid, "m1")
    with pytest.raises(InvalidCommand):
        await svc.edit(ACME, cid, "m1", "unredact me")
    with pytest.raises(InvalidVersion):
        await svc.get(ACME, cid, version=99)
    await svc.delete(ACME, cid)
    with pytest.raises(ContextIsDeleted):
        await svc.append(ACME, cid, [user("x")])
    with pytest.raises(ContextIsDeleted):
        await svc.get(ACME, cid)
    with pytest.raises(ContextIsDeleted):
        await svc.window(ACME, cid)
    assert len((await svc.get(ACME, cid, version=2)).messages) == 1  # the past stays readable


async def test_expected_version_is_honoured(svc: Contexts) -> None:
    cid = (await svc.create(ACME)).context_id
    written = await svc.append(ACME, cid, [user("a")], expected_version=1)
    assert written.version == 2


async def test_another_tenant_sees_nothing(svc: Contexts) -> None:
    cid = (await svc.create(ACME, metadata={"k": "v"})).context_id
    await svc.append(ACME, cid, [user("secret", "m1")])
    for call in (
        svc.get(OTHER, cid),
        svc.append(OTHER, cid, [user("x")]),
        svc.edit(OTHER, cid, "m1", "x"),
        svc.window(OTHER, cid),
        svc.history(OTHER, cid),
        svc.fork(OTHER, cid),
        svc.lineage(OTHER, cid),
        svc.diff(OTHER, cid, 1),
        svc.get(OTHER, cid, version=1),
    ):
        with pytest.raises(ContextNotFound):
            await call
    assert (await svc.list(OTHER)).contexts == []
    await svc.fork(ACME, cid)
    assert len((await svc.list(ACME)).contexts) == 2


async def test_idempotency_keys_make_retries_durable(tmp_path: Path) -> None:
    path = str(tmp_path / "log.db")
    store = await EventStore.open_sqlite(path)
    svc = Contexts(store)
    await svc.start()
    first = await svc.create(ACME, idempotency_key="c1")
    again = await svc.create(ACME, idempotency_key="c1")
    assert again.context_id == first.context_id
    assert again.duplicate
    cid = first.context_id
    sent = await svc.append(ACME, cid, [user("hi")], idempotency_key="k1")
    await svc.close()
    await store.close()

    store = await EventStore.open_sqlite(path)  # a restart between the try and the retry
    svc = Contexts(store)
    await svc.start()
    try:
        retried = await svc.append(ACME, cid, [user("hi")], idempotency_key="k1")
        assert retried.duplicate
        assert retried.positions == sent.positions
        assert retried.message_ids == sent.message_ids
        assert len((await svc.get(ACME, cid)).messages) == 1
        with pytest.raises(DuplicateEventId):
            await svc.append(ACME, cid, [user("something else")], idempotency_key="k1")
        # The same key from another tenant is another key.
        other = await svc.create(OTHER, idempotency_key="c1")
        assert other.context_id != cid
        assert not other.duplicate
    finally:
        await svc.close()
        await store.close()


async def test_window_matches_the_pure_window_and_can_be_recorded(svc: Contexts) -> None:
    cid = (await svc.create(ACME)).context_id
    await svc.append(ACME, cid, [NewMessage(role="system", content="be brief")])
    await svc.append(ACME, cid, [user(f"message number {i}", f"m{i}") for i in range(30)])
    await svc.add_summary(ACME, cid, "the start", "m9")
    state = await svc.get(ACME, cid)
    for budget in (None, 20, 80, 200):
        assert await svc.window(ACME, cid, max_tokens=budget) == window(state, budget)
    assert await svc.window(ACME, cid, policy="last_n", last_n=3) == window(
        state, policy="last_n", last_n=3
    )
    served = await svc.window(ACME, cid, max_tokens=80, record=True)
    (last,) = await svc.history(ACME, cid, backward=True, limit=1)
    assert last.type == "window.served"
    assert last.version == served.version + 1
    assert last.event.window_hash == served.window_hash  # type: ignore[union-attr]
    assert last.event.message_ids == served.message_ids  # type: ignore[union-attr]


async def test_time_travel_diff_fork_and_lineage(svc: Contexts) -> None:
    cid = (await svc.create(ACME)).context_id
    for i in range(10):
        await svc.append(ACME, cid, [user(f"m{i}", f"m{i}")])
    mid = await svc.get(ACME, cid)
    await svc.edit(ACME, cid, "m1", "edited")
    await svc.rollback(ACME, cid, 5)
    assert [m.message_id for m in (await svc.get(ACME, cid)).messages] == [
        "m0", "m1", "m2", "m3",
    ]  # fmt: skip
    assert await svc.get(ACME, cid, version=mid.version) == mid
    assert (await svc.get(ACME, cid, at=mid.updated_at)).version == mid.version
    changes = await svc.diff(ACME, cid, mid.version, mid.version + 1)
    assert changes.edited == ("m1",)
    fork = (await svc.fork(ACME, cid, at_version=3, metadata={"branch": "b"})).context_id
    await svc.append(ACME, fork, [user("new in fork", "f1")])
    grand = (await svc.fork(ACME, fork)).context_id
    lineage = await svc.lineage(ACME, grand)
    assert lineage.ancestors == [(fork, 2), (cid, 3)]
    assert (await svc.lineage(ACME, cid)).forks == [(fork, 3)]
    vs_parent = await svc.diff_parent(ACME, fork, parent_version=3)
    assert vs_parent.added == ("f1",)
    assert [c.path for c in vs_parent.metadata] == ["/branch"]
    assert (await svc.get(ACME, fork)).metadata == {"branch": "b"}
    with pytest.raises(InvalidCommand):
        await svc.diff_parent(ACME, cid)


async def test_list_pages_newest_first_with_metadata_filters(svc: Contexts) -> None:
    ids = [
        (await svc.create(ACME, metadata={"n": i, "team": "red" if i % 2 else "blue"})).context_id
        for i in range(5)
    ]
    page = await svc.list(ACME, limit=2)
    assert [c.context_id for c in page.contexts] == ids[:2:-1][:2]
    assert page.next_cursor is not None
    rest = await svc.list(ACME, limit=10, cursor=page.next_cursor)
    assert [c.context_id for c in rest.contexts] == ids[2::-1]
    assert rest.next_cursor is None
    red = await svc.list(ACME, metadata={"team": "red"})
    assert [c.context_id for c in red.contexts] == [ids[3], ids[1]]
    assert [c.context_id for c in (await svc.list(ACME, metadata={"n": "2"})).contexts] == [ids[2]]
    await svc.delete(ACME, ids[4])
    assert ids[4] not in [c.context_id for c in (await svc.list(ACME)).contexts]
    with pytest.raises(InvalidCommand):
        await svc.list(ACME, cursor="garbage!")


async def test_message_pages(svc: Contexts) -> None:
    cid = (await svc.create(ACME)).context_id
    await svc.append(ACME, cid, [user(str(i), f"m{i}") for i in range(7)])
    page = await svc.messages(ACME, cid, limit=3)
    assert page.seqs == [0, 1, 2]
    assert page.next_after == 2
    page = await svc.messages(ACME, cid, after=page.next_after, limit=10)
    assert page.seqs == [3, 4, 5, 6]
    assert page.next_after is None
    back = await svc.messages(ACME, cid, backward=True, limit=2)
    assert [m.message_id for m in back.messages] == ["m6", "m5"]
    assert back.next_after == 5
    assert back.total == 7


async def test_message_pages_of_an_empty_context_and_at_a_version(svc: Contexts) -> None:
    cid = (await svc.create(ACME)).context_id
    for backward in (False, True):  # no rows: an empty page, not an error
        empty = await svc.messages(ACME, cid, backward=backward)
        assert (empty.messages, empty.next_after, empty.total) == ([], None, 0)
    await svc.append(ACME, cid, [user(str(i), f"m{i}") for i in range(5)])
    await svc.append(ACME, cid, [user("5", "m5")])
    assert (await svc.messages(ACME, cid, after=5)).messages == []
    # At version 4 (created, then m0..m2): the same pages, cut from that version.
    page = await svc.messages(ACME, cid, version=4, limit=2)
    assert ([m.message_id for m in page.messages], page.seqs) == (["m0", "m1"], [0, 1])
    assert (page.version, page.total, page.next_after) == (4, 3, 1)
    rest = await svc.messages(ACME, cid, version=4, after=1)
    assert (rest.seqs, rest.next_after) == ([2], None)
    back = await svc.messages(ACME, cid, version=4, backward=True, limit=2)
    assert (back.seqs, back.next_after) == ([2, 1], 1)
    first = await svc.messages(ACME, cid, version=4, backward=True, after=1)
    assert (first.seqs, first.next_after) == ([0], None)
    # Now is the read model's page, with the same shape.
    now = await svc.messages(ACME, cid, version=7, backward=True, limit=2)
    assert (now.seqs, now.total, now.version) == ([5, 4], 6, 7)
    with pytest.raises(InvalidVersion):
        await svc.messages(ACME, cid, version=8)


async def test_concurrent_writers_without_a_precondition_never_conflict(svc: Contexts) -> None:
    """Many writers on one hot context, no If-Match: every command lands, none gets 412."""
    import asyncio

    cid = (await svc.create(ACME)).context_id
    appends = [svc.append(ACME, cid, [user(f"m{i}")]) for i in range(40)]
    patches = [svc.update_metadata(ACME, cid, {f"k{i}": i}) for i in range(10)]
    windows = [svc.window(ACME, cid, max_tokens=50, record=True) for _ in range(10)]
    results = await asyncio.gather(*appends, *patches, *windows)
    assert len(results) == 60
    state = await svc.get(ACME, cid)
    assert state.version == 61
    assert sorted(m.content for m in state.messages) == sorted(f"m{i}" for i in range(40))
    assert len(state.metadata) == 10
    assert len(svc._turns) == 0  # no lock outlives its last user


async def test_a_retried_fork_keeps_its_first_fork_point(svc: Contexts) -> None:
    """A fork at "the current version" retried with its key after the parent moved on is the
    same fork, not a key reused for something else."""
    cid = (await svc.create(ACME)).context_id
    await svc.append(ACME, cid, [user("one")])
    first = await svc.fork(ACME, cid, idempotency_key="fork-1")
    await svc.append(ACME, cid, [user("two")])
    again = await svc.fork(ACME, cid, idempotency_key="fork-1")
    assert again.context_id == first.context_id
    assert again.duplicate
    assert (await svc.get(ACME, first.context_id)).parent.version == 2  # type: ignore[union-attr]


async def test_a_forged_cursor_beyond_64_bits_is_refused(svc: Contexts) -> None:
    import base64

    huge = base64.urlsafe_b64encode(b"p" + b"9" * 30).decode().rstrip("=")
    with pytest.raises(InvalidCommand):
        await svc.list(ACME, cursor=huge)


class _GatedProjector:
    """Holds back the projector's batches with an event that ``held`` picks until ``gate``
    opens, so a test can see which reads wait for which acknowledged writes."""

    def __init__(self, svc: Contexts, held: Callable[[RecordedEvent], bool]) -> None:
        import asyncio

        self.gate = asyncio.Event()
        self.reached = asyncio.Event()
        # Gated where each batch is written, not at ``apply``: the projector's loop looks
        # ``apply`` up before it awaits its next batch, so a batch already awaited when the
        # gate is put in place would pass the old one.
        apply_to = svc.projector._apply_to

        async def gated(target, history, batch, tokens, *, search):  # type: ignore[no-untyped-def]
            if any(held(rec) for rec in batch):
                self.reached.set()
                await self.gate.wait()
            return await apply_to(target, history, batch, tokens, search=search)

        svc.projector._apply_to = gated  # type: ignore[method-assign]


async def test_a_read_waits_for_its_own_contexts_writes_not_for_others(svc: Contexts) -> None:
    import asyncio

    a = (await svc.create(ACME)).context_id
    b = (await svc.create(ACME)).context_id
    await svc.append(ACME, a, [user("a1")])
    held = _GatedProjector(svc, lambda rec: rec.stream_id == b)
    await svc.append(ACME, b, [user("b1")])  # acknowledged: the log has it
    await held.reached.wait()  # ... and the projector is held before applying it
    # A read of another context does not wait for b's write (it would wait forever here).
    state = await asyncio.wait_for(svc.get(ACME, a), 30)
    assert [m.content for m in state.messages] == ["a1"]
    written = await asyncio.wait_for(svc.append(ACME, a, [user("a2")]), 30)
    assert written.version == 3
    # A read of b waits until b's write is applied: it still reads its own write.
    reading = asyncio.ensure_future(svc.get(ACME, b))
    await asyncio.sleep(0)
    assert not reading.done()
    held.gate.set()
    assert [m.content for m in (await reading).messages] == ["b1"]
    # Behind b's held write, a's second append was applied too, in log order.
    assert (await svc.get(ACME, a)).version == 3


async def test_lineage_sees_a_fork_acknowledged_just_before(svc: Contexts) -> None:
    """Forks are other contexts: lineage waits for every acknowledged write, not only the
    parent's."""
    import asyncio

    parent = (await svc.create(ACME)).context_id
    await svc.append(ACME, parent, [user("p")])
    held = _GatedProjector(svc, lambda rec: isinstance(rec.event, ContextForked))
    fork = await svc.fork(ACME, parent)
    await held.reached.wait()
    asking = asyncio.ensure_future(svc.lineage(ACME, parent))
    await asyncio.sleep(0)
    held.gate.set()
    assert [f for f, _ in (await asking).forks] == [fork.context_id]


async def test_metadata_filters_match_any_key_as_written(svc: Contexts) -> None:
    # A filter key is a metadata key, not a JSON path: quotes, backslashes, dots, brackets,
    # "$" and the empty key match the key spelled so, and nothing else.
    keys = ['a"b', "c\\d", "a.b", "[0]", "$", "", "é", 'x\\"y']
    ids = {key: (await svc.create(ACME, metadata={key: "v", "n": 1})).context_id for key in keys}
    for key in keys:
        found = await svc.list(ACME, metadata={key: "v"})
        assert [c.context_id for c in found.contexts] == [ids[key]], repr(key)
    assert (await svc.list(ACME, metadata={"a": "v"})).contexts == []
    found = await svc.list(ACME, metadata={"a.b": "v", "n": "1"})
    assert [c.context_id for c in found.contexts] == [ids["a.b"]]


async def test_metadata_filters_sqlite_cannot_take_are_invalid(svc: Contexts) -> None:
    await svc.create(ACME, metadata={"a": "v"})
    for bad in ({"a\x00": "v"}, {"a": "v\x00"}):  # no stored metadata holds a NUL
        with pytest.raises(InvalidCommand, match="NUL"):
            await svc.list(ACME, metadata=bad)
    # Each filter is a condition SQLite evaluates: 2,000 of them were a statement too large.
    with pytest.raises(InvalidCommand, match="at most"):
        await svc.list(ACME, metadata={f"k{i}": "v" for i in range(2000)})
    from projections.queries import MAX_METADATA_FILTERS

    with pytest.raises(InvalidCommand, match="at most"):
        await svc.list(ACME, metadata={f"k{i}": "v" for i in range(MAX_METADATA_FILTERS + 1)})
    # Up to the limit, however long the keys: only values, never a statement too large.
    most = {f"{'k' * 5000}{i}": "v" for i in range(MAX_METADATA_FILTERS)}
    assert (await svc.list(ACME, metadata=most)).contexts == []
