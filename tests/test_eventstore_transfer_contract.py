"""Export and import, and the recorders' raw-row import under them, on every backend: rows
come back byte for byte, and rows that do not continue the log are refused, position named,
with nothing written."""

from __future__ import annotations

import base64
import io
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
import pytest

from eventstore import (
    ERASED,
    NO_STREAM,
    Content,
    ContextCreated,
    EventMetadata,
    EventStore,
    LogFilter,
    MessageAppended,
    StoredEvent,
)
from eventstore.continuity import ChainBroken
from eventstore.keystore import KeyConflict, SubjectKey
from eventstore.transfer import (
    BadExport,
    PartialExport,
    TargetNotEmpty,
    export_log,
    import_log,
)
from tests.conftest import open_store


def message(text: str) -> MessageAppended:
    return MessageAppended(message_id=str(uuid.uuid4()), role="user", content=text)


async def fill(store: EventStore) -> None:
    """Three streams, two tenants, interleaved."""
    for n in range(3):
        meta = EventMetadata(actor=f"a{n}", tenant="t1" if n < 2 else "t2")
        await store.append(f"s{n}", [ContextCreated(metadata={"n": n})], NO_STREAM, metadata=meta)
    for i in range(5):
        meta = EventMetadata(actor="bot", tenant="t1")
        await store.append(f"s{i % 2}", [message(f"m{i}"), message(f"m{i}!")], metadata=meta)


async def all_rows(store: EventStore) -> list[StoredEvent]:
    return (await store.recorder.read_all(0, 10_000, LogFilter())).events


async def exported(store: EventStore, **kwargs: object) -> bytes:
    out = io.BytesIO()
    await export_log(store, out, **kwargs)  # type: ignore[arg-type]
    return out.getvalue()


@pytest.fixture
async def target(backend: str, tmp_path: Path) -> AsyncIterator[EventStore]:
    """A second, empty store on the same backend."""
    (tmp_path / "target").mkdir()
    store = await open_store(backend, tmp_path / "target")
    try:
        yield store
    finally:
        await store.close()


async def test_round_trip_keeps_every_column(store: EventStore, target: EventStore) -> None:
    await fill(store)
    data = await exported(store)
    done = await import_log(target, io.BytesIO(data))
    assert await all_rows(target) == await all_rows(store)  # positions, ids, times, hashes
    assert done.events == done.through == await store.head()
    assert (await target.verify()).ok
    # The imported log goes on: the next append continues its chain.
    await target.append("s0", [message("after")])
    assert (await target.verify()).events == done.events + 1


async def test_import_refuses_a_store_that_holds_events(
    store: EventStore, target: EventStore
) -> None:
    await fill(store)
    await target.append("other", [ContextCreated()])
    with pytest.raises(TargetNotEmpty):
        await import_log(target, io.BytesIO(await exported(store)))


def _tamper(export: bytes, line: int, **changes: object) -> bytes:
    lines = export.splitlines()
    row = json.loads(lines[line])
    row.update(changes)
    lines[line] = json.dumps(row).encode()
    return b"\n".join(lines) + b"\n"


async def test_a_tampered_export_is_refused_with_its_position_and_nothing_written(
    store: EventStore, target: EventStore
) -> None:
    await fill(store)
    data = await exported(store)
    row = json.loads(data.splitlines()[6])
    event = json.loads(base64.b64decode(row["data"]))
    event["content"] = "forged"
    forged = _tamper(data, 6, data=base64.b64encode(json.dumps(event).encode()).decode())
    with pytest.raises(ChainBroken) as e:
        await import_log(target, io.BytesIO(forged))
    assert e.value.position == row["position"] == 6
    assert await target.head() == 0


async def test_a_reordered_or_truncated_export_is_refused(
    store: EventStore, target: EventStore
) -> None:
    await fill(store)
    lines = (await exported(store)).splitlines()
    swapped = b"\n".join([lines[0], lines[2], lines[1], *lines[3:]])
    with pytest.raises(ChainBroken, match="expected position 1") as e:
        await import_log(target, io.BytesIO(swapped))
    assert e.value.position == 1
    with pytest.raises(BadExport, match="truncated"):
        await import_log(target, io.BytesIO(b"\n".join(lines[:5])))
    with pytest.raises(BadExport, match="line 1"):
        await import_log(target, io.BytesIO(b"not an export\n"))
    with pytest.raises(BadExport, match="line 4"):
        await import_log(target, io.BytesIO(b"\n".join([*lines[:3], b"{", *lines[4:]])))
    assert await target.head() == 0


async def test_a_partial_export_checks_but_does_not_import(
    store: EventStore, target: EventStore
) -> None:
    await fill(store)
    data = await exported(store, filter=LogFilter(tenant="t2"), scope="tenant:t2")
    header, *rows = (json.loads(line) for line in data.splitlines())
    assert header["scope"] == "tenant:t2"
    assert [r["stream_id"] for r in rows] == ["s2"]
    # Each line carries the hash before it, so it can be checked on its own.
    originals = {row.position: row for row in await all_rows(store)}
    assert rows[0]["prev_hash"] == originals[rows[0]["position"] - 1].hash.hex()
    with pytest.raises(PartialExport):
        await import_log(target, io.BytesIO(data))


