"""Operator traps of the ``ctxlog`` command (issue 15, item 17), each walked into as a careless
operator would: an erase without ``--tenant``, ``mcp`` on a mistyped database or with stdin at
/dev/null, a second server on a used port, short ids that all look alike, ``show --at`` before
a context existed, and bad arguments, options and database paths."""

from __future__ import annotations

import asyncio
import os
import re
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from api.cli.render import ShortIds
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
            stdin=stdin,
            stdout=stdout,
            stderr=subprocess.PIPE,
            text=True,
            env=quiet_env(),
            timeout=30,
            check=False,
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


# -- 4. short ids that tell rows apart; contexts by the first characters of their id -----------


def test_short_ids_are_tails_long_enough_to_tell_the_ids_shown_apart() -> None:
    ids = ShortIds(["01a242d3-e390-7628-88ed-51e3a74eb982", "01a242d3-e390-7628-88ed-0003a74eb982",
                    "01a242d3-e390-7628-88ed-51e3a74eb983", None])  # fmt: skip
    assert ids("01a242d3-e390-7628-88ed-51e3a74eb982") == "e3a74eb982"  # 9 shared
    assert ids("01a242d3-e390-7628-88ed-0003a74eb982") == "03a74eb982"
    assert ids("01a242d3-e390-7628-88ed-51e3a74eb983") == "a74eb983"
    assert ids(None) == "-"
    assert ShortIds()("01a242d3-e390-7628-88ed-51e3a74eb982") == "a74eb982"
    assert ShortIds()("m1") == "m1"


def test_rows_of_one_minute_show_ids_that_differ_and_are_the_ids_tails(tmp_path: Path) -> None:
    db = tmp_path / "ctx.db"
    (cid,) = asyncio.run(subject_in(db, ACME))
    asyncio.run(more_messages(db, cid, 30))
    state = as_json(invoke("show", cid, "--db", db, "--format", "json"))
    full = [m["id"] for m in state["messages"]]
    assert len({i[:8] for i in full}) < len(full)  # the trap: made in the same minute
    shown = [line.split()[1] for line in invoke("show", cid, "--db", db).stdout.splitlines()
             if re.match(r"\d+ ", line)]  # fmt: skip
    assert len(shown) == len(full) == len(set(shown))
    assert all(f.endswith(s) and len(s) >= 8 for f, s in zip(full, shown, strict=True))
    history = re.findall(r"\(([0-9a-f-]+)\)$", invoke("history", cid, "--db", db).stdout, re.M)
    assert history == shown  # each appended message, once, as show shows it


async def more_messages(db: Path, context_id: str, count: int) -> None:
    store = await EventStore.open_url(str(db))
    service = Contexts(store)
    try:
        await service.start()
        news = [NewMessage(role="user", content=f"m{n}") for n in range(count)]
        await service.append(ACME, context_id, news)
    finally:
        await service.close()
        await store.close()


def shared(a: str, b: str) -> int:
    """How many first characters ``a`` and ``b`` have in common."""
    return next(
        (n for n, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b))
    )


def test_every_command_takes_a_context_by_a_unique_prefix_and_refuses_an_ambiguous_one(
    tmp_path: Path,
) -> None:
    db = tmp_path / "ctx.db"
    ids = asyncio.run(subject_in(db, ACME, ACME, BETA))
    common = ids[0][: min(shared(ids[0], other) for other in ids[1:])]
    assert len(common) >= 8  # made in the same minute: they start alike
    own = max(shared(ids[0], other) for other in ids[1:])
    unique = ids[0][: own + 1]  # the shortest prefix of its own, as git would show it
    for args in (["show", unique], ["history", unique], ["replay", unique],
                 ["audit", "--context", unique], ["export", "--context", unique]):  # fmt: skip
        result = invoke(*args, "--db", db, "--format", "json") if args[0] != "export" else (
            invoke(*args, "--db", db)
        )  # fmt: skip
        assert result.exit_code == 0, (args, result.stderr)
        assert ids[0] in result.stdout
        assert ids[1] not in result.stdout
        ambiguous = invoke(*[common if a == unique else a for a in args], "--db", db)
        assert ambiguous.exit_code == 2, (args, ambiguous.stderr)
        assert f"{common!r} is ambiguous: the ids of 3 contexts start with it" in ambiguous.stderr
        assert all(i in ambiguous.stderr for i in ids)
    assert invoke("show", ids[2], "--db", db).exit_code == 0  # the full id, as always
    assert invoke("show", "ffff", "--db", db).exit_code == 3


