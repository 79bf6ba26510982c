"""One settings table, three ways in: flags > ``CTXLOG_*`` variables > a TOML config file >
defaults; unknown keys are refused by name; ``ctxlog config`` shows what they add up to, with
every secret masked; and the README's reference is the table's own."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from api import Settings, SettingsError
from api.config import env_names, flag_name, load_settings, reference_markdown, resolve
from api.settings import fields
from projections.retention import RetentionPolicy
from tests.support.cli_helpers import invoke

ROOT = Path(__file__).resolve().parents[1]


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "ctxlog.toml"
    path.write_text(text)
    return str(path)


def test_flags_beat_environment_beat_file_beat_defaults(tmp_path: Path) -> None:
    config = write(tmp_path, 'port = 7001\nhost = "::1"\ndb = "file.db"\nrate_limit = 5\n')
    env = {"CTXLOG_PORT": "7002", "CTXLOG_HOST": "127.0.0.3"}
    resolved = resolve(env=env, config=config, flags={"port": 7003})
    s = resolved.settings
    assert (s.port, s.host, s.db) == (7003, "127.0.0.3", "file.db")
    assert (s.rate_limit, s.max_live) == (5.0, 1000)
    assert resolved.sources["port"] == "flag --port"
    assert resolved.sources["host"] == "env CTXLOG_HOST"
    assert resolved.sources["db"] == f"file {config}"
    assert resolved.sources["max_live"] == "default"
    # The file can come from CTXLOG_CONFIG too; an empty variable is unset.
    s = load_settings(env={"CTXLOG_CONFIG": config, "CTXLOG_PORT": ""})
    assert (s.port, s.db) == (7001, "file.db")


def test_every_type_parses_from_every_source(tmp_path: Path) -> None:
    config = write(tmp_path, "\n".join([
        'allowed_hosts = ["a.example", "b.example:8080"]',
        "access_log = true",
        'log_format = "json"',
        "ready_max_lag_seconds = 2",
        'api_keys = ["k1:acme:ada"]',
        "[[retention]]",
        'tenant = "acme"',
        "idle_days = 30",
        "erase = true",
    ]))  # fmt: skip
    s = load_settings(env={}, config=config)
    assert s.allowed_hosts == ("a.example", "b.example:8080")
    assert (s.access_log, s.log_format, s.ready_max_lag_seconds) == (True, "json", 2.0)
    assert [(k.tenant, k.actor) for k in s.api_keys] == [("acme", "ada")]
    assert s.retention == (RetentionPolicy(tenant="acme", idle_days=30, erase=True),)
    env = {
        "CTXLOG_ALLOWED_HOSTS": "c.example, d.example",
        "CTXLOG_ACCESS_LOG": "off",
        "CTXLOG_RETENTION": "acme:7,globex:1.5:erase",
    }
    s = load_settings(env=env, config=config)
    assert s.allowed_hosts == ("c.example", "d.example")
    assert s.access_log is False
    assert s.retention == (
        RetentionPolicy(tenant="acme", idle_days=7),
        RetentionPolicy(tenant="globex", idle_days=1.5, erase=True),
    )
    s = load_settings(env=env, config=config, access_log=True, retention="x:3")
    assert s.access_log is True
    assert s.retention == (RetentionPolicy(tenant="x", idle_days=3),)


def test_unknown_keys_are_refused_by_name(tmp_path: Path) -> None:
    config = write(tmp_path, 'prot = 8080\nlog_fromat = "json"\nport = 1\n')
    with pytest.raises(SettingsError) as e:
        load_settings(env={}, config=config)
    assert "prot (did you mean port?)" in str(e.value)
    assert "log_fromat (did you mean log_format?)" in str(e.value)
    config = write(tmp_path, '[[retention]]\ntenant = "a"\nidle_days = 1\nerase_all = true\n')
    with pytest.raises(SettingsError, match="erase_all"):
        load_settings(env={}, config=config)


@pytest.mark.parametrize(
    ("text", "env", "message"),
    [
        ("port = 'eighty'", {}, "port in .* must be an integer"),
        ("", {"CTXLOG_PORT": "eighty"}, "CTXLOG_PORT must be an integer"),
        ("", {"CTXLOG_RATE_LIMIT": "inf"}, "CTXLOG_RATE_LIMIT must be a finite number"),
        ("", {"CTXLOG_LOG_FORMAT": "xml"}, "must be one of text, json"),
        ("", {"CTXLOG_ACCESS_LOG": "maybe"}, "must be true or false"),
        ("", {"CTXLOG_RETENTION": "acme"}, "tenant:days"),
        ("", {"CTXLOG_RETENTION": "acme:-1"}, "idle_days must be positive"),
        ("port = [", {}, "not valid TOML"),
    ],
)
def test_bad_values_say_where_they_came_from(
    tmp_path: Path, text: str, env: dict[str, str], message: str
) -> None:
    config = write(tmp_path, text)
    with pytest.raises(SettingsError, match=message):
        load_settings(env=env, config=config)


def test_minimums_and_duplicates_are_checked() -> None:
    with pytest.raises(SettingsError, match="max_live must be at least 1"):
        Settings(max_live=0).check()
    with pytest.raises(SettingsError, match="port must be 0-65535"):
        Settings(port=70000).check()
    policies = (RetentionPolicy(tenant="a", idle_days=1), RetentionPolicy(tenant="a", idle_days=2))
    with pytest.raises(SettingsError, match="two policies"):
        Settings(retention=policies).check()


def test_a_missing_config_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="cannot read the config file"):
        load_settings(env={}, config=str(tmp_path / "nope.toml"))


def test_every_setting_has_a_key_a_variable_and_a_flag_but_secrets() -> None:
    from api.cli.main import cli

    serve_flags = {opt for p in cli.commands["serve"].params for opt in p.opts + p.secondary_opts}
    for f in fields():
        spec = f.metadata["setting"]
        assert env_names(f.name)[0] == f"CTXLOG_{f.name.upper()}"
        assert spec.doc
        if spec.secret:
            assert flag_name(f.name) not in serve_flags, "a secret on a command line"
        else:
            assert flag_name(f.name) in serve_flags, f.name
    assert "--config" in serve_flags


def test_ctxlog_config_prints_the_effective_configuration_masked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = write(tmp_path, 'api_keys = ["file-secret:acme:ada"]\nport = 7001\n')
    monkeypatch.setenv("CTXLOG_API_KEYS", "env-secret:acme:bob")
    monkeypatch.setenv("CTXLOG_METRICS_TOKEN", "token-secret")
    dsn = "postgresql://ctxlog:pg-secret@db.internal/ctxlog"
    result = invoke("config", "--config", config, "--db", dsn, "--port", "7002")
    assert result.exit_code == 0, result.stderr
    text = result.stdout
    for secret in ("file-secret", "env-secret", "token-secret", "pg-secret"):
        assert secret not in text
    assert 'api_keys = ["***:acme:bob"]  # env CTXLOG_API_KEYS' in text
    assert 'metrics_token = "***"' in text
    assert "port = 7002  # flag --port" in text
    assert "postgresql://ctxlog:***@db.internal/ctxlog" in text
    # What it prints is itself a config file that loads back to the same settings.
    (tmp_path / "back.toml").write_text(text.replace('"***:acme:bob"', '"k:acme:bob"'))
    again = load_settings(env={}, config=str(tmp_path / "back.toml"))
    assert (again.port, again.db) == (7002, dsn.replace("pg-secret", "***"))
    printed = invoke("config", "--config", config, "--format", "json").stdout
    doc: dict[str, Any] = json.loads(printed)
    assert doc["port"] == 7001
    assert doc["api_keys"] == ["***:acme:bob"]


def test_ctxlog_config_refuses_bad_settings_with_exit_2(tmp_path: Path) -> None:
    config = write(tmp_path, "prot = 1\n")
    result = invoke("config", "--config", config)
    assert result.exit_code == 2
    assert "prot (did you mean port?)" in result.stderr
    result = invoke("config", "--host", "0.0.0.0")
    assert result.exit_code == 2
    assert "API keys" in result.stderr


def test_serve_refuses_unknown_keys_before_listening(tmp_path: Path) -> None:
    config = write(tmp_path, "prot = 1\n")
    result = invoke("serve", "--config", config, "--db", str(tmp_path / "x.db"))
    assert result.exit_code == 2
    assert "unknown keys" in result.stderr
    assert not (tmp_path / "x.db").exists()


def test_the_readme_reference_is_the_table() -> None:
    readme = (ROOT / "README.md").read_text()
    table = reference_markdown()
    assert table in readme, (
        "the README's settings table differs from api/settings.py:"
        " paste the output of `ctxlog config --reference` into README.md"
    )
    # And every variable the README names elsewhere is a setting's (or a client's own).
    named = set(re.findall(r"CTXLOG_[A-Z_]+", readme))
    known = {name for f in fields() for name in env_names(f.name)}
    others = {"CTXLOG_CONFIG", "CTXLOG_API_KEY", "CTXLOG_TEST_PG_DSN"}
    assert named <= known | others, named - known - others
