"""Server settings: one table, the ``Settings`` fields, from which everything else derives.

Each field is declared once with ``setting(default, doc, ...)``: its name is the key in a
config file (``ctxlog.toml``), ``CTXLOG_<NAME>`` its environment variable and ``--<name>`` its
flag (``config.py`` reads all three, ``cli/config.py`` makes the flags and prints the
reference). Precedence: flags > environment > file > defaults. Adding a setting is one line
here; its type (str, int, float, bool, a ``Literal``, a tuple of names) says how it is parsed.

API keys are ``key:tenant:actor`` entries, comma-separated in ``CTXLOG_API_KEYS``, a list in
the file, or one per line in a keys file (``#`` starts a comment); they never have a flag
(a command line is visible to every user of the machine) and are masked when printed.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

from projections.retention import RetentionPolicy

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080
DEFAULT_DB = "./ctxlog.db"
DEFAULT_MAX_BODY_BYTES = 1 << 20
DEFAULT_STREAM_BUFFER_BYTES = 1 << 20
DEFAULT_RESPONSE_BUDGET_BYTES = 32 << 20
"""A whole-context answer's messages: a 10,000-message context of 500 characters each is
about 7.5 MB, and comes back whole, as the seed's contract promises."""

T = TypeVar("T")


class SettingsError(ValueError):
    """Settings the server must not start with (the message says what to change)."""


@dataclass(frozen=True, slots=True)
class ApiKey:
    """One configured key: the secret, and the tenant and actor it stands for."""

    key: str = field(repr=False)
    tenant: str
    actor: str


@dataclass(frozen=True, slots=True)
class Spec:
    """How one setting is given and shown (the type comes from the field's annotation)."""

    doc: str
    env: tuple[str, ...]
    """Its variables: ``CTXLOG_<NAME>`` first, then older names still read (lists: all)."""
    flag: bool
    """Whether ``ctxlog serve`` takes ``--<name>`` (not for secrets)."""
    secret: bool
    """Masked by ``ctxlog config``, never in a repr, never a flag."""
    minimum: float | None


