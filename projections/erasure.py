"""Erasure of a data subject by crypto-shredding, and the read model made to forget it.

The log never changes: the subject's content is sealed in it with the subject's key
(``eventstore.sealing``). Erasing destroys the key, records a SubjectErased event on each
context that held the subject's content (the audit trail: who erased, when, which
contexts), and rebuilds the read model from the log, where that content now decodes as
"[erased]": message rows, summaries, snapshots and the full-text index all forget it. No copy
of the plaintext stays in the read model's files either: the rebuild writes a new file and
unlinks the old one whole, write-ahead log included (a read model in memory has no files).

Affected contexts are found in the read model: those whose metadata names the subject,
those with a message whose metadata names it, and every fork descending from them (a fork
shares its parent's messages).
"""

from __future__ import annotations

import sqlite3

import msgspec

from eventstore import ANY, SubjectErased

from .base import ServiceBase
from .calls import Caller

AFFECTED = """
WITH RECURSIVE affected (context_id) AS (
    SELECT context_id FROM contexts WHERE json_extract(metadata, '$.subject') = :subject
    UNION
    SELECT context_id FROM messages WHERE json_extract(metadata, '$.subject') = :subject
    UNION
    SELECT c.context_id FROM contexts c JOIN affected a ON c.parent_id = a.context_id
)
SELECT c.context_id FROM contexts c JOIN affected a USING (context_id)
WHERE c.tenant IS :tenant ORDER BY c.position
"""


class Erased(msgspec.Struct, frozen=True, kw_only=True):
    """What an erasure did: keys destroyed (0 when the subject was unknown or already
    erased) and the contexts whose content of the subject now reads as "[erased]"."""

    subject: str
    tenant: str | None
    keys_destroyed: int
    contexts: list[str]


def _affected_sync(conn: sqlite3.Connection, tenant: str | None, subject: str) -> list[str]:
    return [row[0] for row in conn.execute(AFFECTED, {"subject": subject, "tenant": tenant})]


class Erasure(ServiceBase):
    """Erasing a data subject (a mixin of ``service.Contexts``)."""

    async def erasure_scope(self, caller: Caller, subject: str) -> list[str]:
        """The contexts of the caller's tenant that erasing ``subject`` would touch (those
        holding its content, and their forks); changes nothing."""
        await self.projector.catch_up()
        return await self.readmodel.read(_affected_sync, caller.tenant, subject)

    async def erase(self, caller: Caller, subject: str) -> Erased:
        """Destroy ``subject``'s key in the caller's tenant, record it, and re-project.

        Idempotent: an unknown or already erased subject destroys nothing and records
        nothing; the read model is still rebuilt when contexts name the subject, so an
        erasure cut short (key gone, read model not yet rebuilt) is completed by running it
        again.
        """
        await self.projector.catch_up()
        contexts = await self.readmodel.read(_affected_sync, caller.tenant, subject)
        destroyed = await self.store.erase_subject(caller.tenant, subject)
        if destroyed:
            metadata = self._metadata(caller)
            for context_id in contexts:
                await self.store.append(
                    context_id, [SubjectErased(subject=subject)], ANY, metadata=metadata
                )
        if destroyed or contexts:
            await self.rebuild()
        return Erased(
            subject=subject, tenant=caller.tenant, keys_destroyed=destroyed, contexts=contexts
        )
