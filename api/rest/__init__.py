"""The REST API under ``/api/v1`` (and the server's own ``/``, the probes, ``/docs`` and
``/metrics``): its route table, handlers, schemas, live streams and OpenAPI document.

The route tables are imported when first used (PEP 562), so that ``api.rest.schemas``, which
the client shares, can be imported without the server.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .routes import metrics_routes, registration_order, routes

__all__ = ["metrics_routes", "registration_order", "routes"]


def __getattr__(name: str) -> Any:
    """``routes``, ``metrics_routes`` or ``registration_order``, imported on first use and
    kept."""
    if name not in __all__:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(".routes", __name__), name)
    globals()[name] = value
    return value
