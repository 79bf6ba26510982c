"""A server without API keys serves every caller the whole log, so it refuses to start on a
database that holds tenants' data: ``ctxlog serve``, ``ctxlog mcp`` and ``python -m api.mcp``
exit 2 with one line naming ``CTXLOG_API_KEYS`` and the override, before serving anything,
unless the operator says to serve it open anyway (``CTXLOG_ALLOW_OPEN_WITH_TENANTS=1`` or
``--allow-open-with-tenants``)."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from api.config import load_settings
from api.settings import SettingsError
from eventstore import EventStore
from projections import Caller, Contexts
from tests.support.cli_helpers import child_env, story
from tests.support.server_process import free_port

OVERRIDE = "CTXLOG_ALLOW_OPEN_WITH_TENANTS"
COMMANDS = {
    "serve": ["-m", "api", "serve"],
    "mcp": ["-m", "api", "mcp"],
    "python -m api.mcp": ["-m", "api.mcp"],
}
INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t"}},
}


def open_env(**extra: str) -> dict[str, str]:
    """A child's environment without any API key (whatever this process was given)."""
    env = {k: v for k, v in child_env().items() if not k.startswith("CTXLOG_")}
    return {**env, "CTXLOG_PORT": str(free_port()), **extra}


def run(
    args: list[str], env: dict[str, str], tmp: Path, stdin: bytes | None = None
) -> tuple[int, str, str]:
    """Run a command to its end (killed after 30 s: a server that serves instead of refusing
    never ends by itself). Its stdin stays open and silent unless ``stdin`` is given, as a
    client's would while it waits for the server."""
    out, err = tmp / "stdout", tmp / "stderr"
    with out.open("wb") as o, err.open("wb") as e:
        proc = subprocess.Popen(
            [sys.executable, *args], stdin=subprocess.PIPE, stdout=o, stderr=e, env=env
        )
        assert proc.stdin is not None
        try:
            if stdin is not None:
                proc.stdin.write(stdin)
                proc.stdin.close()
            code = proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            code = -1
        finally:
            if not proc.stdin.closed:
                proc.stdin.close()
    return code, out.read_text(errors="replace"), err.read_text(errors="replace")


async def _open_context(db: str) -> None:
    store = await EventStore.open_url(db)
    service = Contexts(store)
    try:
        await service.start()
        await service.create(Caller(None, None), metadata={"who": "nobody"})
    finally:
        await service.close()
        await store.close()


@pytest.mark.parametrize("name", list(COMMANDS))
def test_an_open_server_refuses_a_database_with_tenants(name: str, tmp_path: Path) -> None:
    db = tmp_path / "tenants.db"
    story(db)  # the tenant "acme"'s conversation
    code, out, err = run([*COMMANDS[name], "--db", str(db)], open_env(), tmp_path)
    assert code == 2, (code, err[-2000:])
    refusals = [line for line in err.splitlines() if "refusing" in line]
    assert len(refusals) == 1, err
    assert "CTXLOG_API_KEYS" in refusals[0]
    assert OVERRIDE in refusals[0]
    assert "--allow-open-with-tenants" in refusals[0]
    assert "Traceback" not in err
    assert out == ""  # nothing served (the stdio server never answered)


def _serves(args: list[str], env: dict[str, str]) -> None:
    """``ctxlog serve`` comes up (``/healthz`` 200) and stops cleanly on SIGTERM."""
    proc = subprocess.Popen(
        [sys.executable, *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, proc.communicate()[0].decode()[-2000:]
            try:
                url = f"http://127.0.0.1:{env['CTXLOG_PORT']}/healthz"
                with urllib.request.urlopen(url, timeout=5) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, "the server did not become ready"
            time.sleep(0.05)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        log = proc.communicate(timeout=30)[0].decode(errors="replace")
    assert proc.returncode == 0, log[-2000:]
    assert "Traceback" not in log


def test_serve_serves_open_when_told_to(tmp_path: Path) -> None:
    db = tmp_path / "tenants.db"
    story(db)
    _serves([*COMMANDS["serve"], "--db", str(db)], open_env(**{OVERRIDE: "1"}))
    _serves([*COMMANDS["serve"], "--db", str(db), "--allow-open-with-tenants"], open_env())


@pytest.mark.parametrize(
    ("name", "flag", "env"),
    [
        ("mcp", ["--allow-open-with-tenants"], {}),
        ("python -m api.mcp", ["--allow-open-with-tenants"], {}),
        ("python -m api.mcp", [], {OVERRIDE: "true"}),
    ],
)
def test_mcp_serves_open_when_told_to(
    name: str, flag: list[str], env: dict[str, str], tmp_path: Path
) -> None:
    db = tmp_path / "tenants.db"
    story(db)
    line = json.dumps(INITIALIZE).encode() + b"\n"
    args = [*COMMANDS[name], "--db", str(db), *flag]
    code, out, err = run(args, open_env(**env), tmp_path, line)
    assert code == 0, err[-2000:]
    assert json.loads(out.splitlines()[0])["result"]["protocolVersion"] == "2025-11-25"


def test_an_open_database_without_tenants_is_served_open(tmp_path: Path) -> None:
    db = tmp_path / "open.db"
    asyncio.run(_open_context(str(db)))
    _serves([*COMMANDS["serve"], "--db", str(db)], open_env())
    line = json.dumps(INITIALIZE).encode() + b"\n"
    code, out, err = run([*COMMANDS["mcp"], "--db", str(db)], open_env(), tmp_path, line)
    assert code == 0, err[-2000:]
    assert "result" in json.loads(out.splitlines()[0])


def test_the_override_is_a_yes_or_no() -> None:
    assert load_settings(env={OVERRIDE: "1"}).allow_open_with_tenants
    assert not load_settings(env={OVERRIDE: "0"}).allow_open_with_tenants
    assert not load_settings(env={}).allow_open_with_tenants
    assert load_settings(env={}, allow_open_with_tenants=True).allow_open_with_tenants
    with pytest.raises(SettingsError, match=OVERRIDE):
        load_settings(env={OVERRIDE: "perhaps"})
