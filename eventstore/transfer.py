"""Export the log as NDJSON and import it into an empty store, every row byte for byte.

The file is a header line, then one line per row: every column as stored (``data`` and
``metadata`` base64, ``hash`` hex) plus ``prev_hash``, the hash of the row before it in the
log, so each line of a partial export (one context, one tenant) can be checked on its own.
An import keeps positions, versions, ids, timestamps and hashes; it checks the whole file
first (the hash chain, gap-free positions and versions, and that it is complete), so a
tampered or truncated export is refused, with the position named, before anything is
written.

Content of a data subject is sealed with that subject's key (``sealing``), and the keys live
beside the log, not in it. So a whole-log export also carries, after its events, one
``{"kind": "key", ...}`` line per subject key still in the key table; an import restores them
(wherever they are in the file), and the copy reads the same content. The keys are read after
the events, so a subject erased before the export ends has no key in it. A partial export
carries no keys: its sealed content stays sealed.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import IO, Annotated

import msgspec

from .continuity import ChainBroken, Continuity
from .errors import EventStoreError
from .events import MessageAppended
from .keystore import SubjectKey
from .recorder import NO_FILTER, LogFilter, Progress, StoredEvent
from .sealing import SealBroken, key_refs, unseal
from .store import EventStore, RecordedEvent, decode

FORMAT = "ctxlog-export"
FORMAT_VERSION = 2
"""Raised only for a change old importers cannot read; they refuse a newer one. Version 2
added key lines; a version 1 export has none, so its sealed content imports unreadable."""

ALL = "all"
"""The scope of a whole-log export, the only kind an import takes."""


class ExportHeader(msgspec.Struct, frozen=True, kw_only=True):
    """The first line: what the file is, which events it holds, and through which position."""

    format: str
    version: int
    scope: str
    """``all``, ``context:<id>`` or ``tenant:<tenant>``."""
    through: int
    """The head of the log when the export began; rows after it are not in the file."""
    exported_at: datetime


class ExportedEvent(msgspec.Struct, frozen=True, kw_only=True):
    """One row of the log as a line of the export."""

    position: int
    stream_id: str
    version: int
    event_id: str
    type: str
    recorded_at: int
    """Microseconds since the Unix epoch, UTC, as stored."""
    tenant: str | None
    actor: str | None
    data: bytes
    metadata: bytes
    prev_hash: str
    hash: str

    def row(self) -> StoredEvent:
        """The stored row this line stands for; ValueError if a hash is not hex."""
        return StoredEvent(
            self.position, self.stream_id, self.version, self.event_id, self.type, self.data,
            self.metadata, self.tenant, self.actor, self.recorded_at, bytes.fromhex(self.hash),
        )  # fmt: skip


class ExportedKey(msgspec.Struct, frozen=True, kw_only=True, tag_field="kind", tag="key"):
    """One subject key as a line of a whole-log export (``"kind": "key"``; event lines have
    no ``kind``)."""

    key_id: Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
    tenant: str | None
    subject: Annotated[str, msgspec.Meta(min_length=1)]
    key: Annotated[bytes, msgspec.Meta(min_length=32, max_length=32)]
    """The AES-256 key, base64."""
    created_at: Annotated[int, msgspec.Meta(ge=0)]
    """Microseconds since the Unix epoch, UTC, as stored."""

    def row(self) -> SubjectKey:
        """The key table's row this line stands for."""
        return SubjectKey(self.key_id, self.tenant or "", self.subject, self.key, self.created_at)


class BadExport(EventStoreError):
    """A file that is not a ctxlog export, or a line of it that cannot be read."""

    def __init__(self, line: int | None, reason: str) -> None:
        super().__init__(reason if line is None else f"line {line}: {reason}")
        self.line = line
        self.reason = reason


class TargetNotEmpty(EventStoreError):
    """An import into a store that already holds events (positions would clash)."""


class PartialExport(EventStoreError):
    """An import of an export of one context or tenant: its positions have gaps, so its
    hash chain cannot be continued; only a whole-log export can be imported."""


class Transferred(msgspec.Struct, frozen=True):
    """What an export wrote or an import stored: events, the head position and its hash,
    and subject keys."""

    events: int
    through: int
    head_hash: str
    keys: int = 0
    unreadable_keys: int = 0
    """Keys that seal content in the file but are not in it (subjects erased before the
    export, or an export from before keys were exported): that content reads as erased."""


_encoder = msgspec.json.Encoder()
_header_decoder = msgspec.json.Decoder(ExportHeader)
_event_decoder = msgspec.json.Decoder(ExportedEvent)
_key_decoder = msgspec.json.Decoder(ExportedKey)


class _Kind(msgspec.Struct):
    kind: object = "event"


_kind_decoder = msgspec.json.Decoder(_Kind)


