"""After chat loops whose replies were written with the window's version as a precondition
(issue 16 item 5): every served window is in ``ctxlog audit --served`` and ``ctxlog history``,
``ctxlog verify`` passes (hash chain and read model), and so it does after ``ctxlog rebuild``."""

from __future__ import annotations

import asyncio
from pathlib import Path

from eventstore import EventStore
from projections import Caller, Contexts, NewMessage
from tests.support.cli_helpers import as_json, invoke

ME = Caller(tenant="acme", actor="ada")


async def _loops(db: str) -> tuple[str, list[list[str]]]:
    """Three turns of the loop; returns the context and what each window showed."""
    store = await EventStore.open_url(db)
    service = Contexts(store)
    try:
        await service.start()
        cid = (await service.create(ME)).context_id
        seen = []
        for turn in range(3):
            await service.append(ME, cid, [NewMessage(role="user", content=f"q{turn}")])
            shown = await service.window(ME, cid, record=True)
            seen.append(shown.message_ids)
            reply = NewMessage(role="assistant", content=f"a{turn}")
            await service.append(ME, cid, [reply], expected_version=shown.version)
        return cid, seen
    finally:
        await service.close()
        await store.close()


def test_served_windows_stay_in_the_audit_trail_and_verify_passes(tmp_path: Path) -> None:
    db = tmp_path / "log.db"
    cid, seen = asyncio.run(_loops(str(db)))
    served = as_json(invoke("audit", "--served", "--db", db, "--format", "json"))
    assert [e["data"]["message_ids"] for e in served] == seen
    assert [e["version"] for e in served] == [3, 6, 9]
    history = as_json(invoke("history", cid, "--db", db, "--format", "json"))
    assert [e["type"] for e in history] == [
        "context.created", *["message.appended", "window.served", "message.appended"] * 3,
    ]  # fmt: skip
    for _ in range(2):  # as written, then rebuilt from the log
        report = invoke("verify", "--db", db, "--format", "json")
        assert report.exit_code == 0, report.stdout + report.stderr
        body = as_json(report)
        assert (body["chain"]["events"], body["readmodel"]["status"]) == (10, "ok")
        assert invoke("rebuild", "--db", db).exit_code == 0
