"""Fuzzing from the contract: schemathesis generates requests from the OpenAPI document and
sends them to the real server; no answer may be a 5xx, every answer must be documented
(status, content type, headers, body schema) for its operation, and data the document calls
invalid must be refused. (``positive_data_acceptance`` is left out: the document cannot say
that a cursor must be one the server issued, or that an append needs a role or messages, so
schema-valid requests are rightly refused with a 400 there.)

A bounded number of examples per operation keeps this in CI (``CTXLOG_FUZZ_EXAMPLES``, default
15); ``scripts/fuzz.py`` runs the same with many more. Everything is local: the document comes
from the application factory, the requests go to loopback.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from api import Settings, appkeys, create_app
from tests.support.server_process import ServerProcess, serving

if TYPE_CHECKING:  # schemathesis names its OpenAPI case type for type checkers only
    from schemathesis.specs.openapi.schemas import OpenApiCase

EXAMPLES = int(os.environ.get("CTXLOG_FUZZ_EXAMPLES", "15"))
# CI runs the same examples every time; a longer run (scripts/fuzz.py) explores new ones.
DERANDOMIZE = "CTXLOG_FUZZ_EXAMPLES" not in os.environ
EXCLUDED = "^/mcp"
"""The MCP endpoint speaks JSON-RPC; it is fuzzed with its own tests."""

# The document as the server serves it; create_app opens nothing until the app starts.
DOCUMENT: dict[str, Any] = create_app(Settings(db="unused.db"))[appkeys.OPENAPI]
schema = schemathesis.openapi.from_dict(DOCUMENT).exclude(path_regex=EXCLUDED)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    db: Path = tmp_path_factory.mktemp("fuzz") / "fuzz.db"
    with serving(db) as proc:
        yield proc


STREAM = "/api/v1/events/stream"
"""Server-Sent Events never end: read the head of the answer, not the whole of it."""


def check_stream(case: OpenApiCase, server: ServerProcess, http: requests.Session) -> None:
    """The stream's status and content type as documented; a refusal validated in full."""
    headers = {"X-API-Key": "key-alice"}
    kwargs = case.as_transport_kwargs(base_url=server.url, headers=headers)
    with http.request(**kwargs, stream=True, timeout=30) as r:
        documented = case.operation.definition.raw["responses"]
        assert str(r.status_code) in documented, r.status_code
        if r.status_code == 200:
            assert r.headers["Content-Type"].startswith("text/event-stream")
            first = next(r.iter_lines())
            assert first.startswith((b"retry:", b":", b"id:"))
            return
        r.content  # noqa: B018 - a refusal is a whole JSON body: read it before closing
    case.validate_response(r, excluded_checks=[positive_data_acceptance], headers=headers)


@pytest.fixture(scope="module")
def http() -> Iterator[requests.Session]:
    with requests.Session() as session:
        yield session


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=DERANDOMIZE,
)
def test_the_server_answers_as_documented(
    case: schemathesis.Case, server: ServerProcess, http: requests.Session
) -> None:
    # Each case its own key: a generated key reused with another body is the documented 422
    # (idempotency_key_reused), which says nothing about the case at hand.
    if case.headers and "Idempotency-Key" in case.headers:
        case.headers["Idempotency-Key"] = f"fuzz-{uuid.uuid4()}"
    if case.operation.path == STREAM and case.method.upper() == "GET":
        check_stream(case, server, http)
        return
    case.call_and_validate(
        base_url=server.url,
        session=http,
        headers={"X-API-Key": "key-alice"},
        excluded_checks=[positive_data_acceptance],
        timeout=30,
    )