async def export_log(
    store: EventStore,
    out: IO[bytes],
    *,
    filter: LogFilter = NO_FILTER,
    scope: str = ALL,
    progress: Progress | None = None,
    chunk: int = 5000,
) -> Transferred:
    """Write the log through its current head (only rows passing ``filter``) to ``out``,
    then, for a whole-log export (``scope`` ALL), every subject key.

    The whole log is read and its hash chain checked on the way, whatever the filter:
    ChainBroken at the first bad position, rather than an export nobody can import.
    """
    through = await store.head()
    header = ExportHeader(
        format=FORMAT, version=FORMAT_VERSION, scope=scope, through=through,
        exported_at=datetime.now(UTC),
    )  # fmt: skip
    out.write(_encoder.encode(header) + b"\n")
    end, written = Continuity(), 0
    while end.position < through:
        page = await store.recorder.read_all(
            end.position, min(chunk, through - end.position), NO_FILTER
        )
        if not page.events:
            raise ChainBroken(end.position + 1, f"position {end.position + 1} is missing")
        lines = []
        for row in page.events:
            previous = end.hash
            end.check((row,))
            if filter.matches(row):
                lines.append(_encoder.encode(_exported(row, previous)))
        if lines:
            out.write(b"\n".join(lines) + b"\n")
            written += len(lines)
        if progress is not None:
            progress(end.position, through)
    keys = await _export_keys(store, out, chunk) if scope == ALL else 0
    return Transferred(written, through, end.hash.hex(), keys)


async def _export_keys(store: EventStore, out: IO[bytes], chunk: int) -> int:
    # Read after the events: an erase that finished meanwhile leaves no key here.
    after, written = "", 0
    while page := await store.recorder.read_keys(after, chunk):
        out.write(b"\n".join(_encoder.encode(_exported_key(key)) for key in page) + b"\n")
        written += len(page)
        after = page[-1].key_id
    return written


def _exported_key(key: SubjectKey) -> ExportedKey:
    return ExportedKey(
        key_id=key.key_id, tenant=key.tenant or None, subject=key.subject, key=key.key,
        created_at=key.created_at,
    )  # fmt: skip


def _exported(row: StoredEvent, previous: bytes) -> ExportedEvent:
    return ExportedEvent(
        position=row.position, stream_id=row.stream_id, version=row.version,
        event_id=row.event_id, type=row.type, recorded_at=row.recorded_at, tenant=row.tenant,
        actor=row.actor, data=row.data, metadata=row.metadata, prev_hash=previous.hex(),
        hash=row.hash.hex(),
    )  # fmt: skip


def read_header(source: IO[bytes]) -> ExportHeader:
    """The export's header (its first line); BadExport if this is not a ctxlog export."""
    first = source.readline()
    try:
        header = _header_decoder.decode(first)
    except (msgspec.DecodeError, UnicodeDecodeError):
        raise BadExport(1, "not a ctxlog export (the first line is not its header)") from None
    if header.format != FORMAT:
        raise BadExport(1, f"not a ctxlog export (format {header.format!r})")
    if header.version > FORMAT_VERSION:
        raise BadExport(
            1,
            f"export format version {header.version} is newer than this ctxlog reads"
            f" ({FORMAT_VERSION}); upgrade ctxlog to import it",
        )
    return header


def _records(source: IO[bytes]) -> Iterator[tuple[int, ExportedEvent | ExportedKey]]:
    """(line number, record) for each line after the header; BadExport for a line that
    cannot be read."""
    for number, line in enumerate(source, start=2):
        if not line.strip():
            continue
        what = "event"
        record: ExportedEvent | ExportedKey
        try:
            # Only a line naming "kind" can be a key; event lines are decoded once.
            if b'"kind"' in line and (kind := _kind_decoder.decode(line).kind) != "event":
                if kind != "key":
                    raise BadExport(number, f"unknown record kind {kind!r}")
                what = "key"
                record = _key_decoder.decode(line)
            else:
                record = _event_decoder.decode(line)
        except (msgspec.DecodeError, UnicodeDecodeError) as e:
            raise BadExport(number, f"not an exported {what}: {e}") from None
        yield number, record


def _row(number: int, exported: ExportedEvent) -> StoredEvent:
    try:
        return exported.row()
    except ValueError as e:
        raise BadExport(number, f"not an exported event: {e}") from None


