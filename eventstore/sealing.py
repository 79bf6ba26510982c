"""Crypto-shredding: content of a data subject is stored encrypted with that subject's key.

A subject is a user id named by ``metadata.subject``. Each (tenant, subject) has one key,
kept in a key table beside the log, never in event rows. Destroying the key erases every
event sealed with it, without touching the log: rows, versions and the hash chain (which
covers the ciphertext) stay as they were, and the content reads as ``ERASED``.

AES-GCM comes from ``cryptography``. The nonce is derived from the key and the event id
(HMAC-SHA256), not random: a retried append (same ids, same content) then seals to the same
bytes, so the log's durable idempotency, which compares stored bytes, keeps working. No nonce
is ever used for two stored ciphertexts under one key, because an event id is stored at most
once (the events table's unique index); a retry with other content is refused before storing.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import msgspec
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, hmac
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .events import Content, EventBase, MessageAppended, MessageEdited, Sealed, SummaryAdded

if TYPE_CHECKING:
    from .recorder import Recorder

ERASED = "[erased]"
"""What sealed content reads as once its subject's key is destroyed."""

_FIELD: dict[type[EventBase], str] = {
    MessageAppended: "content",
    MessageEdited: "content",
    SummaryAdded: "text",
}
"""The events that carry content, and the field that holds it."""

_encode = msgspec.json.Encoder().encode
_content_decoder = msgspec.json.Decoder(Content)
_NONCE_LABEL = b"ctxlog-nonce\x00"


class SealBroken(ValueError):
    """Sealed content that does not decrypt under its own key: tampered with, or corrupt."""


def new_key() -> tuple[str, bytes]:
    """A fresh key id and 256-bit AES key."""
    return uuid.uuid4().hex, AESGCM.generate_key(bit_length=256)


def sealable(event: EventBase) -> bool:
    """Whether ``event`` carries content that a subject's key can seal."""
    return type(event) in _FIELD and getattr(event, "sealed", None) is None


def subject_of(event: EventBase, default: str | None) -> str | None:
    """The subject whose key seals ``event``: the message's own ``metadata.subject``, else
    ``default`` (the context's); None when the event carries no content."""
    if not sealable(event):
        return None
    if isinstance(event, MessageAppended):
        own = event.metadata.get("subject")
        if isinstance(own, str) and own:
            return own
    return default


def _nonce(key: bytes, event_id: str) -> bytes:
    mac = hmac.HMAC(key, hashes.SHA256())
    mac.update(_NONCE_LABEL + event_id.encode())
    return mac.finalize()[:12]


def seal(event: EventBase, event_id: str, key_id: str, key: bytes) -> EventBase:
    """``event`` with its content encrypted into ``sealed`` and the plaintext field blank."""
    field = _FIELD[type(event)]
    nonce = _nonce(key, event_id)
    data = AESGCM(key).encrypt(nonce, _encode(getattr(event, field)), event_id.encode())
    changes: dict[str, Any] = {field: "", "sealed": Sealed(key_id=key_id, nonce=nonce, data=data)}
    return msgspec.structs.replace(event, **changes)


def sealed_key(event: EventBase) -> str | None:
    """The key id ``event`` is sealed with, if it is sealed."""
    sealed = getattr(event, "sealed", None)
    return sealed.key_id if isinstance(sealed, Sealed) else None


def unseal(event: EventBase, event_id: str, keys: Mapping[str, bytes | None]) -> EventBase:
    """``event`` with its content decrypted, or ``ERASED`` when its key is gone."""
    sealed = getattr(event, "sealed", None)
    if not isinstance(sealed, Sealed):
        return event
    field = _FIELD[type(event)]
    key = keys.get(sealed.key_id)
    if key is None:
        return msgspec.structs.replace(event, **{field: ERASED, "sealed": None})
    try:
        plain = AESGCM(key).decrypt(sealed.nonce, sealed.data, event_id.encode())
        value: object = (
            msgspec.json.decode(plain, type=str)
            if field == "text"
            else _content_decoder.decode(plain)
        )
    except (InvalidTag, ValueError, msgspec.DecodeError) as e:
        raise SealBroken(f"sealed content does not decrypt: {e!r}") from e
    return msgspec.structs.replace(event, **{field: value, "sealed": None})


class Keyring:
    """Subject keys with an in-process cache: one lookup per key, not per event.

    A key id is random and never reused, so a missing key stays missing and is cached as
    such. Destroying a key clears the cache; another process's caches are its own (erase
    through the running server, or restart it after a ``ctxlog erase``).
    """

    LIMIT = 10_000

    def __init__(self, recorder: Recorder) -> None:
        self._recorder = recorder
        self._by_subject: dict[tuple[str, str], tuple[str, bytes]] = {}
        self._by_id: dict[str, bytes | None] = {}

    async def for_subject(self, tenant: str | None, subject: str, now_us: int) -> tuple[str, bytes]:
        """The (key id, key) sealing ``subject``'s content in ``tenant``, created on first use."""
        found = self._by_subject.get((tenant or "", subject))
        if found is None:
            found = await self._recorder.subject_key(tenant or "", subject, new_key(), now_us)
            self._remember(self._by_subject, (tenant or "", subject), found)
        return found

    async def by_ids(self, key_ids: set[str]) -> Mapping[str, bytes | None]:
        """The keys of ``key_ids``; None for a destroyed one."""
        missing = [key_id for key_id in key_ids if key_id not in self._by_id]
        if missing:
            found = await self._recorder.keys_by_id(missing)
            for key_id in missing:
                self._remember(self._by_id, key_id, found.get(key_id))
        return {key_id: self._by_id.get(key_id) for key_id in key_ids}

    async def destroy(self, tenant: str | None, subject: str) -> int:
        """Destroy the subject's key in ``tenant``; how many keys were (0 or 1)."""
        destroyed = await self._recorder.destroy_subject_key(tenant or "", subject)
        self._by_subject.clear()
        self._by_id.clear()
        return destroyed

    def _remember(self, cache: dict[Any, Any], key: Any, value: Any) -> None:
        if len(cache) >= self.LIMIT:
            cache.clear()
        cache[key] = value
