"""What ``verify`` can prove beyond the hash chain itself.

The chain proves the log is consistent with itself: each event's hash covers its predecessor
and its own bytes. Whoever can write the database can also truncate its last events, or
rewrite an event and recompute every hash after it, and the chain still verifies. An
**anchor** closes that gap up to a point: the position and hash of the head, written down
outside the database (a file a scheduled ``ctxlog verify --write-anchor`` keeps, a copy
sent elsewhere). Later, the event at that position must still have that hash: truncation
below it, and any rewrite at or before it, are then caught, because a recomputed chain
cannot reproduce the anchored hash. Events after the anchor are covered by the next one.

Keys: destroying a subject key erases its content, so a key row deleted behind ctxlog's back
"erases" without a trace. ``KeyLedger`` notes, while the chain is walked, every key that
sealed content and every key a ``subject.erased`` names; a key that sealed content, is gone
from the key table, and no erasure accounts for is reported.
"""

from __future__ import annotations

import os
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import msgspec

from .chain import GENESIS, chain_hash
from .codec import event_decoder
from .events import SubjectErased
from .recorder import NO_FILTER, ChainBreak, Progress, Recorder, StoredEvent
from .sealing import key_refs

ANCHOR_FORMAT = 1


class Anchor(msgspec.Struct, frozen=True, kw_only=True):
    """The head of the hash chain as it was at ``written_at``: the event at ``position``
    had hash ``hash`` (hex; position 0 is the empty log)."""

    ctxlog_anchor: int = ANCHOR_FORMAT
    position: int
    hash: str
    written_at: datetime


class BadAnchor(ValueError):
    """An anchor file that cannot be read as one."""


def write_anchor(path: str | Path, anchor: Anchor) -> None:
    """Write ``anchor`` to ``path`` as JSON, replacing it whole (never half written)."""
    target = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=target.name, suffix=".tmp", dir=target.parent or ".")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(msgspec.json.encode(anchor) + b"\n")
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_anchor(path: str | Path) -> Anchor:
    """The anchor in ``path``; FileNotFoundError, or BadAnchor if it is not one."""
    data = Path(path).read_bytes()
    try:
        anchor = msgspec.json.decode(data, type=Anchor)
    except msgspec.DecodeError as e:
        raise BadAnchor(f"{path} is not a ctxlog anchor: {e}") from None
    if anchor.ctxlog_anchor != ANCHOR_FORMAT or anchor.position < 0:
        raise BadAnchor(f"{path} is not a ctxlog anchor this ctxlog reads")
    return anchor


async def check_anchor(recorder: Recorder, anchor: Anchor, genesis: bytes) -> str | None:
    """Why the log does not hold the anchored event any more, or None when it does."""
    head = (await recorder.head())[0]
    if head < anchor.position:
        return (
            f"the log ends at position {head}, before the anchored position {anchor.position}:"
            " events were removed"
        )
    if anchor.position == 0:
        found = genesis
    else:
        (row,) = (await recorder.read_all(anchor.position - 1, 1, NO_FILTER)).events
        found = row.hash
    if found.hex() != anchor.hash:
        return (
            f"the event at position {anchor.position} does not have the anchored hash: the log"
            " was rewritten at or before it"
        )
    return None


class MissingKey(msgspec.Struct, frozen=True):
    """A subject key that sealed content, is gone, and no ``subject.erased`` accounts for:
    ``position`` is the first event it sealed, ``subject`` what the seal names ("" if it
    does not say)."""

    key_id: str
    subject: str
    position: int


class KeyLedger:
    """Keys seen while walking the log (``EventStore.verify``), to check against the key
    table at the end."""

    def __init__(self) -> None:
        self._first: dict[str, tuple[int, str, str]] = {}
        """key id → (first position, stream, subject) of the content it sealed."""
        self._erased: set[str] = set()
        self._unnamed: dict[str, int] = {}
        """stream → position of its last ``subject.erased`` that names no key (written by
        an older ctxlog): it accounts for keys of content sealed in that stream before it."""

    def note(self, row: StoredEvent) -> None:
        """Take one row of the log (cheap for rows that neither seal nor erase)."""
        if row.type != "subject.erased" and b'"sealed":{' not in row.data:
            return
        event = event_decoder.decode(row.data)
        if isinstance(event, SubjectErased):
            if event.key_ids:
                self._erased.update(event.key_ids)
            else:
                self._unnamed[row.stream_id] = row.position
            return
        for ref in key_refs(event):
            self._first.setdefault(ref.key_id, (row.position, row.stream_id, ref.subject))

    async def missing(self, recorder: Recorder) -> list[MissingKey]:
        """The keys that sealed content, are gone, and no erasure accounts for."""
        candidates = [key_id for key_id in self._first if key_id not in self._erased]
        found: set[str] = set()
        for start in range(0, len(candidates), 10_000):
            found.update(await recorder.keys_by_id(candidates[start : start + 10_000]))
        missing = []
        for key_id in candidates:
            position, stream, subject = self._first[key_id]
            if key_id in found or self._unnamed.get(stream, 0) > position:
                continue
            missing.append(MissingKey(key_id, subject, position))
        return sorted(missing, key=lambda m: m.position)


class VerifyReport(msgspec.Struct, frozen=True):
    """The outcome of walking the hash chain: how far it holds, and where it first breaks;
    with ``keys``, the subject keys gone with no erasure recorded (``integrity``)."""

    events: int
    head_hash: str
    broken: ChainBreak | None
    missing_keys: list[MissingKey] | None = None

    @property
    def ok(self) -> bool:
        """True when the whole log verifies."""
        return self.broken is None


async def walk_chain(
    recorder: Recorder, progress: Progress | None, chunk: int, *, keys: bool
) -> VerifyReport:
    """``EventStore.verify``: the hash chain recomputed over the whole log, page by page."""
    total = (await recorder.head())[0]
    previous, expected = GENESIS, 1
    ledger = KeyLedger() if keys else None
    while True:
        page = await recorder.read_all(expected - 1, chunk, NO_FILTER)
        for row in page.events:
            broken = _check_row(row, expected, previous)
            if broken is not None:
                return VerifyReport(expected - 1, previous.hex(), broken)
            if ledger is not None:
                ledger.note(row)
            previous, expected = row.hash, expected + 1
        if progress is not None:
            progress(expected - 1, max(total, expected - 1))
        if len(page.events) < chunk:
            missing = None if ledger is None else await ledger.missing(recorder)
            return VerifyReport(expected - 1, previous.hex(), None, missing)


def _check_row(row: StoredEvent, expected: int, previous: bytes) -> ChainBreak | None:
    if row.position != expected:
        return ChainBreak(expected, f"position {expected} is missing")
    recomputed = chain_hash(previous, msgspec.structs.astuple(row)[:-1])
    if recomputed != row.hash:
        return ChainBreak(row.position, "hash does not match the event and its predecessor")
    return None


def now() -> datetime:
    """The current time, UTC (an anchor's ``written_at``)."""
    return datetime.now(UTC)