class _Checked:
    """What the first pass over an import learnt: the keys, by id, with their lines, and
    for each key id the first event sealed with it and a subject an event names for it."""

    def __init__(self) -> None:
        self.keys: dict[str, tuple[int, ExportedKey]] = {}
        self.subjects: set[tuple[str, str]] = set()
        self.sealed: dict[str, RecordedEvent] = {}
        self.named: dict[str, tuple[int, str]] = {}

    def key(self, number: int, record: ExportedKey) -> None:
        subject = (record.tenant or "", record.subject)
        if record.key_id in self.keys or subject in self.subjects:
            raise BadExport(number, f"a second key for key id {record.key_id} or its subject")
        self.keys[record.key_id] = (number, record)
        self.subjects.add(subject)

    def event(self, rec: RecordedEvent) -> None:
        refs = key_refs(rec.event)
        for ref in refs:
            # A key is best checked on content sealed with it alone: a broken layered seal
            # does not say which of its keys was changed.
            known = self.sealed.get(ref.key_id)
            if known is None or (len(refs) == 1 and len(key_refs(known.event)) > 1):
                self.sealed[ref.key_id] = rec
            if ref.subject:
                self.named.setdefault(ref.key_id, (rec.position, ref.subject))
        own = rec.event.metadata.get("subject") if isinstance(rec.event, MessageAppended) else None
        if len(refs) == 1 and isinstance(own, str) and own:
            self.named.setdefault(refs[0].key_id, (rec.position, own))

    def check_keys(self) -> int:
        """BadExport for a key line that was changed: its key does not open the content
        sealed with it, or it names another tenant or subject than that content. Returns the
        number of key ids sealing content whose key is not in the file."""
        every = {key_id: record.key for key_id, (_, record) in self.keys.items()}
        for key_id, (number, record) in self.keys.items():
            rec = self.sealed.get(key_id)
            if rec is None:
                continue
            try:
                unseal(rec.event, rec.event_id, every)
            except SealBroken:
                raise BadExport(
                    number,
                    f"key {key_id} does not open the content sealed with it at position"
                    f" {rec.position}: the key was changed",
                ) from None
            position, subject = self.named.get(key_id, (rec.position, record.subject))
            if (rec.metadata.tenant or "", subject) != (record.tenant or "", record.subject):
                raise BadExport(
                    number,
                    f"key {key_id} names another tenant or subject than the content sealed"
                    f" with it at position {position}",
                )
        return len(self.sealed.keys() - self.keys.keys())


async def import_log(
    store: EventStore,
    source: IO[bytes],
    *,
    checked: Progress | None = None,
    imported: Progress | None = None,
    chunk: int = 2000,
) -> Transferred:
    """Import a whole-log export into an empty store, keeping every column of every row,
    and restore the subject keys it carries.

    ``source`` must be seekable: it is read twice, first to check everything (nothing is
    written if it fails), then to store it; the keys, checked in the first pass, are stored
    before the events. Raises TargetNotEmpty, BadExport (with the line,
    also for a key that is malformed or does not open its content), PartialExport,
    ChainBroken (with the position), CorruptEvent or UnknownEventType.
    """
    if (await store.recorder.head())[0] != 0:
        raise TargetNotEmpty("the database already holds events; import into an empty one")
    if await store.recorder.read_keys("", 1):
        raise TargetNotEmpty("the database already holds subject keys; import into an empty one")
    header = read_header(source)
    if header.scope != ALL:
        raise PartialExport(
            f"this export holds only {header.scope}: its positions have gaps, so only an"
            " export of the whole log can be imported"
        )
    start = source.tell()
    end, seen = Continuity(), _Checked()
    for number, record in _records(source):
        if isinstance(record, ExportedKey):
            seen.key(number, record)
            continue
        row, before = _row(number, record), end.hash
        end.check((row,))
        if record.prev_hash != before.hex():
            raise ChainBroken(row.position, "prev_hash is not the hash of the row before")
        seen.event(decode(row))  # every event must be readable by this version of ctxlog
        if checked is not None and row.position % chunk == 0:
            checked(end.position, header.through)
    if checked is not None:
        checked(end.position, header.through)
    if end.position != header.through:
        raise BadExport(
            None,
            f"the export ends at position {end.position}, its header says through"
            f" {header.through}: it is truncated",
        )
    unreadable = seen.check_keys()
    # Keys first: a reader never meets sealed content before its key (a key cache would
    # remember it as destroyed).
    keys = [record.row() for _, record in seen.keys.values()]
    for at in range(0, len(keys), chunk):
        await store.recorder.import_keys(keys[at : at + chunk])
    source.seek(start)
    rows: list[StoredEvent] = []
    for number, record in _records(source):
        if isinstance(record, ExportedEvent):
            rows.append(_row(number, record))
        if len(rows) == chunk:
            await _store_rows(store, rows, header.through, imported)
            rows = []
    if rows:
        await _store_rows(store, rows, header.through, imported)
    head, head_hash = await store.recorder.head()
    if head != header.through:  # the file changed between the two passes
        raise BadExport(None, f"the export changed while it was imported (through {head})")
    return Transferred(head, head, head_hash.hex(), len(keys), unreadable)


async def _store_rows(
    store: EventStore, rows: list[StoredEvent], through: int, imported: Progress | None
) -> None:
    await store.recorder.import_rows(rows)
    if imported is not None:
        imported(rows[-1].position, through)
