"""The ``ctxlog`` command and its settings: flags over environment over defaults, API keys,
and the refusal to serve an open API beyond loopback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import click
import pytest

from api import Settings, SettingsError
from api.cli import cli, main
from api.config import load_settings
from api.settings import is_loopback, parse_keys
from tests.support.cli_helpers import child_env, invoke, story


def test_defaults() -> None:
    s = load_settings(env={})
    assert (s.host, s.port, s.db) == ("127.0.0.1", 8080, "./ctxlog.db")
    assert s.open
    assert s.max_body_bytes == 1 << 20


def test_environment_then_flags() -> None:
    env = {"CTXLOG_HOST": "::1", "CTXLOG_PORT": "9000", "CTXLOG_DB": "data/x.db"}
    s = load_settings(env=env)
    assert (s.host, s.port, s.db) == ("::1", 9000, "data/x.db")
    s = load_settings(host="127.0.0.2", port=7000, db="y.db", env=env)
    assert (s.host, s.port, s.db) == ("127.0.0.2", 7000, "y.db")
    with pytest.raises(SettingsError, match="CTXLOG_PORT"):
        load_settings(env={"CTXLOG_PORT": "eighty"})


def test_api_keys_from_env_and_file(tmp_path: Path) -> None:
    keys_file = tmp_path / "keys"
    keys_file.write_text("# comment\nk2:t2:a2\n\nk3:t2:a3\n")
    env = {"CTXLOG_API_KEYS": "k1:t1:a1, k4:t1:a4", "CTXLOG_API_KEYS_FILE": str(keys_file)}
    s = load_settings(env=env)
    assert [(k.tenant, k.actor) for k in s.api_keys] == [
        ("t1", "a1"), ("t1", "a4"), ("t2", "a2"), ("t2", "a3"),
    ]  # fmt: skip
    assert not s.open
    assert "k1" not in repr(s)  # keys never show up in logs of the settings


@pytest.mark.parametrize("text", ["k1", "k1:t1", "k1:t1:a1:x", ":t:a", "k::a"])
def test_malformed_keys_are_refused_without_echoing_them(text: str) -> None:
    with pytest.raises(SettingsError) as e:
        parse_keys(text, source="CTXLOG_API_KEYS")
    assert "k1" not in str(e.value)


def test_a_key_configured_twice_is_refused() -> None:
    with pytest.raises(SettingsError, match="twice"):
        load_settings(env={"CTXLOG_API_KEYS": "k:t:a,k:u:b"})


def test_loopback_rules() -> None:
    assert is_loopback("127.0.0.1")
    assert is_loopback("127.1.2.3")
    assert is_loopback("::1")
    assert is_loopback("localhost")
    assert not is_loopback("0.0.0.0")
    assert not is_loopback("192.168.1.2")
    assert not is_loopback("example.com")
    with pytest.raises(SettingsError, match="API keys"):
        Settings(host="0.0.0.0").check()
    keys = tuple(parse_keys("k:t:a", source="x"))
    with pytest.raises(SettingsError, match="CTXLOG_ALLOWED_HOSTS"):
        Settings(host="0.0.0.0", api_keys=keys).check()
    Settings(host="0.0.0.0", api_keys=keys, allowed_hosts=("ctxlog.internal",)).check()


def test_serve_flags_parse(monkeypatch: pytest.MonkeyPatch) -> None:
    serve = cli.commands["serve"]
    params = serve.make_context("serve", ["--port", "9001", "--db", "a.db"]).params
    assert (params["port"], params["db"], params["host"]) == (9001, "a.db", None)
    with pytest.raises(click.UsageError):
        serve.make_context("serve", ["--port", "eighty"])
    umasks: list[int] = []

    def umask(mask: int) -> int:
        umasks.append(mask)
        return 0o022

    monkeypatch.setattr(os, "umask", umask)
    assert main([]) == 2  # no command: usage
    assert umasks == [0o077]  # whatever the command creates is the owner's alone


def test_every_command_documents_the_exit_codes() -> None:
    for name in ["history", "replay", "show", "audit", "verify", "export", "import", "backup",
                 "rebuild", "stats"]:  # fmt: skip
        result = invoke(name, "--help")
        assert result.exit_code == 0
        assert "Exit codes:" in result.stdout
        assert "schema too new" in result.stdout
    assert "mcp" in invoke("--help").stdout


def test_python_dash_m_api_is_the_command() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "api", "--help"],
        capture_output=True, text=True, timeout=60, env=child_env(), check=False,
    )  # fmt: skip
    assert result.returncode == 0
    assert "verify" in result.stdout


def test_serve_refuses_an_open_public_bind() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "api", "serve", "--host", "0.0.0.0", "--db", ":memory:"],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin"},
        check=False,
    )
    assert result.returncode == 2
    assert "API keys" in result.stderr


def test_mcp_runs_the_stdio_server_on_the_database(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import api.mcp.stdio

    db = tmp_path / "chat.db"
    story(db)
    calls: list[str | None] = []
    statuses = iter([0, 2])

    def run_stdio(db: str | None = None, **options: Any) -> int:
        calls.append(db)
        return next(statuses)

    monkeypatch.setattr(api.mcp.stdio, "run_stdio", run_stdio)
    assert invoke("mcp", "--db", db).exit_code == 0
    monkeypatch.setenv("CTXLOG_DB", str(db))
    assert invoke("mcp").exit_code == 2  # its own status is the command's
    assert calls == [str(db), str(db)]  # CTXLOG_DB resolved as every command does