# -- walking the command as a careless operator ------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["import", "EXPORT", "--db", "nodir/new.db"],
        ["backup", "nodir/copy.db", "--db", "DB"],
        ["export", "-o", "nodir/log.ndjson", "--db", "DB"],
        ["verify", "--write-anchor", "nodir/head.json", "--db", "DB"],
        ["serve", "--db", "nodir/new.db", "--port", "0"],
        ["mcp", "--create", "--db", "nodir/new.db"],
    ],
)
def test_a_missing_directory_is_named_before_any_work(tmp_path: Path, args: list[str]) -> None:
    db = tmp_path / "ctx.db"
    story(db)
    export = tmp_path / "log.ndjson"
    assert invoke("export", "-o", export, "--db", db).exit_code == 0
    before = sorted(tmp_path.iterdir())
    given = [str(db) if a == "DB" else str(export) if a == "EXPORT" else a for a in args]
    done = subprocess.run(
        command(*given), cwd=tmp_path, stdin=subprocess.DEVNULL, capture_output=True,
        text=True, env=quiet_env(), timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 3, done.stderr
    assert done.stderr.splitlines() == [done.stderr.strip()]  # one line, no traceback
    assert re.match(r"Error: no directory nodir for (a new database )?nodir/", done.stderr)
    assert sorted(tmp_path.iterdir()) == before


@pytest.mark.parametrize(
    "args",
    [["stats"], ["verify"], ["export"], ["history", "abcd"], ["show", "abcd"], ["audit"],
     ["mcp"]],
)  # fmt: skip
def test_a_read_on_an_empty_file_writes_nothing_into_it(tmp_path: Path, args: list[str]) -> None:
    # SQLite takes a 0-byte file for an empty database; a command that reads must not turn
    # whatever file was named into a ctxlog log.
    empty = tmp_path / "empty.db"
    empty.touch()
    done = subprocess.run(
        command(*args, "--db", str(empty)), cwd=tmp_path, stdin=subprocess.DEVNULL,
        capture_output=True, text=True, env=quiet_env(), timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 3, done.stderr
    assert done.stderr.strip() == f"Error: {empty} is empty (0 bytes): there is no ctxlog log in it"
    assert sorted(tmp_path.iterdir()) == [empty]
    assert empty.stat().st_size == 0


def test_serve_refuses_a_directory_or_a_file_that_is_not_a_ctxlog_database(
    tmp_path: Path,
) -> None:
    notes = tmp_path / "notes.db"
    notes.write_text("my notes\n" * 1000)
    for db, code, says in ((tmp_path, 2, "is a directory"), (notes, 5, "not a database")):
        done = subprocess.run(
            command("serve", "--db", db, "--port", "0"), stdin=subprocess.DEVNULL,
            capture_output=True, text=True, env=quiet_env(), timeout=60, check=False,
        )  # fmt: skip
        assert done.returncode == code, done.stderr
        assert len(done.stderr.splitlines()) == 1
        assert says in done.stderr
    assert notes.read_text() == "my notes\n" * 1000
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.db"]


def test_a_database_in_a_directory_that_is_not_writable_says_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "ctx.db"
    story(db)
    export = tmp_path.parent / f"{tmp_path.name}.ndjson"
    assert invoke("export", "-o", export, "--db", db).exit_code == 0
    # As if the directory were read-only (tests may run as root, whom modes do not stop):
    # SQLite cannot create the -shm beside the file, and says only "unable to open".
    real = sqlite3.connect

    def unable(path: str, *args: Any, **kwargs: Any) -> sqlite3.Connection:
        if str(tmp_path) in str(path):
            raise sqlite3.OperationalError("unable to open database file")
        conn: sqlite3.Connection = real(path, *args, **kwargs)
        return conn

    monkeypatch.setattr(sqlite3, "connect", unable)
    monkeypatch.setattr(os, "access", lambda path, mode: Path(path) != tmp_path)
    result = invoke("stats", "--db", db)
    assert result.exit_code == 5
    assert result.stderr.startswith(f"Error: {db}: unable to open database file")
    assert f"({tmp_path} is not writable, and SQLite keeps its -wal" in result.stderr
    fresh = invoke("import", export, "--db", tmp_path / "new.db")
    assert fresh.exit_code == 5
    assert fresh.stderr == f"Error: cannot create {tmp_path}/new.db: {tmp_path} is not writable\n"


def test_audit_refuses_an_event_type_that_does_not_exist(tmp_path: Path) -> None:
    db = tmp_path / "ctx.db"
    story(db)
    typo = invoke("audit", "--type", "message.edit", "--db", db)
    assert typo.exit_code == 2
    assert "no event type 'message.edit'" in typo.stderr
    assert "message.edited" in typo.stderr
    edits = invoke("audit", "--type", "message.edited", "--db", db, "--format", "json")
    assert [e["type"] for e in as_json(edits)] == ["message.edited"]


_WITHOUT_THE_EXTRA = """
import runpy, sys

class Missing:  # as if the postgres extra were not installed
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("asyncpg", "psycopg"):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)

sys.meta_path.insert(0, Missing())
runpy.run_module("api", run_name="__main__")
"""


@pytest.mark.parametrize("args", [["stats"], ["serve", "--port", "0"]])
def test_a_postgresql_database_without_the_extra_says_what_to_install(
    tmp_path: Path, args: list[str]
) -> None:
    done = subprocess.run(
        [sys.executable, "-c", _WITHOUT_THE_EXTRA, *args, "--db", "postgresql://x@127.0.0.1:1/x"],
        cwd=tmp_path, stdin=subprocess.DEVNULL, capture_output=True, text=True,
        env=child_env(), timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 5, done.stderr
    assert "Traceback" not in done.stderr
    assert "pip install 'ctxlog[postgres]'" in done.stderr.splitlines()[-1]
