"""The subject key cache (``eventstore.sealing.Keyring``) must not outlive an erasure, in this
process or another one on the same log."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from eventstore import ERASED, EventMetadata, EventStore, MessageAppended, SubjectErased
from eventstore.sealing import Keyring
from tests.conftest import PG_DSN, open_store
from tests.support.factories import content_of


class _GatedRecorder:
    """A recorder whose key lookups wait for a gate: a lookup in flight during an erasure."""

    def __init__(self) -> None:
        self.keys = {"k1": bytes(32)}
        self.asked = 0
        self.waiting = asyncio.Event()
        self.gate = asyncio.Event()

    async def keys_by_id(self, key_ids: list[str]) -> dict[str, bytes]:
        self.asked += 1
        found = {k: self.keys[k] for k in key_ids if k in self.keys}
        self.waiting.set()
        await self.gate.wait()
        return found

    async def destroy_subject_key(self, tenant: str, subject: str) -> Any:
        self.keys.clear()
        return ["k1"]


async def test_a_key_lookup_in_flight_during_an_erasure_is_not_cached() -> None:
    recorder = _GatedRecorder()
    keyring = Keyring(recorder)  # type: ignore[arg-type]
    lookup = asyncio.create_task(keyring.by_ids({"k1"}))
    await recorder.waiting.wait()
    await keyring.destroy("acme", "ada")  # meanwhile: the key is destroyed
    recorder.gate.set()
    assert (await lookup)["k1"] == bytes(32)  # read before the key was destroyed
    assert (await keyring.by_ids({"k1"}))["k1"] is None  # not remembered from before
    assert recorder.asked == 2


async def test_reading_an_erasure_drops_keys_this_process_cached(tmp_path: Path) -> None:
    """Two processes on one log: the reader has the key cached; the other destroys it and
    records the erasure. Whatever the reader reads with the erasure reads "[erased]"."""
    db = str(tmp_path / "log.db")
    writer, reader = [await EventStore.open_sqlite(db) for _ in range(2)]
    try:
        meta = EventMetadata(tenant="acme")
        event = MessageAppended(message_id="m1", role="user", content="ada's words")
        await writer.append("s1", [event], metadata=meta, subject="ada")
        assert [content_of(r) for r in await reader.read_stream("s1")] == ["ada's words"]
        await writer.erase_subject("acme", "ada")
        await writer.append("s1", [SubjectErased(subject="ada")], metadata=meta)
        recs = await reader.read_stream("s1")
        assert getattr(recs[0].event, "content", None) == ERASED
    finally:
        await writer.close()
        await reader.close()


async def test_content_sealed_with_a_key_destroyed_before_it_commits_is_sealed_again(
    store: EventStore, backend: str, tmp_path: Path
) -> None:
    """A writer holds the subject's key; an erasure destroys it (here in another store on
    the same database, or on PostgreSQL) before the write commits: the write is sealed again
    with the subject's new key, so no content is ever stored under a key destroyed before
    it (it would read "[erased]" at once, with no erasure recorded for it)."""
    meta = EventMetadata(tenant="acme")
    first = MessageAppended(message_id="m1", role="user", content="before")
    await store.append("s1", [first], metadata=meta, subject="ada")  # the key is cached now
    eraser = await _another_on_the_same_database(store, backend, tmp_path)
    try:
        if eraser is store:  # one connection: destroy behind the cache's back
            await store.recorder.destroy_subject_key("acme", "ada")
        else:
            await eraser.erase_subject("acme", "ada")
        later = MessageAppended(message_id="m2", role="user", content="after")
        await store.append("s1", [later], metadata=meta, subject="ada")
        recs = await store.read_stream("s1")
        assert [getattr(r.event, "content", None) for r in recs] == [ERASED, "after"]
        assert recs[0].sealed_by[0].key_id != recs[1].sealed_by[0].key_id
    finally:
        if eraser is not store:
            await eraser.close()


async def _another_on_the_same_database(store: EventStore, backend: str, path: Path) -> EventStore:
    """A second store on ``store``'s database (another process, as far as caches go); the
    store itself in memory, where there is no second connection to its database."""
    if backend == "sqlite-memory":
        return store
    if backend == "sqlite-file":
        return await open_store(backend, path)
    from eventstore.postgres import PostgresRecorder

    assert PG_DSN
    other = EventStore(PostgresRecorder(PG_DSN, schema=store.recorder.schema))  # type: ignore[attr-defined]
    await other.open()
    return other


async def test_a_cached_key_stays_found_when_the_cache_empties_during_a_lookup() -> None:
    # The race crash cycles found: a summary sealed with two cached keys and a new one read
    # "[erased]" in the read model because the cache was emptied (an erasure elsewhere, the
    # TTL) while the new key was looked up, and the cached two were then read back as None.
    cached, new = ("k-cached", b"c" * 32), ("k-new", b"n" * 32)
    looking = asyncio.Event()
    release = asyncio.Event()

    class SlowRecorder:
        async def keys_by_id(self, key_ids: list[str]) -> dict[str, bytes]:
            looking.set()
            await release.wait()
            return {k: v for k, v in (cached, new) if k in key_ids}

    keyring = Keyring(SlowRecorder())  # type: ignore[arg-type]
    assert await _lookup(keyring, {cached[0]}, looking, release) == {cached[0]: cached[1]}
    looking.clear()
    release.clear()
    lookup = asyncio.create_task(keyring.by_ids({cached[0], new[0]}))
    await looking.wait()
    keyring.forget()  # an erasure of another subject, or the TTL, meanwhile
    release.set()
    assert await lookup == {cached[0]: cached[1], new[0]: new[1]}


async def _lookup(
    keyring: Keyring, ids: set[str], looking: asyncio.Event, release: asyncio.Event
) -> dict[str, bytes | None]:
    task = asyncio.create_task(keyring.by_ids(ids))
    await looking.wait()
    release.set()
    return dict(await task)
