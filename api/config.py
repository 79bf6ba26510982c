"""Reading the settings table (``settings.py``) from flags, environment variables and a config
file, and showing it back: the effective configuration with secrets masked, and its reference.

Precedence: flags > ``CTXLOG_*`` variables > the file (``--config``, else ``CTXLOG_CONFIG``) >
defaults. A key the file does not know is an error that names it (and the nearest known
one): a typo must not silently leave a default in force. Empty variables count as unset.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import os
import tomllib
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, get_args, get_origin
from urllib.parse import urlsplit, urlunsplit

from projections.retention import RetentionPolicy

from .settings import ApiKey, Settings, SettingsError, Spec, fields, parse_keys, read_keys_file

CONFIG_ENV = "CTXLOG_CONFIG"
MASK = "***"
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


def env_names(name: str) -> tuple[str, ...]:
    """A setting's environment variables: ``CTXLOG_<NAME>``, then older names."""
    spec: Spec = _field(name).metadata["setting"]
    return (f"CTXLOG_{name.upper()}", *spec.env)


def flag_name(name: str) -> str:
    """A setting's flag: ``--max-body-bytes`` for ``max_body_bytes``."""
    return "--" + name.replace("_", "-")


def hints() -> dict[str, Any]:
    """Each setting's type, from its annotation."""
    return typing.get_type_hints(Settings)


@dataclass(frozen=True, slots=True)
class Resolved:
    """The effective settings and where each value came from (``default``, ``file PATH``,
    ``env NAME`` or ``flag --name``)."""

    settings: Settings
    sources: dict[str, str]
    config: str | None


def load_settings(
    *, env: Mapping[str, str] | None = None, config: str | None = None, **flags: Any
) -> Settings:
    """Settings from flags (keyword arguments; None: not given) over ``CTXLOG_*`` variables
    (``env``, default ``os.environ``) over a config file (``config``, else ``CTXLOG_CONFIG``)
    over defaults; SettingsError naming what is wrong and where."""
    return resolve(env=env, config=config, flags=flags).settings


def resolve(
    *, env: Mapping[str, str] | None, config: str | None, flags: Mapping[str, Any]
) -> Resolved:
    """The settings from ``flags`` (None: not given) over ``env`` over the file ``config``
    (else the one ``CTXLOG_CONFIG`` names) over defaults; SettingsError naming what is
    wrong and where."""
    env = os.environ if env is None else env
    unknown = sorted(set(flags) - {f.name for f in fields()})
    if unknown:
        raise TypeError(f"not settings: {', '.join(unknown)}")
    path = config or env.get(CONFIG_ENV) or None
    table = read_file(path) if path else {}
    types = hints()
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for f in fields():
        name, hint = f.name, types[f.name]
        given = flags.get(name)
        if given is not None:
            values[name] = parse(hint, given, flag_name(name))
            sources[name] = f"flag {flag_name(name)}"
            continue
        found = _from_env(name, hint, env)
        if found is not None:
            values[name], sources[name] = found
        elif name in table:
            values[name] = parse(hint, table[name], f"{name} in {path}")
            sources[name] = f"file {path}"
        else:
            sources[name] = "default"
    keys = list(values.get("api_keys", ()))
    if values.get("api_keys_file"):
        keys += read_keys_file(values["api_keys_file"])
    if len({key.key for key in keys}) != len(keys):
        raise SettingsError("an API key is configured twice")
    values["api_keys"] = tuple(keys)
    return Resolved(Settings(**values), sources, path)


def _from_env(name: str, hint: Any, env: Mapping[str, str]) -> tuple[Any, str] | None:
    """The value the environment gives (lists: every variable's entries, in order)."""
    given = [(var, env[var]) for var in env_names(name) if env.get(var)]
    if not given:
        return None
    if get_origin(hint) is tuple:
        items: list[Any] = []
        for var, raw in given:
            items += [i for i in parse(hint, raw, var) if i not in items]
        return tuple(items), "env " + ", ".join(var for var, _ in given)
    var, raw = given[0]
    return parse(hint, raw, var), f"env {var}"


