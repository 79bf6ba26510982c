"""The hash chain over the global log: each event's hash covers the previous one and the event."""

from __future__ import annotations

import hashlib

import msgspec

GENESIS = bytes(32)
"""The 'previous hash' of the first event."""

_pack = msgspec.msgpack.Encoder().encode


def chain_hash(previous: bytes, fields: tuple[object, ...]) -> bytes:
    """SHA-256 over the previous hash and an event's canonical bytes.

    ``fields`` are a stored row's columns in order, all but the hash. The canonical bytes are
    their msgpack array: every field is typed and length-prefixed, so no two different rows
    share them, and every column of the row is covered.
    """
    return hashlib.sha256(previous + _pack(fields)).digest()
