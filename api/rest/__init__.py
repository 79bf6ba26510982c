"""The REST API under ``/api/v1`` (and the server's own ``/``, the probes, ``/docs`` and
``/metrics``): its route table, handlers, schemas, live streams and OpenAPI document."""

from .routes import metrics_routes, routes

__all__ = ["metrics_routes", "routes"]
