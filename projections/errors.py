"""Projection errors: one small tree the API layer maps to HTTP statuses in one place.

Suggested mapping (``api/errors.py`` owns it): ContextNotFound, MessageNotFound → 404;
ContextIsDeleted → 410 (or 404); ContextExists, DuplicateMessage, InvalidVersion → 409;
InvalidCommand → 422; EncodingUnavailable, UnknownModel → 422 (or 500 at startup);
MissingHistory is a caller bug → 500.
"""

from __future__ import annotations

from datetime import UTC, datetime


class ProjectionError(Exception):
    """The base of every error the projections package raises on purpose."""


class ContextNotFound(ProjectionError):
    """No context with this id exists (or the command needs one that does)."""

    def __init__(self, context_id: str) -> None:
        super().__init__(f"context {context_id!r} not found")
        self.context_id = context_id


class ContextNotYetCreated(ContextNotFound):
    """The context was asked for as of a time before it was created."""

    def __init__(self, context_id: str, at: datetime, created_at: datetime) -> None:
        super().__init__(context_id)
        self.args = (
            f"context {context_id!r} did not exist yet at {_iso(at)}: it was created at"
            f" {_iso(created_at)}",
        )
        self.at = at
        self.created_at = created_at


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")


class ContextExists(ProjectionError):
    """A command tried to create (or fork into) a context that already exists."""

    def __init__(self, context_id: str) -> None:
        super().__init__(f"context {context_id!r} already exists")
        self.context_id = context_id


class ContextIsDeleted(ProjectionError):
    """The context carries a tombstone; nothing more may happen to it.

    Named so as not to clash with the ``ContextDeleted`` event.
    """

    def __init__(self, context_id: str) -> None:
        super().__init__(f"context {context_id!r} is deleted")
        self.context_id = context_id


class MessageNotFound(ProjectionError):
    """No message with this id is in the context's current state."""

    def __init__(self, context_id: str, message_id: str) -> None:
        super().__init__(f"message {message_id!r} not found in context {context_id!r}")
        self.context_id = context_id
        self.message_id = message_id


class DuplicateMessage(ProjectionError):
    """A message with this id is already in the context."""

    def __init__(self, context_id: str, message_id: str) -> None:
        super().__init__(f"message {message_id!r} already exists in context {context_id!r}")
        self.context_id = context_id
        self.message_id = message_id


class InvalidVersion(ProjectionError):
    """A version outside what the context has (rollback target, fork point, time travel)."""

    def __init__(self, context_id: str, version: int, current: int) -> None:
        super().__init__(
            f"version {version} of context {context_id!r} is invalid: it must be between 1 "
            f"and {current}"
        )
        self.context_id = context_id
        self.version = version
        self.current = current


class InvalidCommand(ProjectionError):
    """A command that is well-formed but makes no sense for the context's current state."""


class MissingHistory(ProjectionError):
    """The fold needs a state it was not given (a fork's parent, a rollback before ``base``)."""


class EncodingUnavailable(ProjectionError):
    """A tiktoken encoding is neither bundled nor in tiktoken's local cache; nothing is fetched."""


class UnknownModel(ProjectionError):
    """No encoding is known for this model name."""


class ReadModelInUse(ProjectionError):
    """A rebuild could not replace the read model's file: another process has it open, or
    (``building``) is building its replacement."""

    def __init__(self, path: str, *, building: bool = False) -> None:
        super().__init__(
            f"the read model {path} is being rebuilt by another process: wait for it to finish,"
            " then run this again"
            if building
            else f"the read model {path} is open in another process (a running server?):"
            " stop it, then run this again"
        )
        self.path = path


class ProjectorElsewhere(ProjectionError):
    """A rebuild of a shared read model was refused: another node is its elected projector."""

    def __init__(self, path: str) -> None:
        super().__init__(
            f"another node is the projector of the shared read model ({path}): stop the nodes"
            " (or rebuild on that node), then run this again"
        )
        self.path = path


class ReadModelBehind(ProjectionError):
    """A batch starts past the read model's checkpoint (another node emptied it for a
    rebuild): the projector goes on from the stored checkpoint instead."""

    def __init__(self, stored: int, first: int) -> None:
        super().__init__(f"the read model is at position {stored}, the batch starts at {first}")
        self.stored = stored


class ProjectorBehind(ProjectionError, TimeoutError):
    """The read model cannot reach what a read or write needs right now: the projector is
    retrying after an error (``status`` ``behind`` for a transient one such as a full disk,
    ``failed`` for any other), or it did not get there in time. Retry after ``retry_after``
    seconds; nothing was lost (the log holds every acknowledged write)."""

    def __init__(self, status: str, reason: str, retry_after: int) -> None:
        super().__init__(f"the read model is {status}: {reason}")
        self.status = status
        self.reason = reason
        self.retry_after = retry_after
