"""ctxlog's HTTP API: REST, WebSocket and Server-Sent Events over the contexts service.

The server's names are imported when first used (PEP 562), not when the package is: the
client (``api.client``) imports ``api.rest.schemas`` without the server (aiohttp's web
server, the projections, the store).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .app import create_app
    from .settings import ApiKey, Settings, SettingsError

__all__ = ["ApiKey", "Settings", "SettingsError", "create_app"]

_SOURCES = {
    "create_app": ".app",
    "ApiKey": ".settings",
    "Settings": ".settings",
    "SettingsError": ".settings",
}


def __getattr__(name: str) -> Any:
    """A name of ``__all__``, imported from its module on first use and kept."""
    source = _SOURCES.get(name)
    if source is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(source, __name__), name)
    globals()[name] = value
    return value