def setting(
    default: T,
    doc: str,
    *,
    env: tuple[str, ...] = (),
    secret: bool = False,
    flag: bool = True,
    minimum: float | None = None,
) -> T:
    """A field of ``Settings``: its default, one line of documentation, older variable names
    (``env``) and the least value it takes (checked by ``Settings.check``)."""
    spec = Spec(doc, env, flag and not secret, secret, minimum)
    made: T = field(default=default, repr=not secret, metadata={"setting": spec})
    return made


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything ``create_app`` needs; ``api_keys`` empty means an open (loopback-only) server."""

    # -- where ---------------------------------------------------------------------------------
    host: str = setting(DEFAULT_HOST, "Address to bind (0.0.0.0 needs API keys and allowed_hosts).")
    port: int = setting(DEFAULT_PORT, "TCP port to listen on.", minimum=0)
    db: str = setting(DEFAULT_DB, "SQLite file or postgresql:// DSN of the log.")
    # -- who may call --------------------------------------------------------------------------
    api_keys: tuple[ApiKey, ...] = setting((), "API keys, key:tenant:actor each.", secret=True)
    api_keys_file: str = setting("", "File of key:tenant:actor lines, added to api_keys.")
    allowed_hosts: tuple[str, ...] = setting(
        (), "Host names clients may use besides loopback and the bound address (* any)."
    )
    allow_open_with_tenants: bool = setting(
        False, "Serve without API keys a database that holds tenants' data, to every caller."
    )
    allowed_origins: tuple[str, ...] = setting(
        (),
        "Browser origins allowed besides loopback and the server's own (* any).",
        env=("CTXLOG_MCP_ALLOWED_ORIGINS",),
    )
    # -- how much ------------------------------------------------------------------------------
    max_body_bytes: int = setting(DEFAULT_MAX_BODY_BYTES, "Request body limit in bytes.", minimum=1)
    response_budget_bytes: int = setting(
        DEFAULT_RESPONSE_BUDGET_BYTES,
        "Bytes of messages a whole-context answer holds; past it the rest pages (a next link).",
        minimum=0,
    )
    rate_limit: float = setting(0.0, "Requests per second per API key (0: no limit).", minimum=0)
    rate_burst: int = setting(
        0, "Requests a key may send at once (0: one second's worth).", minimum=0
    )
    max_live_per_key: int = setting(
        100, "Open WebSockets, event streams and MCP subscriptions per API key.", minimum=1
    )
    max_live_per_tenant: int = setting(
        500,
        "Open WebSockets, event streams and MCP subscriptions per tenant, all its keys together.",
        minimum=1,
    )
    max_live: int = setting(
        1000, "Open WebSockets, event streams and MCP subscriptions in all.", minimum=1
    )
    stream_buffer_bytes: int = setting(
        DEFAULT_STREAM_BUFFER_BYTES,
        "Bytes of events a live stream may hold that its client has not taken yet (past it,"
        " the stream reads them from the log later).",
        minimum=1,
    )
    mcp_sessions_per_key: int = setting(100, "MCP (handshake era) sessions per API key.", minimum=1)
    mcp_sessions_per_tenant: int = setting(
        500, "MCP (handshake era) sessions per tenant, all its keys together.", minimum=1
    )
    mcp_max_sessions: int = setting(1000, "MCP (handshake era) sessions in all.", minimum=1)
    mcp_session_idle: float = setting(
        300.0,
        "Seconds an MCP session may go without a request or an open stream before it ends.",
        minimum=0.001,
    )
    body_timeout: float = setting(
        30.0, "Seconds a client has to send a request body (408 after).", minimum=0.001
    )
    keepalive_timeout: float = setting(
        75.0, "Seconds an idle connection is kept open.", minimum=0.001
    )
    shutdown_timeout: float = setting(
        10.0, "Seconds a shutdown waits for requests in flight.", minimum=0
    )
    loop: Literal["auto", "uvloop", "asyncio"] = setting(
        "auto", "Event loop: uvloop, asyncio's own, or auto (uvloop where it is installed)."
    )
    sse_heartbeat: float = setting(
        15.0, "Seconds between comment lines on idle event streams.", minimum=0.01
    )
    min_version_wait: float = setting(
        5.0,
        "Seconds a read with min_version waits for this node to hold that version (503 after).",
        minimum=0,
    )
    # -- health --------------------------------------------------------------------------------
    ready_max_lag_seconds: float = setting(
        60.0,
        "/readyz fails while the oldest event the projector has not applied is older (0: off).",
        minimum=0,
    )
    ready_max_lag_events: int = setting(
        0, "/readyz fails while the projector is more events behind the log (0: off).", minimum=0
    )
    # -- observability -------------------------------------------------------------------------
    log_format: Literal["text", "json"] = setting(
        "text", "Log lines as text or as one JSON object each."
    )
    log_level: Literal["debug", "info", "warning", "error"] = setting("info", "Least level logged.")
    access_log: bool = setting(
        False, "Log every request: method, route, status, duration, request id, tenant, actor."
    )
    metrics: bool = setting(True, "Serve Prometheus metrics at /metrics.")
    metrics_token: str = setting("", "Bearer token /metrics requires (empty: none).", secret=True)
    tracing: Literal["off", "otlp", "console"] = setting(
        "off",
        "OpenTelemetry traces: off, otlp (OTEL_EXPORTER_OTLP_*) or console; needs ctxlog[otel].",
    )
    # -- retention -----------------------------------------------------------------------------
    retention: tuple[RetentionPolicy, ...] = setting(
        (),
        "Delete (and erase) a tenant's contexts idle that many days: tenant:days[:erase] each.",
    )
    retention_interval: float = setting(
        3600.0, "Seconds between applications of the retention policies.", minimum=1
    )

    @property
    def open(self) -> bool:
        """True when no keys are configured: every caller is let in, with no tenant."""
        return not self.api_keys

    def check(self) -> None:
        """Raise SettingsError for a value below its minimum or a combination that must not
        serve: an open server that is reachable from other machines, a bad port."""
        for f in fields():
            spec = f.metadata["setting"]
            value = getattr(self, f.name)
            if spec.minimum is not None and value < spec.minimum:
                raise SettingsError(f"{f.name} must be at least {spec.minimum:g}, not {value}")
        if self.port > 65535:
            raise SettingsError(f"port must be 0-65535, not {self.port}")
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
        tenants = [policy.tenant for policy in self.retention]
        if len(set(tenants)) != len(tenants):
            raise SettingsError("retention: a tenant has two policies")


def fields() -> tuple[dataclasses.Field[Any], ...]:
    """The settings, in the table's order."""
    return dataclasses.fields(Settings)


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