def read_file(path: str) -> dict[str, Any]:
    """The keys of a TOML config file; SettingsError for one that cannot be read or parsed,
    or that holds a key no setting has (all such keys are named)."""
    try:
        with open(path, "rb") as f:
            table = tomllib.load(f)
    except OSError as e:
        raise SettingsError(f"cannot read the config file {path}: {e.strerror}") from e
    except tomllib.TOMLDecodeError as e:
        raise SettingsError(f"the config file {path} is not valid TOML: {e}") from e
    known = {f.name for f in fields()}
    unknown = [key for key in table if key not in known]
    if unknown:
        hints_ = []
        for key in unknown:
            close = difflib.get_close_matches(key, known, n=1)
            hints_.append(f"{key} (did you mean {close[0]}?)" if close else key)
        raise SettingsError(f"unknown keys in {path}: {', '.join(hints_)}")
    return table


# -- parsing one value ---------------------------------------------------------------------------


def parse(hint: Any, raw: Any, where: str) -> Any:
    """``raw`` (a string from a flag or variable, or a TOML value) as a value of ``hint``."""
    origin = get_origin(hint)
    if origin is Literal:
        choices = get_args(hint)
        if raw not in choices:
            raise SettingsError(f"{where} must be one of {', '.join(choices)}, not {raw!r}")
        return raw
    if origin is tuple:
        item = get_args(hint)[0]
        if isinstance(raw, str):
            entries: list[Any] = [e.strip() for e in raw.split(",") if e.strip()]
        elif isinstance(raw, list | tuple):
            entries = list(raw)
        else:
            raise SettingsError(f"{where} must be a list, not {raw!r}")
        return tuple(_ITEMS[item](entry, where) for entry in entries)
    return _SCALARS[hint](raw, where)


def _bool(raw: Any, where: str) -> bool:
    if isinstance(raw, bool):
        return raw
    text = str(raw).strip().lower()
    if text in _TRUE or text in _FALSE:
        return text in _TRUE
    raise SettingsError(f"{where} must be true or false, not {raw!r}")


def _int(raw: Any, where: str) -> int:
    if isinstance(raw, int) and not isinstance(raw, bool):
        return raw
    if isinstance(raw, str):
        try:
            return int(raw)
        except ValueError:
            pass
    raise SettingsError(f"{where} must be an integer, not {raw!r}")


def _float(raw: Any, where: str) -> float:
    value: float | None = None
    if isinstance(raw, int | float) and not isinstance(raw, bool):
        value = float(raw)
    elif isinstance(raw, str):
        try:
            value = float(raw)
        except ValueError:
            value = None
    if value is None or not math.isfinite(value):
        raise SettingsError(f"{where} must be a finite number, not {raw!r}")
    return value


def _str(raw: Any, where: str) -> str:
    if not isinstance(raw, str):
        raise SettingsError(f"{where} must be a string, not {raw!r}")
    return raw


def _name(raw: Any, where: str) -> str:
    return _str(raw, where).strip()


def _key(raw: Any, where: str) -> ApiKey:
    keys = parse_keys(_str(raw, where), source=where)
    if len(keys) != 1:
        raise SettingsError(f"{where}: an entry is not key:tenant:actor")
    return keys[0]


def _policy(raw: Any, where: str) -> RetentionPolicy:
    """``tenant:days[:erase]`` (a variable or flag) or ``{tenant, idle_days, erase}`` (a table
    of the file); ``""`` is the tenant of an open server's contexts (none)."""
    if isinstance(raw, str):
        parts = raw.split(":")
        if len(parts) not in (2, 3) or (len(parts) == 3 and parts[2] != "erase"):
            raise SettingsError(f"{where}: {raw!r} is not tenant:days or tenant:days:erase")
        table: dict[str, Any] = {"tenant": parts[0], "idle_days": parts[1]}
        table["erase"] = len(parts) == 3
    elif isinstance(raw, dict):
        table = dict(raw)
    else:
        raise SettingsError(f"{where}: a retention policy is a table, not {raw!r}")
    unknown = sorted(set(table) - {"tenant", "idle_days", "erase"})
    if unknown or "tenant" not in table or "idle_days" not in table:
        raise SettingsError(
            f"{where}: a retention policy has tenant, idle_days and erase"
            + (f" (unknown: {', '.join(unknown)})" if unknown else "")
        )
    days = _float(table["idle_days"], f"{where}: idle_days")
    if days <= 0:
        raise SettingsError(f"{where}: idle_days must be positive, not {days:g}")
    return RetentionPolicy(
        tenant=_str(table["tenant"], f"{where}: tenant"),
        idle_days=days,
        erase=_bool(table.get("erase", False), f"{where}: erase"),
    )


