"""Retention: per-tenant policies that delete contexts idle too long, and can erase them.

A policy names a tenant and a number of days. A context of that tenant is *idle* when its
last event (any write, a recorded window included; reads are not events) is older than that;
applying the policy deletes each idle context that is not deleted yet with a tombstone, as
``DELETE /contexts/{id}`` does (a ``context.deleted`` event whose reason names the policy,
by the actor ``ctxlog-retention``). With ``erase``, the content of those contexts is also made
unreadable by crypto-shredding (``erasure``): each data subject their content names is erased,
which records ``subject.erased`` on every context holding that subject's content.

Nothing outside the policy is touched: only contexts of its tenant, only idle ones, and a
subject is erased only when every context an erasure would touch is idle under the policy
too; otherwise it is kept (the plan says which contexts keep it) and erased by the run that
takes the last of them. A context written to between the plan and the deletion is skipped
(the deletion expects the version it planned on). Content without a subject is not
encrypted, so only its tombstone can be applied (see the README's Erasure).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING

import msgspec

from eventstore import VersionConflict, to_datetime

from .calls import Caller
from .dialect import twin
from .erasure import Erased
from .errors import ContextIsDeleted, ContextNotFound
from .tables import json_encode

if TYPE_CHECKING:
    from .service import Contexts

ACTOR = "ctxlog-retention"
"""The actor every retention event is recorded under."""
DAY_US = 86_400_000_000

IDLE = twin(
    """
SELECT context_id, version, updated_at, deleted FROM contexts
WHERE tenant IS :tenant AND updated_at < :cutoff ORDER BY updated_at, context_id
""",
    """
SELECT context_id, version, updated_at, deleted FROM contexts
WHERE tenant IS NOT DISTINCT FROM :tenant AND updated_at < :cutoff
ORDER BY updated_at, context_id
""",
)
SUBJECTS = """
SELECT json_extract(metadata, '$.subject') AS subject FROM contexts
WHERE context_id IN (SELECT value FROM json_each(:ids))
  AND json_type(metadata, '$.subject') = 'text'
UNION
SELECT json_extract(metadata, '$.subject') FROM messages
WHERE context_id IN (SELECT value FROM json_each(:ids))
  AND json_type(metadata, '$.subject') = 'text'
ORDER BY subject
"""
twin(
    SUBJECTS,
    """
SELECT (metadata::json ->> 'subject') COLLATE "C" AS subject FROM contexts
WHERE context_id IN (SELECT jsonb_array_elements_text(:ids::jsonb))
  AND json_typeof(metadata::json -> 'subject') = 'string'
UNION
SELECT (metadata::json ->> 'subject') COLLATE "C" FROM messages
WHERE context_id IN (SELECT jsonb_array_elements_text(:ids::jsonb))
  AND json_typeof(metadata::json -> 'subject') = 'string'
ORDER BY subject
""",
)


class RetentionPolicy(msgspec.Struct, frozen=True, kw_only=True):
    """Contexts of ``tenant`` ("" for none: an open server) idle longer than ``idle_days``
    are deleted; with ``erase``, their content is also made unreadable (crypto-shredding)."""

    tenant: str
    idle_days: float
    erase: bool = False


class Idle(msgspec.Struct, frozen=True, kw_only=True):
    """A context the policy takes: its version when planned and its last event's time."""

    context_id: str
    version: int
    idle_since: datetime


class Kept(msgspec.Struct, frozen=True, kw_only=True):
    """A subject not erased: its content is also in contexts outside the policy."""

    subject: str
    outside: list[str]


class Plan(msgspec.Struct, frozen=True, kw_only=True):
    """What applying ``policy`` at ``now`` takes: contexts to delete, subjects to erase."""

    policy: RetentionPolicy
    now: datetime
    cutoff: datetime
    delete: list[Idle]
    erase: list[str]
    kept: list[Kept]


class Applied(msgspec.Struct, frozen=True, kw_only=True):
    """What applying a plan did (a context changed since the plan is ``skipped``)."""

    plan: Plan
    deleted: list[str]
    skipped: list[str]
    erased: list[Erased]


def _idle_sync(
    conn: sqlite3.Connection, tenant: str | None, cutoff: int
) -> list[tuple[str, int, int, int]]:
    return list(conn.execute(IDLE, {"tenant": tenant, "cutoff": cutoff}))


def _subjects_sync(conn: sqlite3.Connection, ids: list[str]) -> list[str]:
    return [row[0] for row in conn.execute(SUBJECTS, {"ids": json_encode(ids).decode()})]


class Retention:
    """Applies policies to one contexts service; ``clock`` gives the time (Unix seconds)."""

    def __init__(self, service: Contexts, *, clock: Callable[[], float] = time.time) -> None:
        self.service = service
        self.clock = clock

    def caller(self, policy: RetentionPolicy) -> Caller:
        """Who retention acts as in ``policy``'s tenant."""
        return Caller(tenant=policy.tenant or None, actor=ACTOR)

    async def plan(self, policy: RetentionPolicy) -> Plan:
        """What ``policy`` takes now; changes nothing."""
        service = self.service
        await service.projector.catch_up()
        now_us = int(self.clock() * 1_000_000)
        cutoff = now_us - int(policy.idle_days * DAY_US)
        tenant = policy.tenant or None
        rows = await service.readmodel.read(_idle_sync, tenant, cutoff)
        idle = {row[0] for row in rows}
        delete = [
            Idle(context_id=cid, version=version, idle_since=to_datetime(at))
            for cid, version, at, deleted in rows
            if not deleted
        ]
        erase: list[str] = []
        kept: list[Kept] = []
        if policy.erase and delete:
            ids = [item.context_id for item in delete]
            for subject in await service.readmodel.read(_subjects_sync, ids):
                scope = await service.erasure_scope(self.caller(policy), subject)
                outside = [cid for cid in scope if cid not in idle]
                if outside:
                    kept.append(Kept(subject=subject, outside=outside))
                else:
                    erase.append(subject)
        return Plan(
            policy=policy, now=to_datetime(now_us), cutoff=to_datetime(cutoff),
            delete=delete, erase=erase, kept=kept,
        )  # fmt: skip

    async def apply(self, policy: RetentionPolicy) -> Applied:
        """Plan, then delete and erase what the plan says; each action is an event."""
        plan = await self.plan(policy)
        caller = self.caller(policy)
        reason = f"retention: idle more than {policy.idle_days:g} days"
        deleted, skipped = [], []
        for item in plan.delete:
            try:
                await self.service.delete(
                    caller, item.context_id, reason=reason, expected_version=item.version
                )
            except (VersionConflict, ContextIsDeleted, ContextNotFound):
                skipped.append(item.context_id)  # written to (or deleted) since the plan
                continue
            deleted.append(item.context_id)
        erased = []
        taken = set(deleted)
        for subject in plan.erase:
            # Checked again: content of the subject may have been written elsewhere since.
            scope = await self.service.erasure_scope(caller, subject)
            idle = await self._idle(policy)
            if all(cid in taken or cid in idle for cid in scope):
                erased.append(await self.service.erase(caller, subject))
        return Applied(plan=plan, deleted=deleted, skipped=skipped, erased=erased)

    async def _idle(self, policy: RetentionPolicy) -> set[str]:
        """The contexts idle under ``policy`` now, deleted or not."""
        cutoff = int((self.clock() - policy.idle_days * 86_400) * 1_000_000)
        rows = await self.service.readmodel.read(_idle_sync, policy.tenant or None, cutoff)
        return {row[0] for row in rows}
