"""The contexts service's commands for an agent framework's state (a LangGraph thread is a
context): save a checkpoint, record a task's writes, remove checkpoints. Each is one event
appended like any command (tenant checked, idempotency key, If-Match); ctxlog does not read
what they hold, so the only check is that the context is the caller's and not deleted.
Readers (``api.client.langgraph``) fold these events from the context's history.
"""

from __future__ import annotations

from eventstore import (
    CheckpointSaved,
    CheckpointsRemoved,
    CheckpointWritesRecorded,
    ExpectedVersion,
)

from .calls import Caller, Written
from .commands import Commands
from .errors import InvalidCommand
from .tables import ContextRow

CheckpointEvent = CheckpointSaved | CheckpointWritesRecorded | CheckpointsRemoved


async def _nothing_to_check(ctx: ContextRow) -> None:
    return None


class Checkpoints(Commands):
    """Commands that record a framework's checkpoints on a context."""

    async def record_checkpoint(
        self,
        caller: Caller,
        context_id: str,
        event: CheckpointEvent,
        *,
        expected_version: ExpectedVersion | None = None,
        idempotency_key: str | None = None,
    ) -> Written:
        """Append one checkpoint event (a save, a task's writes, a removal)."""
        if isinstance(event, CheckpointsRemoved) and event.all == bool(event.checkpoints):
            raise InvalidCommand("name the checkpoints to remove, or remove all: not both")
        return await self._command(
            caller, context_id, [event], _nothing_to_check, expected_version, idempotency_key
        )
