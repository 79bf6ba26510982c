"""ctxlog's HTTP API: REST, WebSocket and Server-Sent Events over the contexts service."""

from .app import create_app
from .settings import ApiKey, Settings, SettingsError

__all__ = ["ApiKey", "Settings", "SettingsError", "create_app"]
