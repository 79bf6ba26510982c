"""Search ranks are a tenant's own (issue 15, item 6): tenant B's answers — hits, their order,
ranks, snippets, pages — are identical whether or not tenant A wrote many messages full of
B's words, on every backend of the log, from the live projector and after a rebuild.

The read model is SQLite on every backend; its indexes are per tenant (``projections.tenants``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from eventstore import TextPart
from projections import Caller, Contexts, NewMessage
from tests.conftest import open_store

A = Caller(tenant="tenant-a", actor="ann")
B = Caller(tenant="tenant-b", actor="bob")
B_MESSAGES = [
    ["the deploy failed on friday", "lunch on friday?", "deploy again after the fix"],
    ["friday deploy postmortem: the cache", "rollback the cache deploy", "nothing to see"],
]
QUERIES = ["deploy", "friday", "cache deploy", "depl*", "rollback", "the"]


def user(text: str, message_id: str | None = None) -> NewMessage:
    return NewMessage(role="user", content=text, message_id=message_id)


async def noise(svc: Contexts, round_: int) -> None:
    """Tenant A: many messages with B's words, in several contexts, some of them deleted."""
    for n in range(3):
        cid = (await svc.create(A)).context_id
        texts = [f"deploy friday deploy {round_} {n} {i} cache" for i in range(40)]
        texts += ["the the the friday", "rollback"] * 5
        await svc.append(A, cid, [user(t) for t in texts])
        await svc.append(A, cid, [NewMessage(role="tool", content=[TextPart(text="deploy")])])
        if n == 2:
            await svc.delete(A, cid)


async def b_answers(svc: Contexts, contexts: list[str]) -> list[Any]:
    """Everything B can observe of its searches, with its context ids as their indexes."""
    answers: list[Any] = []
    for query in QUERIES:
        for within in (None, contexts[1]):
            pages, cursor = [], None
            while True:
                page = await svc.search(B, query, context_id=within, limit=2, cursor=cursor)
                pages.append((
                    [(contexts.index(h.context_id), h.message_id, h.seq, h.role, h.snippet,
                      h.rank) for h in page.hits],
                    page.next_cursor,
                ))  # fmt: skip
                cursor = page.next_cursor
                if cursor is None:
                    break
            answers.append((query, within is not None, pages))
    return answers


async def scenario(backend: str, tmp_path: Path, *, with_a: bool) -> tuple[list[Any], list[Any]]:
    """B's answers (live, then after a rebuild) with or without tenant A's writes around
    (``tmp_path``: a directory of its own)."""
    store = await open_store(backend, tmp_path)
    svc = Contexts(store)
    await svc.start()
    try:
        if with_a:
            await noise(svc, 0)
        contexts = []
        for n, texts in enumerate(B_MESSAGES):
            cid = (await svc.create(B)).context_id
            contexts.append(cid)
            for i, text in enumerate(texts):
                await svc.append(B, cid, [user(text, f"b{n}-{i}")])
                if with_a and i == 1:
                    await noise(svc, 1 + n)
        await svc.edit(B, contexts[0], "b0-1", "lunch on saturday, deploy friday")
        if with_a:
            await noise(svc, 9)
        live = await b_answers(svc, contexts)
        await svc.rebuild()
        return live, await b_answers(svc, contexts)
    finally:
        await svc.close()
        await store.close()


async def test_b_sees_the_same_ranks_whatever_a_writes(backend: str, tmp_path: Path) -> None:
    for name in ("alone", "crowded"):
        (tmp_path / name).mkdir()
    alone_live, alone_rebuilt = await scenario(backend, tmp_path / "alone", with_a=False)
    crowded_live, crowded_rebuilt = await scenario(backend, tmp_path / "crowded", with_a=True)
    assert any(hits for *_, pages in alone_live for hits, _ in pages)  # B finds its messages
    assert crowded_live == alone_live
    assert crowded_rebuilt == alone_rebuilt
