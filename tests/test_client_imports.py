"""Importing the client is light and quiet: none of the server (aiohttp's web server, the
projections, the store, tokenizers), no network; and the wire words the schemas define for
the client's sake stay equal to the server's own."""

from __future__ import annotations

import json
import subprocess
import sys
import typing

from api.rest import schemas

PROBE = """
import json, sys
calls = []
def audit(event, args):
    if event.startswith(("socket.", "urllib.")):
        calls.append(event)
sys.addaudithook(audit)
import api.client
from api.client import AsyncClient, Client
AsyncClient("http://127.0.0.1:9", api_key="k")
Client("http://127.0.0.1:9", api_key="k").close()
print(json.dumps({"network": calls, "modules": sorted(sys.modules)}))
"""

SERVER_ONLY = (
    "aiohttp.web",
    "aiosqlite",
    "tiktoken",
    "cryptography",
    "projections",
    "api.app",
    "api.rest.routes",
    "api.rest.handlers",
    "api.formats",
    "api.mcp",
    "eventstore.sqlite",
    "eventstore.store",
)


def test_importing_the_client_imports_no_server_and_touches_no_network() -> None:
    out = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, check=True, timeout=60
    )
    found = json.loads(out.stdout)
    assert found["network"] == []
    loaded = [
        m for m in found["modules"] if any(m == p or m.startswith(p + ".") for p in SERVER_ONLY)
    ]
    assert loaded == []


def test_the_schemas_words_are_the_servers() -> None:
    from api import formats
    from projections import REPLY_PRIMING, Policy

    assert typing.get_args(schemas.Policy) == typing.get_args(Policy)
    assert typing.get_args(schemas.Format) == typing.get_args(formats.Format)
    assert schemas.REPLY_PRIMING == REPLY_PRIMING
