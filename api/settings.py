"""Server settings: where to listen, which database, who may call, and how much they may send.

Values come from command-line flags, then ``CTXLOG_*`` environment variables, then defaults
(``Settings.load``). API keys are ``key:tenant:actor`` entries, comma-separated in
``CTXLOG_API_KEYS`` or one per line in a keys file (``#`` starts a comment).

Without keys the server is open: every caller is let in, with no tenant, and sees the whole
log. On a database that holds tenants' data it refuses to start (``refuse_open_with_tenants``)
unless ``CTXLOG_ALLOW_OPEN_WITH_TENANTS=1`` (``--allow-open-with-tenants``) says to serve it
anyway.

Per-key limits (``ratelimit.py``, ``mcp/sessions.py``): ``CTXLOG_RATE_LIMIT`` and
``CTXLOG_RATE_BURST``; ``CTXLOG_MAX_LIVE_PER_KEY`` and ``CTXLOG_MAX_LIVE`` (WebSockets, event
streams and MCP sessions' subscriptions); ``CTXLOG_MCP_SESSIONS_PER_KEY``,
``CTXLOG_MCP_MAX_SESSIONS`` and ``CTXLOG_MCP_SESSION_IDLE`` (seconds).
"""

from __future__ import annotations

import ipaddress
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080
DEFAULT_DB = "./ctxlog.db"
DEFAULT_MAX_BODY_BYTES = 1 << 20


class SettingsError(ValueError):
    """Settings the server must not start with (the message says what to change)."""


