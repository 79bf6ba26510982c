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

What is sealed, and under whose key (the caller names the subjects, see
``projections.base``): a message's content (``message.appended``, and every later
``message.edited`` of it) under the message's subject; a summary's text under the subjects of
every message it stands in for and of its context; a served window's digest
(``window.served``'s ``window_hash``, a sha256 of what the model saw) under the subjects of the
content it showed. Content of several subjects is sealed once per key, one layer around the
other (``Sealed.layers``): reading it takes every key, and destroying any one erases it.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import msgspec
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, hmac
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .codec import event_decoder
from .errors import InvalidEvent
from .events import (
    CheckpointContent,
    CheckpointSaved,
    CheckpointWritesRecorded,
    Content,
    EventBase,
    MessageAppended,
    MessageEdited,
    Sealed,
    SealLayer,
    SummaryAdded,
    WindowServed,
    WritesContent,
)

if TYPE_CHECKING:
    from .recorder import Recorder

ERASED = "[erased]"
"""What sealed content reads as once its subject's key is destroyed."""

_FIELD: dict[type[EventBase], str] = {
    MessageAppended: "content",
    MessageEdited: "content",
    SummaryAdded: "text",
    WindowServed: "window_hash",
    CheckpointSaved: "content",
    CheckpointWritesRecorded: "content",
}
"""The events that carry content (or a digest of it), and the field that holds it."""
_content_decoder = msgspec.json.Decoder(Content)
_text_decoder = msgspec.json.Decoder(str)
_DECODERS: dict[type[EventBase], msgspec.json.Decoder[Any]] = {
    MessageAppended: _content_decoder,
    MessageEdited: _content_decoder,
    SummaryAdded: _text_decoder,
    WindowServed: _text_decoder,
    CheckpointSaved: msgspec.json.Decoder(CheckpointContent),
    CheckpointWritesRecorded: msgspec.json.Decoder(WritesContent),
}
"""How each field's plaintext decodes once unsealed."""

_encode = msgspec.json.Encoder().encode
_NONCE_LABEL = b"ctxlog-nonce\x00"

SubjectKey = tuple[str, str, bytes]
"""(subject, key id, key): one subject's key, as ``seal`` takes them."""


class KeyRef(msgspec.Struct, frozen=True):
    """A key sealing an event's content, and the subject it is for ("" when the row does
    not say: sealed before subjects were kept in the seal)."""

    key_id: str
    subject: str


class SealBroken(ValueError):
    """Sealed content that does not decrypt under its own key: tampered with, or corrupt."""


def new_key() -> tuple[str, bytes]:
    """A fresh key id and 256-bit AES key."""
    return uuid.uuid4().hex, AESGCM.generate_key(bit_length=256)


def sealable(event: EventBase) -> bool:
    """Whether ``event`` carries content that a subject's key can seal."""
    return type(event) in _FIELD and getattr(event, "sealed", None) is None


def subject_of(event: EventBase, default: str | None) -> str | None:
    """The subject whose key seals ``event`` when the caller does not say: the message's own
    ``metadata.subject``, else ``default``; None when the event carries no content."""
    if not sealable(event):
        return None
    if isinstance(event, MessageAppended):
        own = event.metadata.get("subject")
        if isinstance(own, str) and own:
            return own
    return default


def subjects_for(
    events: Sequence[EventBase], default: str | None, given: Sequence[Sequence[str]] | None
) -> list[tuple[str, ...]]:
    """The subjects whose keys seal each event (none for an event without content): those
    ``given`` (one list per event), else a message's own ``metadata.subject``, else
    ``default``."""
    if given is None:
        found = [subject_of(e, default) if isinstance(e, EventBase) else None for e in events]
        return [() if name is None else (name,) for name in found]
    if len(given) != len(events):
        raise InvalidEvent("one list of subjects per event")
    return [
        tuple(sorted(set(names))) if isinstance(e, EventBase) and sealable(e) else ()
        for e, names in zip(events, given, strict=True)
    ]


def _nonce(key: bytes, event_id: str) -> bytes:
    mac = hmac.HMAC(key, hashes.SHA256())
    mac.update(_NONCE_LABEL + event_id.encode())
    return mac.finalize()[:12]


def seal(event: EventBase, event_id: str, keys: Sequence[SubjectKey]) -> EventBase:
    """``event`` with its content encrypted into ``sealed`` (under each of ``keys`` in turn,
    one layer each) and the plaintext field blank."""
    field = _FIELD[type(event)]
    data = _encode(getattr(event, field))
    associated = event_id.encode()
    nonces = []
    for _, _, key in keys:
        nonces.append(_nonce(key, event_id))
        data = AESGCM(key).encrypt(nonces[-1], data, associated)
    (subject, key_id, _), *more = keys
    layers = [
        SealLayer(key_id=k, nonce=n, subject=s)
        for (s, k, _), n in zip(more, nonces[1:], strict=True)
    ]
    sealed = Sealed(key_id=key_id, nonce=nonces[0], data=data, subject=subject, layers=layers)
    changes: dict[str, Any] = {field: "", "sealed": sealed}
    return msgspec.structs.replace(event, **changes)


def key_refs(event: EventBase) -> tuple[KeyRef, ...]:
    """The keys ``event`` is sealed with (none when it is not sealed), innermost first."""
    sealed = getattr(event, "sealed", None)
    if not isinstance(sealed, Sealed):
        return ()
    first = KeyRef(sealed.key_id, sealed.subject)
    return (first, *(KeyRef(layer.key_id, layer.subject) for layer in sealed.layers))


def unseal(event: EventBase, event_id: str, keys: Mapping[str, bytes | None]) -> EventBase:
    """``event`` with its content decrypted, or ``ERASED`` when any of its keys is gone."""
    sealed = getattr(event, "sealed", None)
    if not isinstance(sealed, Sealed):
        return event
    field = _FIELD[type(event)]
    steps = [(sealed.key_id, sealed.nonce), *((x.key_id, x.nonce) for x in sealed.layers)]
    found = [keys.get(key_id) for key_id, _ in steps]
    if any(key is None for key in found):
        return msgspec.structs.replace(event, **{field: ERASED, "sealed": None})
    data, associated = sealed.data, event_id.encode()
    try:
        for key, (_, nonce) in zip(reversed(found), reversed(steps), strict=True):
            assert key is not None
            data = AESGCM(key).decrypt(nonce, data, associated)
        value: object = _DECODERS[type(event)].decode(data)
    except (InvalidTag, ValueError, msgspec.DecodeError) as e:
        raise SealBroken(f"sealed content does not decrypt: {e!r}") from e
    return msgspec.structs.replace(event, **{field: value, "sealed": None})


def resealed(stored: bytes, new: bytes) -> bool:
    """Whether ``new`` is ``stored`` sealed again after one of its keys was destroyed: the
    same event, for the same subjects, with other keys (a subject has one key at a time, so
    another key id means the old key is gone). A retry of an append whose subject was erased
    since is then a replay, not a reuse of its event id for other content; what the old key
    sealed cannot be compared any more, so it is taken to be the same."""
    try:
        old, now = event_decoder.decode(stored), event_decoder.decode(new)
    except msgspec.DecodeError:
        return False
    before, after = key_refs(old), key_refs(now)
    if not before or len(before) != len(after):
        return False
    if any(a.subject and a.subject != b.subject for a, b in zip(before, after, strict=True)):
        return False
    if all(a.key_id == b.key_id for a, b in zip(before, after, strict=True)):
        return False  # the same keys seal the same content to the same bytes: this differs
    plain: dict[str, Any] = {"sealed": None}
    return msgspec.structs.replace(old, **plain) == msgspec.structs.replace(now, **plain)


class Keyring:
    """Subject keys with an in-process cache: one lookup per key, not per event.

    Another process may destroy a key at any time (an erasure through another server or the
    command line), so the cache is not trusted for long: it is emptied every ``TTL``
    seconds, and at once when this process learns of an erasure (``forget``: the store calls
    it whenever it reads a ``subject.erased`` event). A lookup that was in flight while the
    cache was emptied does not put what it found back (the generation moved on).
    """

    LIMIT = 10_000
    TTL = 2.0
    """Seconds a cached key (or its absence) is trusted."""

    def __init__(self, recorder: Recorder) -> None:
        self._recorder = recorder
        self._by_subject: dict[tuple[str, str], tuple[str, bytes]] = {}
        self._by_id: dict[str, bytes | None] = {}
        self._generation = 0
        self._since = time.monotonic()

    @property
    def generation(self) -> int:
        """Moves on each time the cache is emptied."""
        self._expire()
        return self._generation

    async def for_subject(self, tenant: str | None, subject: str, now_us: int) -> tuple[str, bytes]:
        """The (key id, key) sealing ``subject``'s content in ``tenant``, created on first use."""
        self._expire()
        found = self._by_subject.get((tenant or "", subject))
        if found is None:
            generation = self._generation
            found = await self._recorder.subject_key(tenant or "", subject, new_key(), now_us)
            if generation == self._generation:
                self._remember(self._by_subject, (tenant or "", subject), found)
        return found

    async def by_ids(self, key_ids: set[str]) -> Mapping[str, bytes | None]:
        """The keys of ``key_ids``; None for a destroyed one."""
        self._expire()
        # What the cache holds is taken now: the cache may be emptied while the missing ones
        # are looked up (an erasure, the TTL), and a key it held must not then read as None,
        # which is "destroyed" (content sealed with it and a new key would read "[erased]").
        keys = {key_id: self._by_id[key_id] for key_id in key_ids if key_id in self._by_id}
        missing = [key_id for key_id in key_ids if key_id not in keys]
        if not missing:
            return keys
        generation = self._generation
        found = await self._recorder.keys_by_id(missing)
        keys.update((key_id, found.get(key_id)) for key_id in missing)
        if generation == self._generation:
            for key_id in missing:
                self._remember(self._by_id, key_id, found.get(key_id))
        return keys

    async def destroy(self, tenant: str | None, subject: str) -> list[str]:
        """Destroy the subject's key in ``tenant``; the ids of the keys that were (0 or 1)."""
        destroyed = await self._recorder.destroy_subject_key(tenant or "", subject)
        self.forget()
        return destroyed

    def forget(self) -> None:
        """Empty the cache: a key may have been destroyed (here or in another process)."""
        self._by_subject.clear()
        self._by_id.clear()
        self._generation += 1
        self._since = time.monotonic()

    def _expire(self) -> None:
        if time.monotonic() - self._since > self.TTL:
            self.forget()

    def _remember(self, cache: dict[Any, Any], key: Any, value: Any) -> None:
        if len(cache) >= self.LIMIT:
            cache.clear()
        cache[key] = value