_SCALARS = {bool: _bool, int: _int, float: _float, str: _str}
_ITEMS = {str: _name, ApiKey: _key, RetentionPolicy: _policy}


# -- showing it back -----------------------------------------------------------------------


def masked(name: str, value: Any) -> Any:
    """``value`` as it may be shown: keys without their secret, a DSN without its password,
    any other secret as ``***`` when set."""
    if name == "api_keys":
        return [f"{MASK}:{key.tenant}:{key.actor}" for key in value]
    if name == "db" and "@" in value and "://" in value:
        parts = urlsplit(value)
        if parts.password:
            netloc = parts.netloc.replace(f":{parts.password}@", f":{MASK}@", 1)
            return urlunsplit(parts._replace(netloc=netloc))
    spec: Spec = _field(name).metadata["setting"]
    if spec.secret and value:
        return MASK
    if isinstance(value, tuple):
        return [_plain(item) for item in value]
    return value


def _plain(item: Any) -> Any:
    """A policy as its table; anything else as it is."""
    if isinstance(item, RetentionPolicy):
        return {"tenant": item.tenant, "idle_days": item.idle_days, "erase": item.erase}
    return item


def document(resolved: Resolved) -> dict[str, Any]:
    """The effective configuration as JSON-ready values, secrets masked."""
    return {f.name: masked(f.name, getattr(resolved.settings, f.name)) for f in fields()}


def render_toml(resolved: Resolved) -> str:
    """The effective configuration as a config file (secrets masked), each value with where it
    came from; tables (retention policies) last, as TOML wants."""
    lines = ["# ctxlog: the effective configuration (secrets masked)"]
    if resolved.config:
        lines.append(f"# config file: {resolved.config}")
    tables: list[str] = []
    for name, value in document(resolved).items():
        source = resolved.sources[name]
        if name == "retention":
            for policy in value:
                tables += ["", f"[[retention]]  # {source}"]
                tables += [f"{k} = {_toml(v)}" for k, v in policy.items()]
            if not value:
                lines.append(f"retention = []  # {source}")
            continue
        lines.append(f"{name} = {_toml(value)}  # {source}")
    return "\n".join([*lines, *tables]) + "\n"


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return json.dumps(value, ensure_ascii=False)  # a JSON string is a TOML basic string


def reference() -> list[dict[str, str]]:
    """One row per setting: key, type, variable, flag, default and what it does."""
    rows = []
    types = hints()
    for f in fields():
        spec: Spec = f.metadata["setting"]
        rows.append({
            "key": f.name,
            "type": _type_name(types[f.name]),
            "env": ", ".join(env_names(f.name)),
            "flag": flag_name(f.name) if spec.flag else "",
            "default": _toml(masked(f.name, f.default)),
            "doc": spec.doc,
        })  # fmt: skip
    return rows


def reference_markdown() -> str:
    """``reference`` as the README's table."""
    out = ["| key | type | variable | flag | default | |", "|---|---|---|---|---|---|"]
    for r in reference():
        cells = [f"`{r['key']}`", r["type"], f"`{r['env']}`", f"`{r['flag']}`" if r["flag"] else "",
                 f"`{r['default']}`", r["doc"].replace("|", "\\|")]  # fmt: skip
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out) + "\n"


def _type_name(hint: Any) -> str:
    origin = get_origin(hint)
    if origin is Literal:
        return " \\| ".join(get_args(hint))
    if origin is tuple:
        item = get_args(hint)[0]
        return {ApiKey: "keys", RetentionPolicy: "policies"}.get(item, "names")
    return {bool: "bool", int: "int", float: "number", str: "string"}[hint]


def _field(name: str) -> dataclasses.Field[Any]:
    for f in fields():
        if f.name == name:
            return f
    raise KeyError(name)
