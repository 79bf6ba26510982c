"""Opaque page cursors: a kind letter and a number, base64url without padding.

The letter keeps a cursor of one listing from being accepted by another.
"""

from __future__ import annotations

import base64

from .errors import InvalidCommand


def encode_cursor(kind: str, number: int) -> str:
    """The cursor for ``number`` (a position, an offset) in listings of ``kind``."""
    return base64.urlsafe_b64encode(f"{kind}{number}".encode()).decode().rstrip("=")


def decode_cursor(kind: str, cursor: str) -> int:
    """The number in a cursor of ``kind``; InvalidCommand for anything else."""
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        number = int(text[len(kind) :]) if text.startswith(kind) else -1
    except (ValueError, UnicodeDecodeError) as e:
        raise InvalidCommand(f"invalid cursor {cursor!r}") from e
    if not 0 <= number < 2**62:  # beyond any position or offset; SQLite takes 64 bits
        raise InvalidCommand(f"invalid cursor {cursor!r}")
    return number
