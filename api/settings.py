"""Server settings: where to listen, which database, who may call, and how much they may send.

Values come from command-line flags, then ``CTXLOG_*`` environment variables, then defaults
(``Settings.load``). API keys are ``key:tenant:actor`` entries, comma-separated in
``CTXLOG_API_KEYS`` or one per line in a keys file (``#`` starts a comment).
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
DEFAULT_STREAM_BUFFER_BYTES = 1 << 20


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
    # Open WebSockets and event streams, per API key and in all.
    max_live_per_key: int = 100
    max_live: int = 1000
    # Bytes of events one live stream (SSE, WebSocket, MCP subscriptions) may hold that its
    # client has not taken yet; a stream further behind reads them from the log later.
    stream_buffer_bytes: int = DEFAULT_STREAM_BUFFER_BYTES
    # Seconds a client has to send a request body (408 after), and to send a request's
    # headers or its next request on an idle connection (closed after).
    body_timeout: float = 30.0
    keepalive_timeout: float = 75.0
    # Browser origins (besides loopback ones) that may use /mcp; "*" allows any.
    mcp_allowed_origins: tuple[str, ...] = ()

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
        if self.stream_buffer_bytes < 1:
            raise SettingsError("the stream buffer must be at least 1 byte")
        if self.body_timeout <= 0 or self.keepalive_timeout <= 0:
            raise SettingsError("the body and keep-alive timeouts must be positive")
        if self.open and not is_loopback(self.host):
            raise SettingsError(
                f"refusing to serve without API keys on {self.host!r}, which is not a loopback"
                " address: set CTXLOG_API_KEYS (key:tenant:actor,…) or --api-keys-file, or"
                " bind to 127.0.0.1"
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
            stream_buffer_bytes=_int(
                env, "CTXLOG_STREAM_BUFFER_BYTES", DEFAULT_STREAM_BUFFER_BYTES
            ),
            body_timeout=_float(env, "CTXLOG_BODY_TIMEOUT", 30.0),
            keepalive_timeout=_float(env, "CTXLOG_KEEPALIVE_TIMEOUT", 75.0),
            mcp_allowed_origins=tuple(
                o.strip() for o in env.get("CTXLOG_MCP_ALLOWED_ORIGINS", "").split(",") if o.strip()
            ),
        )


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be an integer, not {raw!r}") from None


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


def is_loopback(host: str) -> bool:
    """Whether ``host`` only accepts connections from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
