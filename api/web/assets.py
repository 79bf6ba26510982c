"""The web view's files, read once from the package (``api/web/static``), and the headers
every answer under ``/ui`` carries.

Assets are few and small, so they are held in memory with a strong ETag each (a digest of
their bytes) and revalidated by the browser on every load (``no-cache``): a new version of
ctxlog can never be mixed with an old cached script.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from importlib import resources

PAGE = "index.html"
TYPES = {
    ".js": "text/javascript",
    ".css": "text/css",
    ".svg": "image/svg+xml",
    ".html": "text/html",
}
ASSET_NAME = re.compile(r"[a-z][a-z0-9-]{0,63}\.(?:js|css|svg)")
"""What an asset's name may be: no path, no dot-files, nothing to traverse with."""

CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",  # modules from /ui/assets only: no inline script, no eval
        "style-src 'self'",
        "img-src 'self'",  # an image URL in a message is shown as text, never loaded
        "connect-src 'self'",  # the REST API of this server, nothing else
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    )
)
HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",  # frame-ancestors for browsers that predate it
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}
"""Set on every answer under ``/ui`` (errors too)."""


@dataclass(frozen=True, slots=True)
class Asset:
    """One file: its bytes, media type and ETag."""

    body: bytes
    content_type: str
    etag: str


def _asset(name: str, body: bytes) -> Asset:
    suffix = name[name.rindex(".") :]
    digest = hashlib.sha256(body).hexdigest()[:20]
    return Asset(body, TYPES[suffix], f'"{digest}"')


def load() -> dict[str, Asset]:
    """Every file of ``static/`` by name (the page as ``index.html``); RuntimeError when the
    page is missing (a broken install fails at start, not at the first visit)."""
    root = resources.files(__package__) / "static"
    found = {}
    for entry in root.iterdir():
        name = entry.name
        if entry.is_file() and (name == PAGE or ASSET_NAME.fullmatch(name)):
            found[name] = _asset(name, entry.read_bytes())
    if PAGE not in found:
        raise RuntimeError("the web view's index.html is missing from the package")
    return found
