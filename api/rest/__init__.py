"""The REST API under ``/api/v1`` (and the server's own ``/``, ``/healthz``, ``/docs``):
its route table, handlers, schemas, live streams and OpenAPI document."""

from .routes import routes

__all__ = ["routes"]
