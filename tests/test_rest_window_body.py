"""A window's answer without a format is the projection's Window encoded as it is (no
conversion per read, issue 21): its JSON must stay the API's ``schemas.Window``'s, byte
for byte, for every shape a window takes."""

from __future__ import annotations

import msgspec

from api.rest import render, schemas
from eventstore import EventStore, ToolCallPart, WindowSettings
from projections import Caller, Contexts, NewMessage
from projections.window import LeftOut, Window, WindowEntry

ACME = Caller(tenant="acme", actor="alice")


def _fields(struct: type[msgspec.Struct]) -> tuple[str, ...]:
    return tuple(f.encode_name for f in msgspec.structs.fields(struct))


async def test_a_window_encodes_as_its_rendering() -> None:
    for ours, theirs in (
        (Window, schemas.Window),
        (WindowEntry, schemas.WindowEntry),
        (LeftOut, schemas.LeftOut),
    ):  # the twins, field for field (the API's adds the formatted messages)
        extra = {"messages", "system"} if theirs is schemas.Window else set()
        assert _fields(ours) == tuple(f for f in _fields(theirs) if f not in extra)
    store = await EventStore.open_sqlite(":memory:")
    svc = Contexts(store)
    await svc.start()
    try:
        cid = (await svc.create(ACME, window=WindowSettings(max_tokens=60))).context_id
        call = ToolCallPart(id="c1", name="weather", arguments={"city": "Paris"})
        written = await svc.append(ACME, cid, [
            NewMessage(role="system", content="Be brief."),
            *(NewMessage(role="user", content=f"question {i} " * 5, name="ann") for i in range(8)),
            NewMessage(role="assistant", content=[call]),
        ])  # fmt: skip
        windows = [await svc.window(ACME, cid), await svc.window(ACME, cid, last_n=2)]
        await svc.add_summary(ACME, cid, "earlier: questions", written.message_ids[4])
        await svc.redact(ACME, cid, written.message_ids[6])
        windows += [await svc.window(ACME, cid), await svc.window(ACME, cid, max_tokens=10_000)]
        assert any(w.left_out for w in windows)
        assert any(w.summary_id for w in windows)
        for window in windows:
            body = render.window_body(window)
            assert body is window
            assert msgspec.json.encode(body) == msgspec.json.encode(render.render_window(window))
    finally:
        await svc.close()
        await store.close()
