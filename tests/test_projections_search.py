"""Full-text search: what a context holds now, within the caller's tenant, paged."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from eventstore import TextPart, ToolCallPart, ToolResultPart
from eventstore.events import Part
from projections import (
    Caller,
    ContextNotFound,
    Contexts,
    InvalidCommand,
    NewMessage,
    plain_text,
)
from tests.support.services import running_contexts

ACME = Caller(tenant="acme", actor="alice")
OTHER = Caller(tenant="other", actor="mallory")


def user(text: str, message_id: str | None = None) -> NewMessage:
    return NewMessage(role="user", content=text, message_id=message_id)


@pytest.fixture
async def svc(tmp_path: Path, readmodel: str) -> AsyncIterator[Contexts]:
    async with running_contexts(str(tmp_path / "log.db"), readmodel) as service:
        yield service


async def found(svc: Contexts, query: str, caller: Caller = ACME, **kw: object) -> list[str]:
    page = await svc.search(caller, query, **kw)  # type: ignore[arg-type]
    return [h.message_id for h in page.hits]


def test_plain_text_takes_text_tool_names_arguments_and_results() -> None:
    content: list[Part] = [
        TextPart(text="see the weather"),
        ToolCallPart(id="c1", name="get_weather", arguments={"city": "Lisbon"}),
        ToolResultPart(call_id="c1", content="sunny"),
    ]
    text = plain_text(content)
    for piece in ("see the weather", "get_weather", "Lisbon", "sunny"):
        assert piece in text


async def test_finds_every_word_best_first_with_a_snippet(svc: Contexts) -> None:
    cid = (await svc.create(ACME)).context_id
    await svc.append(ACME, cid, [
        user("the deploy failed on friday", "m1"),
        user("lunch on friday?", "m2"),
        user("deploy again; deploy failed twice", "m3"),
    ])  # fmt: skip
    assert sorted(await found(svc, "deploy failed")) == ["m1", "m3"]
    page = await svc.search(ACME, "deploy failed")
    assert page.hits[0].message_id == "m3"  # more occurrences rank better
    assert page.hits[0].context_id == cid
    assert page.hits[0].seq == 2
    assert "deploy failed" in page.hits[0].snippet
    assert await found(svc, "dep*") == ["m3", "m1"]
    assert await found(svc, "DEPLOY") != []  # case-insensitive


async def test_user_text_is_never_query_syntax(svc: Contexts) -> None:
    cid = (await svc.create(ACME)).context_id
    await svc.append(ACME, cid, [user('he said "NEAR(a b)" AND OR -x', "m1")])
    assert await found(svc, 'said "NEAR(a b)" AND') == ["m1"]
    assert await found(svc, "'; DROP TABLE messages; --") == []
    assert await found(svc, "said\x00") == ["m1"]
    with pytest.raises(InvalidCommand):
        await svc.search(ACME, "   ")


async def test_edits_redactions_rollbacks_and_deletes_change_what_is_found(
    svc: Contexts,
) -> None:
    cid = (await svc.create(ACME)).context_id
    await svc.append(ACME, cid, [user("alpha", "m1"), user("bravo", "m2")])
    await svc.edit(ACME, cid, "m1", "charlie")
    assert await found(svc, "alpha") == []
    assert await found(svc, "charlie") == ["m1"]
    await svc.redact(ACME, cid, "m2")
    assert await found(svc, "bravo") == []
    await svc.rollback(ACME, cid, 3)  # back to "alpha", "bravo"
    assert await found(svc, "alpha") == ["m1"]
    assert await found(svc, "bravo") == ["m2"]
    assert await found(svc, "charlie") == []
    fork = (await svc.fork(ACME, cid)).context_id
    assert len(await found(svc, "alpha")) == 2
    assert {h.context_id for h in (await svc.search(ACME, "alpha")).hits} == {cid, fork}
    assert await found(svc, "alpha", context_id=fork) == ["m1"]
    await svc.delete(ACME, cid)
    assert [h.context_id for h in (await svc.search(ACME, "alpha")).hits] == [fork]


async def test_other_tenants_messages_are_never_found(svc: Contexts) -> None:
    cid = (await svc.create(ACME)).context_id
    await svc.append(ACME, cid, [user("secret plans", "m1")])
    assert await found(svc, "secret", OTHER) == []
    with pytest.raises(ContextNotFound):
        await svc.search(OTHER, "secret", context_id=cid)


async def test_pages_with_a_cursor_and_survives_a_rebuild(svc: Contexts) -> None:
    cid = (await svc.create(ACME)).context_id
    await svc.append(ACME, cid, [user(f"needle number {i}", f"m{i}") for i in range(7)])
    first = await svc.search(ACME, "needle", limit=5)
    assert len(first.hits) == 5
    assert first.next_cursor is not None
    rest = await svc.search(ACME, "needle", limit=5, cursor=first.next_cursor)
    assert rest.next_cursor is None
    everything = [h.message_id for h in first.hits + rest.hits]
    assert sorted(everything) == sorted(f"m{i}" for i in range(7))
    await svc.rebuild()
    assert sorted(await found(svc, "needle", limit=10)) == sorted(everything)
    with pytest.raises(InvalidCommand):
        await svc.search(ACME, "needle", cursor="not-a-cursor")