async def test_export_refuses_a_tampered_log(store: EventStore, tamper: object) -> None:
    await fill(store)
    await tamper(4, msgspec.json.encode(message("forged")))  # type: ignore[operator]
    with pytest.raises(ChainBroken) as e:
        await exported(store)
    assert e.value.position == 4


async def test_recorder_import_refuses_rows_that_do_not_continue_the_log(
    store: EventStore, target: EventStore
) -> None:
    await fill(store)
    rows = await all_rows(store)
    await target.recorder.import_rows(rows[:4])
    cases = [
        (rows[5:], 5, "expected position 5"),  # a gap
        ([msgspec.structs.replace(rows[4], version=9)], 5, "version"),
        ([msgspec.structs.replace(rows[4], data=b"{}")], 5, "hash"),
        ([msgspec.structs.replace(rows[4], event_id=rows[0].event_id)], 5, "already"),
        ([msgspec.structs.replace(rows[4], recorded_at=0)], 5, "earlier"),
        ([rows[4], msgspec.structs.replace(rows[5], hash=bytes(32))], 6, "hash"),
    ]
    for batch, position, reason in cases:
        with pytest.raises(ChainBroken, match=reason) as e:
            await target.recorder.import_rows(batch)
        assert e.value.position == position
        assert await target.head() == 4  # nothing of a refused batch is stored
    await target.recorder.import_rows(rows[4:])
    assert await all_rows(target) == rows
    assert (await target.verify()).ok


SECRET = "ada-secret-words"
ACME = EventMetadata(tenant="acme", actor="ada")


async def fill_subjects(store: EventStore) -> None:
    """``fill``, then content of two subjects in tenant acme and one with no tenant: ada's
    by the context's subject, grace's by a message's own ``metadata.subject``."""
    await fill(store)
    await store.append("s0", [message(f"hello {SECRET}")], metadata=ACME, subject="ada")
    own = MessageAppended(
        message_id="g1", role="user", content="grace-words", metadata={"subject": "grace"}
    )
    await store.append("s1", [own], metadata=ACME, subject="ada")
    await store.append("s2", [message("no-tenant-words")], subject="ada")


async def contents(store: EventStore) -> list[Content]:
    recs = [rec for s in ("s0", "s1", "s2") for rec in await store.read_stream(s)]
    return [rec.event.content for rec in recs if isinstance(rec.event, MessageAppended)]


def key_lines(export: bytes) -> list[dict[str, object]]:
    return [row for row in map(json.loads, export.splitlines()) if row.get("kind") == "key"]


async def test_round_trip_restores_subject_keys_and_erase_works_in_the_copy(
    store: EventStore, target: EventStore
) -> None:
    await fill_subjects(store)
    data = await exported(store)
    keys = key_lines(data)
    assert [(k["key_id"], k["tenant"], k["subject"]) for k in keys] == [
        (k.key_id, k.tenant or None, k.subject) for k in await store.recorder.read_keys("", 10)
    ]
    assert {(k["tenant"], k["subject"]) for k in keys} == {
        ("acme", "ada"), ("acme", "grace"), (None, "ada")
    }  # fmt: skip
    assert SECRET.encode() not in data  # sealed in the rows, which are copied as they are
    done = await import_log(target, io.BytesIO(data))
    assert (done.keys, done.unreadable_keys) == (3, 0)
    assert await all_rows(target) == await all_rows(store)
    assert await target.recorder.read_keys("", 10) == await store.recorder.read_keys("", 10)
    assert await contents(target) == await contents(store)
    assert f"hello {SECRET}" in await contents(target)
    assert (await target.verify()).ok
    # The copy goes on: the same subject seals with the restored key, and erasing works.
    await target.append("s0", [message("more")], metadata=ACME, subject="ada")
    assert await target.erase_subject("acme", "ada") == 1
    after = await contents(target)
    assert after.count(ERASED) == 2  # "hello ..." and "more"
    assert {"grace-words", "no-tenant-words"} <= set(after)
    assert f"hello {SECRET}" in await contents(store)  # the source keeps its key
    assert (await target.verify()).ok


async def test_an_export_after_an_erase_carries_no_key_of_the_subject(
    store: EventStore, target: EventStore
) -> None:
    await fill_subjects(store)
    assert await store.erase_subject("acme", "ada") == 1
    data = await exported(store)
    assert {(k["tenant"], k["subject"]) for k in key_lines(data)} == {
        ("acme", "grace"), (None, "ada")
    }  # fmt: skip
    assert SECRET.encode() not in data
    done = await import_log(target, io.BytesIO(data))
    assert (done.keys, done.unreadable_keys) == (2, 1)
    after = await contents(target)
    assert after.count(ERASED) == 1
    assert {"grace-words", "no-tenant-words"} <= set(after)
    assert (await target.verify()).ok


