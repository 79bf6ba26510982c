"""Helpers for testing the API in-process (the tests and the benchmark use them).

``ApiClient`` wraps aiohttp's TestClient: it sends a tenant's key, reads each response whole,
and checks every JSON response against the OpenAPI document (status documented, body valid),
so every test doubles as a check that the document tells the truth. Needs ``jsonschema``
(a test dependency), imported only when a client is made.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

import msgspec
from aiohttp import web
from aiohttp.test_utils import TestClient
from multidict import CIMultiDict

from .settings import ApiKey, Settings

KEYS = (
    ApiKey("key-alice", "tenant-a", "alice"),
    ApiKey("key-ann", "tenant-a", "ann"),
    ApiKey("key-bob", "tenant-b", "bob"),
)
"""Two tenants: ``key-alice`` and ``key-ann`` share tenant-a; ``key-bob`` is tenant-b."""


def settings(db: str, keys: tuple[ApiKey, ...] = KEYS, **kwargs: Any) -> Settings:
    """Settings for a test server on ``db`` with the test keys."""
    return Settings(db=db, api_keys=keys, **kwargs)


class Reply(msgspec.Struct):
    """A response read whole: status, headers, raw body and parsed JSON (None if not JSON)."""

    status: int
    headers: CIMultiDict[str]
    body: bytes
    json: Any


class Checker:
    """Validates responses against an OpenAPI document's schemas."""

    def __init__(self, doc: dict[str, Any]) -> None:
        import jsonschema  # noqa: PLC0415 - a test dependency, only needed here

        self._validator = jsonschema.Draft202012Validator
        self.doc = doc
        self._routes = [
            (re.compile("^" + re.sub(r"{\w+}", "[^/]+", path) + "$"), path) for path in doc["paths"]
        ]
        self._error = {"$ref": "#/components/schemas/ErrorOut"}

    def operation(self, method: str, path: str) -> tuple[str, dict[str, Any]] | None:
        """The documented (template, operation) serving a concrete path, if any."""
        for pattern, template in self._routes:
            if pattern.match(path):
                op = self.doc["paths"][template].get(method.lower())
                if op is not None:
                    return template, op
        return None

    def check(self, method: str, path: str, status: int, body: Any, content_type: str) -> None:
        """Raise AssertionError when the response is not what the document says."""
        found = self.operation(method, path)
        if found is None:
            # Unknown routes and methods: still the one error shape.
            assert status >= 400, f"{method} {path} is not documented"
            self._validate(self._error, body)
            return
        template, op = found
        response = op["responses"].get(str(status))
        assert response is not None, f"{method} {template}: status {status} is not documented"
        content = response.get("content")
        if content is None:
            assert not body, f"{method} {template} {status}: documented without a body"
            return
        if content_type not in content:
            raise AssertionError(f"{method} {template} {status}: {content_type} not documented")
        self._validate(content[content_type]["schema"], body)

    def _validate(self, schema: dict[str, Any], body: Any) -> None:
        full = {"components": self.doc["components"], **schema}
        errors = list(self._validator(full).iter_errors(body))
        assert not errors, f"response does not match its schema: {errors[0].message} at " + (
            "/".join(map(str, errors[0].absolute_path))
        )


class ApiClient:
    """A TestClient that sends one key and checks each response against the document."""

    def __init__(
        self,
        client: TestClient[web.Request, web.Application],
        doc: dict[str, Any],
        key: str | None = None,
    ) -> None:
        self.client = client
        self.key = key
        self.checker = Checker(doc)

    def as_key(self, key: str | None) -> ApiClient:
        """The same client, sending another key (None: no key)."""
        other = ApiClient.__new__(ApiClient)
        other.client, other.key, other.checker = self.client, key, self.checker
        return other

    async def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        data: bytes | str | None = None,
        headers: dict[str, str] | None = None,
        expect: int | None = None,
    ) -> Reply:
        """Send a request; ``json`` is encoded with msgspec; ``expect`` asserts the status."""
        sent = dict(headers or {})
        if self.key is not None:
            sent.setdefault("X-API-Key", self.key)
        if json is not None:
            data = msgspec.json.encode(json)
            sent.setdefault("Content-Type", "application/json")
        async with self.client.request(method, path, data=data, headers=sent) as response:
            body = await response.read()
            content_type = response.content_type
            parsed = msgspec.json.decode(body) if content_type == "application/json" else None
            reply = Reply(response.status, CIMultiDict(response.headers), body, parsed)
        if content_type == "application/json" or not body:
            self.checker.check(method, path.partition("?")[0], reply.status, parsed, content_type)
        if expect is not None:
            assert reply.status == expect, f"{method} {path}: {reply.status} {body[:500]!r}"
        return reply

    async def get(self, path: str, **kwargs: Any) -> Reply:
        """GET ``path``."""
        return await self.request("GET", path, **kwargs)

    async def post(self, path: str, json: Any = None, **kwargs: Any) -> Reply:
        """POST ``json`` to ``path``."""
        return await self.request("POST", path, json=json, **kwargs)

    async def patch(self, path: str, json: Any = None, **kwargs: Any) -> Reply:
        """PATCH ``path`` with ``json``."""
        return await self.request("PATCH", path, json=json, **kwargs)

    async def put(self, path: str, json: Any = None, **kwargs: Any) -> Reply:
        """PUT ``json`` to ``path``."""
        return await self.request("PUT", path, json=json, **kwargs)

    async def delete(self, path: str, **kwargs: Any) -> Reply:
        """DELETE ``path``."""
        return await self.request("DELETE", path, **kwargs)

    async def wait_ready(self, within: float = 10.0) -> None:
        """Until ``/healthz`` says ok (the projector has caught up)."""
        async with asyncio.timeout(within):
            # Polling is the point: readiness is what /healthz says, as a client sees it.
            while (await self.get("/healthz")).status != 200:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
