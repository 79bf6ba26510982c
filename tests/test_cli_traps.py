"""Operator traps of the ``ctxlog`` command (issue 15, item 17), each walked into as a careless
operator would: an erase without ``--tenant``, ``mcp`` on a mistyped database or with stdin at
/dev/null, a second server on a used port, short ids that all look alike, ``show --at`` before
a context existed, and bad arguments, options and database paths."""

from __future__ import annotations

import asyncio
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from eventstore import EventStore
from projections import Caller, Contexts, NewMessage
from tests.support.cli_helpers import as_json, child_env, command, invoke, story

ACME = Caller(tenant="acme", actor="ada")
BETA = Caller(tenant="beta", actor="bea")


async def subject_in(db: Path, *callers: Caller, subject: str = "user-42") -> list[str]:
    """A context per caller whose content belongs to ``subject``; returns their ids."""
    store = await EventStore.open_url(str(db))
    service = Contexts(store)
    ids = []
    try:
        await service.start()
        for caller in callers:
            created = await service.create(caller, metadata={"subject": subject})
            hello = [NewMessage(role="user", content="hi")]
            await service.append(caller, created.context_id, hello)
            ids.append(created.context_id)
    finally:
        await service.close()
        await store.close()
    return ids


# -- 1. erase without --tenant ------------------------------------------------------------------


def test_erase_in_the_wrong_tenant_names_the_tenants_that_hold_the_subject(tmp_path: Path) -> None:
    db = tmp_path / "ctx.db"
    asyncio.run(subject_in(db, ACME, BETA))
    forgot = invoke("erase", "--subject", "user-42", "--db", db)
    assert forgot.exit_code == 3
    assert "nothing erased" in forgot.stderr
    assert "'acme', 'beta'" in forgot.stderr
    assert "--tenant acme" in forgot.stderr
    typo = invoke("erase", "--subject", "user-42", "--tenant", "acm", "--db", db)
    assert typo.exit_code == 3
    assert "in tenant 'acm'" in typo.stderr
    # Erased in one tenant (again: idempotent), the other is still named without --tenant.
    assert invoke("erase", "--subject", "user-42", "--tenant", "acme", "--db", db).exit_code == 0
    assert invoke("erase", "--subject", "user-42", "--tenant", "acme", "--db", db).exit_code == 0
    again = invoke("erase", "--subject", "user-42", "--db", db)
    assert again.exit_code == 3
    assert "tenant 'beta' holds" in again.stderr
    assert invoke("erase", "--subject", "user-42", "--tenant", "beta", "--db", db).exit_code == 0
    done = invoke("erase", "--subject", "user-42", "--db", db, "--format", "json")
    assert done.exit_code == 0
    assert as_json(done)["keys_destroyed"] == 0
    unknown = invoke("erase", "--subject", "nobody", "--db", db)
    assert unknown.exit_code == 0
    assert "nothing to erase" in unknown.stdout


# -- 2. mcp on a mistyped database; stdin at /dev/null ---------------------------------------


def quiet_env() -> dict[str, str]:
    """A child's environment with no CTXLOG_* setting of this process."""
    return {k: v for k, v in child_env().items() if not k.startswith("CTXLOG_")}


@pytest.mark.parametrize("entry", [["-m", "api", "mcp"], ["-m", "api.mcp"]])
def test_mcp_refuses_a_missing_database_as_every_command_does(
    tmp_path: Path, entry: list[str]
) -> None:
    typo = tmp_path / "typo.db"
    expected = invoke("history", "x", "--db", typo)
    done = subprocess.run(
        [sys.executable, *entry, "--db", str(typo)], stdin=subprocess.DEVNULL,
        capture_output=True, text=True, env=quiet_env(), timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == expected.exit_code == 3
    assert done.stderr == expected.stderr  # the same line
    assert list(tmp_path.iterdir()) == []  # nothing created


@pytest.mark.parametrize("create", [True, False])
def test_mcp_with_stdin_at_dev_null_ends_cleanly(tmp_path: Path, create: bool) -> None:
    db = tmp_path / "ctx.db"
    if not create:
        asyncio.run(subject_in(db, Caller(None, None)))
    with open(os.devnull, "rb") as stdin, open(os.devnull, "wb") as stdout:
        done = subprocess.run(
            [*command("mcp", "--db", db), *(["--create"] if create else [])],
            stdin=stdin, stdout=stdout, stderr=subprocess.PIPE, text=True,
            env=quiet_env(), timeout=30, check=False,
        )  # fmt: skip (it used to hang: stdin's end never came)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    assert "Error" not in done.stderr
    assert db.is_file()


# -- 3. a second server on a used port ------------------------------------------------------


def test_serve_on_a_used_port_says_so_in_one_line_and_touches_nothing(tmp_path: Path) -> None:
    db = tmp_path / "new.db"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            command("serve", "--port", str(port), "--db", db), stdin=subprocess.DEVNULL,
            capture_output=True, text=True, env=quiet_env(), timeout=60, check=False,
        )  # fmt: skip
    assert done.returncode == 5
    assert done.stderr.splitlines() == [
        f"Error: cannot listen on 127.0.0.1:{port}: the address is in use (another server?)"
    ]
    assert list(tmp_path.iterdir()) == []  # no database, no read model
    assert "cannot listen on --host/--port" in invoke("serve", "--help").stdout


# -- 5. show --at before the context existed ------------------------------------------------


def test_show_at_a_time_before_the_context_says_when_it_was_created(tmp_path: Path) -> None:
    db = tmp_path / "ctx.db"
    cid, _ = story(db)
    created = as_json(invoke("show", cid, "--db", db, "--format", "json"))["created_at"]
    for args in (["--at", "2h"], ["--at", "2000-01-01"], ["--at", "2h", "--window", "500"]):
        result = invoke("show", cid, *args, "--db", db)
        assert result.exit_code == 3
        assert "did not exist yet at " in result.stderr
        assert f"it was created at {created}" in result.stderr
    old = invoke("show", cid, "--at", "2000-01-01", "--db", db)
    assert "did not exist yet at 2000-01-01T00:00:00Z" in old.stderr
    missing = invoke("show", "01a242d3-e390-7628-88ed-51e3a74eb983", "--at", "2h", "--db", db)
    assert missing.exit_code == 3
    assert "not found" in missing.stderr