@dataclass(frozen=True, slots=True)
class ApiKey:
    """One configured key: the secret, and the tenant and actor it stands for."""

    key: str = field(repr=False)
    tenant: str
    actor: str


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything ``create_app`` needs; ``api_keys`` empty means an open (loopback-only) server."""

    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    db: str = DEFAULT_DB
    api_keys: tuple[ApiKey, ...] = ()
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    # How long a shutdown waits for in-flight requests before it closes them.
    shutdown_timeout: float = 10.0
    # Comment lines keep idle SSE streams and their proxies from timing out.
    sse_heartbeat: float = 15.0
    # Requests per second per API key (0: no rate limiting) and the bucket's size (0: one
    # second's worth); see api/ratelimit.py for why it is off by default.
    rate_limit: float = 0.0
    rate_burst: int = 0
    # Open WebSockets, event streams and MCP sessions' subscriptions, per API key and in all.
    max_live_per_key: int = 100
    max_live: int = 1000
    # MCP (handshake era) sessions per API key and in all, and the seconds one may go without
    # a request or an open event stream before it ends.
    mcp_sessions_per_key: int = 100
    mcp_max_sessions: int = 1000
    mcp_session_idle: float = 300.0
    # Seconds a client has to send a request body (408 after), and to send a request's
    # headers or its next request on an idle connection (closed after).
    body_timeout: float = 30.0
    keepalive_timeout: float = 75.0
    # Browser origins (besides loopback ones and the server's own) that may call /api/ and
    # /mcp; "*" allows any.
    allowed_origins: tuple[str, ...] = ()
    # Host names (with or without a port) that requests to /api/ and /mcp may name, besides
    # loopback names and the address the server binds; "*" allows any. A DNS-rebinding page
    # names its own host, so it is refused.
    allowed_hosts: tuple[str, ...] = ()
    # Serve open (no keys) a database that holds tenants' data, to every caller.
    allow_open_with_tenants: bool = False

    @property
    def open(self) -> bool:
        """True when no keys are configured: every caller is let in, with no tenant."""
        return not self.api_keys

    def check(self) -> None:
        """Raise SettingsError for a combination that must not serve: an open server that is
        reachable from other machines, a bad port, or a non-positive body limit."""
        if not 0 <= self.port <= 65535:
            raise SettingsError(f"port must be 0-65535, not {self.port}")
        if self.max_body_bytes < 1:
            raise SettingsError("the body limit must be at least 1 byte")
        if self.rate_limit < 0 or self.rate_burst < 0:
            raise SettingsError("the rate limit and its burst cannot be negative")
        if self.max_live_per_key < 1 or self.max_live < 1:
            raise SettingsError("the live connection limits must be at least 1")
        if self.mcp_sessions_per_key < 1 or self.mcp_max_sessions < 1:
            raise SettingsError("the MCP session limits must be at least 1")
        if self.mcp_session_idle <= 0:
            raise SettingsError("the MCP session idle timeout must be positive")
        if self.body_timeout <= 0 or self.keepalive_timeout <= 0:
            raise SettingsError("the body and keep-alive timeouts must be positive")
        if self.open and not is_loopback(self.host):
            raise SettingsError(
                f"refusing to serve without API keys on {self.host!r}, which is not a loopback"
                " address: set CTXLOG_API_KEYS (key:tenant:actor,…) or --api-keys-file, or"
                " bind to 127.0.0.1"
            )
        if is_wildcard(self.host) and not self.allowed_hosts:
            raise SettingsError(
                f"serving on {self.host!r} (every address) needs the host names clients use:"
                " set CTXLOG_ALLOWED_HOSTS (e.g. ctxlog.internal,10.0.0.5:8080), or * to"
                " accept any Host header"
            )

    @classmethod
    def load(
        cls,
        *,
        host: str | None = None,
        port: int | None = None,
        db: str | None = None,
        api_keys_file: str | None = None,
        max_body_bytes: int | None = None,
        allow_open_with_tenants: bool | None = None,
        env: Mapping[str, str] | None = None,
    ) -> Settings:
        """Settings from explicit values (flags) over ``CTXLOG_*`` variables over defaults."""
        env = os.environ if env is None else env
        keys = parse_keys(env.get("CTXLOG_API_KEYS", ""), source="CTXLOG_API_KEYS")
        keys_file = api_keys_file or env.get("CTXLOG_API_KEYS_FILE")
        if keys_file:
            keys += read_keys_file(keys_file)
        seen: set[str] = set()
        for key in keys:
            if key.key in seen:
                raise SettingsError("an API key is configured twice")
            seen.add(key.key)
        return cls(
            host=host or env.get("CTXLOG_HOST") or DEFAULT_HOST,
            port=port if port is not None else _int(env, "CTXLOG_PORT", DEFAULT_PORT),
            db=db or env.get("CTXLOG_DB") or DEFAULT_DB,
            api_keys=tuple(keys),
            max_body_bytes=(
                max_body_bytes
                if max_body_bytes is not None
                else _int(env, "CTXLOG_MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES)
            ),
            rate_limit=_float(env, "CTXLOG_RATE_LIMIT", 0.0),
            rate_burst=_int(env, "CTXLOG_RATE_BURST", 0),
            max_live_per_key=_int(env, "CTXLOG_MAX_LIVE_PER_KEY", 100),
            max_live=_int(env, "CTXLOG_MAX_LIVE", 1000),
            mcp_sessions_per_key=_int(env, "CTXLOG_MCP_SESSIONS_PER_KEY", 100),
            mcp_max_sessions=_int(env, "CTXLOG_MCP_MAX_SESSIONS", 1000),
            mcp_session_idle=_float(env, "CTXLOG_MCP_SESSION_IDLE", 300.0),
            body_timeout=_float(env, "CTXLOG_BODY_TIMEOUT", 30.0),
            keepalive_timeout=_float(env, "CTXLOG_KEEPALIVE_TIMEOUT", 75.0),
            # CTXLOG_MCP_ALLOWED_ORIGINS is the name from when only /mcp checked origins.
            allowed_origins=_names(env, "CTXLOG_ALLOWED_ORIGINS", "CTXLOG_MCP_ALLOWED_ORIGINS"),
            allowed_hosts=_names(env, "CTXLOG_ALLOWED_HOSTS"),
            allow_open_with_tenants=(
                allow_open_with_tenants
                if allow_open_with_tenants is not None
                else _bool(env, "CTXLOG_ALLOW_OPEN_WITH_TENANTS")
            ),
        )


def _names(env: Mapping[str, str], *variables: str) -> tuple[str, ...]:
    """The comma-separated entries of the variables, in order, without blanks or repeats."""
    names = [n.strip() for v in variables for n in env.get(v, "").split(",")]
    return tuple(dict.fromkeys(n for n in names if n))


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be an integer, not {raw!r}") from None


def _bool(env: Mapping[str, str], name: str) -> bool:
    raw = env.get(name, "").strip().lower()
    if raw in ("", "0", "false", "no", "off"):
        return False
    if raw in ("1", "true", "yes", "on"):
        return True
    raise SettingsError(f"{name} must be 1 or 0, not {raw!r}")


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a number, not {raw!r}") from None
    if not math.isfinite(value):
        raise SettingsError(f"{name} must be a finite number, not {raw!r}")
    return value


def refuse_open_with_tenants(has_tenants: bool, *, allowed: bool) -> None:
    """For a server without API keys: SettingsError when the database holds tenants' data
    (which it would serve, sealed content unsealed, to every caller) unless ``allowed``."""
    if has_tenants and not allowed:
        raise SettingsError(
            "refusing to serve without API keys: the database holds tenants' data, which an open"
            " server gives to every caller; set CTXLOG_API_KEYS (key:tenant:actor,…), or"
            " CTXLOG_ALLOW_OPEN_WITH_TENANTS=1 (--allow-open-with-tenants) to serve it open anyway"
        )


def parse_keys(text: str, *, source: str) -> list[ApiKey]:
    """``key:tenant:actor`` entries separated by commas or newlines; the key itself is never
    echoed in an error, only the entry's number."""
    keys = []
    lines = [line for line in text.splitlines() if not line.strip().startswith("#")]
    entries = [e.strip() for line in lines for e in line.split(",")]
    for n, entry in enumerate(entries, 1):
        if not entry:
            continue
        parts = entry.split(":")
        if len(parts) != 3 or not all(parts):
            raise SettingsError(f"{source}: entry {n} is not key:tenant:actor")
        keys.append(ApiKey(*parts))
    return keys


def read_keys_file(path: str) -> list[ApiKey]:
    """The keys in a file, one ``key:tenant:actor`` per line."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as e:
        raise SettingsError(f"cannot read the API keys file {path}: {e.strerror}") from e
    return parse_keys(text, source=path)


def is_wildcard(host: str) -> bool:
    """Whether binding ``host`` listens on every address (``0.0.0.0``, ``::``)."""
    try:
        return ipaddress.ip_address(host.strip("[]")).is_unspecified
    except ValueError:
        return host == ""


def is_loopback(host: str) -> bool:
    """Whether ``host`` only accepts connections from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
