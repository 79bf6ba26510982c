"""Sealing content with subjects' keys (``eventstore.sealing``): layers of several keys, and
rows written by an older ctxlog."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import msgspec
import pytest

from eventstore import (
    ANY,
    ERASED,
    ContextCreated,
    EventMetadata,
    EventStore,
    MessageAppended,
    MessageEdited,
    SummaryAdded,
)
from eventstore.codec import encoder
from eventstore.recorder import NewEvent, PendingAppend
from eventstore.sealing import SealBroken, key_refs, new_key, seal, unseal
from projections import Caller, Contexts

ADA = Caller(tenant="acme", actor="ada")
CREATED = "context.created"


def test_content_of_several_subjects_needs_every_key() -> None:
    keys = {name: new_key() for name in ("ada", "bob", "cy")}
    event = SummaryAdded(summary_id="s", text="a summary of three", through_message_id="m")
    event_id = str(uuid.uuid4())
    sealed = seal(event, event_id, [(name, *keys[name]) for name in sorted(keys)])
    assert isinstance(sealed, SummaryAdded)
    assert sealed.text == ""
    assert b"three" not in encoder.encode(sealed)
    assert [(r.key_id, r.subject) for r in key_refs(sealed)] == [
        (keys[name][0], name) for name in sorted(keys)
    ]
    every = dict(keys.values())
    opened = unseal(sealed, event_id, every)
    assert isinstance(opened, SummaryAdded)
    assert opened.text == "a summary of three"
    for gone in keys.values():
        left = {key_id: key for key_id, key in every.items() if key_id != gone[0]}
        erased = unseal(sealed, event_id, left)
        assert isinstance(erased, SummaryAdded)
        assert erased.text == ERASED
    wrong = {**every, keys["bob"][0]: bytes(32)}
    with pytest.raises(SealBroken):
        unseal(sealed, event_id, wrong)
    with pytest.raises(SealBroken):  # the event id is bound in: content cannot be moved
        unseal(sealed, str(uuid.uuid4()), every)


def _old_format(event: Any, event_id: str, subject: str, key: tuple[str, bytes]) -> bytes:
    """``event`` sealed as ctxlog wrote it before seals named their subject: one layer, and
    no ``subject`` or ``layers`` field in the stored JSON."""
    data = msgspec.json.decode(encoder.encode(seal(event, event_id, [(subject, *key)])))
    del data["sealed"]["subject"], data["sealed"]["layers"]
    return msgspec.json.encode(data)


async def test_rows_sealed_by_an_older_ctxlog_read_and_erase(tmp_path: Path) -> None:
    """Rows written before seals named their subject, with the rule of then (an edit sealed
    under the context's subject), decode, project with the right subjects, and erase."""
    store = await EventStore.open_url(str(tmp_path / "log.db"))
    try:
        key = await store.keys.for_subject("acme", "ada", 0)
        meta = encoder.encode(EventMetadata(tenant="acme", actor="ada"))
        cid, ids = str(uuid.uuid4()), [str(uuid.uuid4()) for _ in range(3)]
        events = [
            (ids[0], encoder.encode(ContextCreated(metadata={"subject": "ada"})), CREATED),
            (
                ids[1],
                _old_format(
                    MessageAppended(message_id="m1", role="user", content="ada's first"),
                    ids[1], "ada", key,
                ),
                "message.appended",
            ),
            (
                ids[2],
                _old_format(
                    MessageEdited(message_id="m1", content="ada's edit"), ids[2], "ada", key
                ),
                "message.edited",
            ),
        ]  # fmt: skip
        assert all(b'"subject":"ada"' not in data for _, data, _ in events[1:])
        rows = [NewEvent(eid, kind, data, meta, "acme", "ada") for eid, data, kind in events]
        await store.recorder.commit([PendingAppend(cid, rows, ANY)], 1)
        recs = await store.read_stream(cid)
        assert [getattr(r.event, "content", None) for r in recs] == [
            None, "ada's first", "ada's edit"
        ]  # fmt: skip
        assert [ref.subject for ref in recs[2].sealed_by] == [""]  # the row does not say

        service = Contexts(store)
        try:
            await service.start()
            (message,) = (await service.get(ADA, cid)).messages
            assert (message.content, message.subject) == ("ada's edit", "ada")
            done = await service.erase(ADA, "ada")
            assert done.contexts == [cid]
            (message,) = (await service.get(ADA, cid)).messages
            assert message.content == ERASED
        finally:
            await service.close()
        assert [getattr(r.event, "content", None) for r in await store.read_stream(cid)][:3] == [
            None, ERASED, ERASED
        ]  # fmt: skip
    finally:
        await store.close()
