"""Which data subjects a piece of content belongs to: whose keys seal it (``eventstore.sealing``)
and so whose erasure erases it.

- A message belongs to its own ``metadata.subject``, else to its context's subject when it
  was appended. Every later edit of it belongs to the same subject (an edit is that message's
  content), or, for a message that had none, to the context's subject at the edit.
- A summary belongs to the subjects of every message it stands in for (all of the context's
  messages through ``through_message_id``), and to its context's subject.
- A served window's digest (``window.served``'s ``window_hash``) belongs to the subjects of
  the messages and the summary it showed, and to its context's subject.

The log says which subjects sealed each event (``RecordedEvent.sealed_by``); the fold and the
projector read a message's and a summary's subjects from there (``sealed_subject`` and
``sealed_subjects``), so both agree. Rows sealed before subjects were kept in the seal fall
back to what the service sealed them under then: the message's own subject, else the
context's.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from eventstore import RecordedEvent


def named(metadata: Mapping[str, Any]) -> str | None:
    """The ``subject`` a metadata object names (a non-empty string), or None."""
    found = metadata.get("subject")
    return found if isinstance(found, str) and found else None


def sealed_subject(
    rec: RecordedEvent,
    own: Mapping[str, Any],
    context: Mapping[str, Any],
    current: str | None = None,
) -> str | None:
    """The subject of a message after ``rec`` (its append or an edit of it): the one whose
    key sealed it; ``current`` (the message's subject so far) when it is not sealed, or for
    an append, its own metadata's. ``own`` is the message's metadata, ``context`` its
    context's at that point."""
    if not rec.sealed_by:
        return current if current is not None else named(own)
    subject = rec.sealed_by[0].subject
    return subject or current or named(own) or named(context)


def sealed_subjects(rec: RecordedEvent, context: Mapping[str, Any]) -> tuple[str, ...]:
    """The subjects whose keys sealed ``rec`` (a summary), in order; for a row that does not
    say, the context's subject."""
    found = tuple(ref.subject for ref in rec.sealed_by if ref.subject)
    if found or not rec.sealed_by:
        return found
    subject = named(context)
    return () if subject is None else (subject,)


def for_message(own: Mapping[str, Any], context: Mapping[str, Any]) -> list[str]:
    """The subjects to seal a new message under."""
    subject = named(own) or named(context)
    return [] if subject is None else [subject]


def for_edit(message_subject: str | None, context: Mapping[str, Any]) -> list[str]:
    """The subjects to seal an edit under, given the edited message's subject."""
    subject = message_subject or named(context)
    return [] if subject is None else [subject]


def covering(subjects: Iterable[str | None], context: Mapping[str, Any]) -> list[str]:
    """The subjects to seal content that stands for content of ``subjects`` under (a summary,
    a window's digest): all of them and the context's, each once, in a stable order."""
    found = {subject for subject in subjects if subject}
    if (own := named(context)) is not None:
        found.add(own)
    return sorted(found)
