"""Log lines as text or as JSON objects (one per line, for a log shipper), and the access log.

A JSON line carries ``time`` (UTC, RFC 3339), ``level``, ``logger``, ``message``, the fields a
call passes in ``extra={"fields": {...}}`` (the access log's route, status, …), and
``exception`` with the traceback when there is one. Nothing here adds an API key or message
content: the access log names the caller by tenant and actor only, and the rest of ctxlog
never logs either (``auth``, ``errors``).
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

ACCESS = logging.getLogger("ctxlog.access")
"""The access log: one line per request when ``access_log`` is on."""


class JsonFormatter(logging.Formatter):
    """One JSON object per record."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as a JSON line (no newline inside: tracebacks are escaped)."""
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            line.update(fields)
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """``time level logger: message key=value …`` (the fields of the access log appended)."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        """The usual line, then the record's fields as ``key=value``."""
        text = super().format(record)
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict) and fields:
            text += " " + " ".join(f"{k}={v}" for k, v in fields.items() if v is not None)
        return text


def setup_logging(fmt: str = "text", level: str = "info") -> None:
    """Log to stderr in ``fmt`` (``text`` or ``json``) from ``level`` up, replacing any
    handler the root logger had."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())


def access(
    method: str,
    route: str,
    status: int,
    seconds: float,
    request_id: str | None,
    tenant: str | None,
    actor: str | None,
) -> None:
    """One access log line; the route is the template (``/api/v1/contexts/{id}``), never
    the path, so ids and query strings (which can carry content) stay out of the log."""
    fields = {
        "method": method,
        "route": route,
        "status": status,
        "duration_ms": round(seconds * 1000, 3),
        "request_id": request_id,
        "tenant": tenant,
        "actor": actor,
    }
    ACCESS.info("%s %s %d", method, route, status, extra={"fields": fields})
