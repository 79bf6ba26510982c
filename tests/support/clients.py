"""The aiohttp test client, typed for a ctxlog app (what ``aiohttp_client(create_app(...))``
returns)."""

from typing import TypeAlias

from aiohttp import web
from aiohttp.test_utils import TestClient

# TestClient is generic in its request and application types; a ctxlog app is a plain
# web.Application serving web.Request, named once here so that annotations stay short.
AppClient: TypeAlias = TestClient[web.Request, web.Application]
