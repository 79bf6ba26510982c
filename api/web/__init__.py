"""The web view at ``/ui``: a page and its static assets, shipped in this package.

A door like ``rest`` and ``mcp``, but it holds no data: the page is a client of the REST API
(``/api/v1``), with the same key and tenancy, so every answer it shows has been through the
gate. Nothing is fetched from elsewhere: every asset ships in ``static/``.
"""

from .routes import routes, setup

__all__ = ["routes", "setup"]
