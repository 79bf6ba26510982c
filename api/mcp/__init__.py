"""The Model Context Protocol: ctxlog's contexts as MCP tools, resources and prompts, over
Streamable HTTP (``/mcp`` of the running server, both protocol eras) and over stdio
(``python -m api.mcp --db PATH``, or ``ctxlog mcp``).

The MCP layer holds no business logic: every tool, resource and prompt is a call to the
contexts service (``projections.service.Contexts``), with the REST API's keys and tenants.
"""

from __future__ import annotations

from .http import routes, sessions_of, setup

__all__ = ["routes", "sessions_of", "setup"]