async def test_keys_import_wherever_they_are_in_the_file(
    store: EventStore, target: EventStore
) -> None:
    await fill_subjects(store)
    header, *lines = (await exported(store)).splitlines()
    keys = [line for line in lines if b'"kind":"key"' in line]
    events = [line for line in lines if line not in keys]
    await import_log(target, io.BytesIO(b"\n".join([header, *keys, *events])))
    assert await contents(target) == await contents(store)


async def test_a_version_1_export_without_keys_imports_with_its_content_unreadable(
    store: EventStore, target: EventStore
) -> None:
    await fill_subjects(store)
    header, *lines = (await exported(store)).splitlines()
    assert json.loads(header)["version"] == 2
    old = json.dumps({**json.loads(header), "version": 1}).encode()
    events = [line for line in lines if b'"kind":"key"' not in line]
    done = await import_log(target, io.BytesIO(b"\n".join([old, *events])))
    assert (done.keys, done.unreadable_keys) == (0, 3)
    assert (await contents(target)).count(ERASED) == 3
    assert (await target.verify()).ok


def _replace_key(export: bytes, whose: str, **changes: object) -> bytes:
    lines = export.splitlines()
    for n, line in enumerate(lines):
        row = json.loads(line)
        if row.get("kind") == "key" and row["subject"] == whose:
            row.update(changes)
            lines[n] = json.dumps(row).encode()
    return b"\n".join(lines) + b"\n"


async def test_a_changed_or_malformed_key_line_is_refused_and_nothing_written(
    store: EventStore, target: EventStore
) -> None:
    await fill_subjects(store)
    data = await exported(store)
    other = base64.b64encode(bytes(range(32))).decode()
    lines = data.splitlines()
    a_key = next(line for line in lines if b'"kind":"key"' in line)
    cases = [
        (_replace_key(data, "grace", key=other), "does not open the content sealed"),
        (_replace_key(data, "grace", subject="ada"), "second key"),
        (_replace_key(data, "grace", subject="bob"), "another tenant or subject"),
        (_replace_key(data, "grace", tenant="other"), "another tenant or subject"),
        (_replace_key(data, "grace", key="not base64!"), "not an exported key"),
        (_replace_key(data, "grace", key=other[:20]), "not an exported key"),
        (_replace_key(data, "grace", key_id=""), "not an exported key"),
        (_replace_key(data, "grace", kind="lock"), "unknown record kind 'lock'"),
        (b"\n".join([*lines, a_key]), "second key"),
    ]
    for forged, reason in cases:
        with pytest.raises(BadExport, match=reason) as e:
            await import_log(target, io.BytesIO(forged))
        assert e.value.line is not None
        assert await target.head() == 0
        assert await target.recorder.read_keys("", 10) == []


async def test_import_refuses_a_store_that_holds_subject_keys(
    store: EventStore, target: EventStore
) -> None:
    await fill_subjects(store)
    await target.recorder.subject_key("acme", "zed", ("k0", bytes(32)), 1)
    with pytest.raises(TargetNotEmpty, match="subject keys"):
        await import_log(target, io.BytesIO(await exported(store)))
    assert await target.head() == 0


async def test_a_partial_export_carries_no_keys(store: EventStore) -> None:
    await fill_subjects(store)
    for kwargs in ({"filter": LogFilter(tenant="acme"), "scope": "tenant:acme"},
                   {"filter": LogFilter(stream_id="s0"), "scope": "context:s0"}):  # fmt: skip
        data = await exported(store, **kwargs)
        assert key_lines(data) == []
        assert SECRET.encode() not in data


async def test_recorder_pages_keys_and_restores_them_exactly(
    store: EventStore, target: EventStore
) -> None:
    made = [
        await store.recorder.subject_key(f"t{n % 2}", f"u{n}", (f"k{n:02}", bytes([n]) * 32), n)
        for n in range(5)
    ]
    assert [(k.key_id, k.key) for k in await store.recorder.read_keys("", 10)] == made
    first, rest = await store.recorder.read_keys("", 2), await store.recorder.read_keys("k01", 10)
    keys = [*first, *rest]
    assert [k.key_id for k in keys] == ["k00", "k01", "k02", "k03", "k04"]
    assert keys[3] == SubjectKey("k03", "t1", "u3", bytes([3]) * 32, 3)
    await target.recorder.import_keys(keys[:2])
    clashes = [
        [keys[2], keys[0]],  # a key id already stored
        [keys[2], msgspec.structs.replace(keys[3], key_id="k99", subject="u1")],  # its subject
    ]
    for batch in clashes:
        with pytest.raises(KeyConflict):
            await target.recorder.import_keys(batch)
        assert await target.recorder.read_keys("", 10) == keys[:2]  # nothing of the batch
    await target.recorder.import_keys(keys[2:])
    assert await target.recorder.read_keys("", 10) == keys
    assert await target.recorder.keys_by_id(["k04", "gone"]) == {"k04": bytes([4]) * 32}
