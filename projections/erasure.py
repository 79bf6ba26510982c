"""Erasure of a data subject by crypto-shredding, and the read model made to forget it.

The log never changes: the subject's content is sealed in it with the subject's key
(``eventstore.sealing``). Erasing destroys the key, then records a SubjectErased event,
naming the destroyed key, on each context that held content sealed with it (the audit trail:
who erased, when, which contexts). Every process that follows the log (this one, another
server, a stdio MCP server, on the same database) forgets that content when its projector
applies the event: the contexts holding it are folded again from the log, where it now
reads "[erased]", and replace their rows, snapshots and search entries; caches are emptied
(``shredding``, ``Projector.apply``). A read model on file is then rebuilt into a new file
that replaces the old one whole, write-ahead log included, so that no copy of the plaintext
stays in its free pages either (a read model in memory has no files).

Affected contexts are found from the sealed events themselves, by the keys that sealed them
(``sealed_keys``), not from metadata that may have changed since; plus, for content sealed
by an older ctxlog that did not name subjects in its seals, the contexts and messages whose
metadata names the subject; and every fork descending from any of them.
"""

from __future__ import annotations

import msgspec

from eventstore import ANY, SubjectErased

from .base import ServiceBase
from .calls import Caller
from .errors import ReadModelInUse
from .shredding import affected_sync, holding_sync, subject_keys_sync, subject_tenants_sync


class Erased(msgspec.Struct, frozen=True, kw_only=True):
    """What an erasure did: keys destroyed (0 when the subject was unknown or already
    erased) and the contexts whose content of the subject now reads as "[erased]"."""

    subject: str
    tenant: str | None
    keys_destroyed: int
    contexts: list[str]


class ErasedNotScrubbed(ReadModelInUse):
    """The erasure is done and recorded, and no process serves the content any more, but the
    read model file could not be replaced: it may still hold the plaintext in free pages."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.args = (
            f"the subject's key is destroyed and the erasure recorded, and no process serves"
            f" its content any more; but the read model {path} is open in another process"
            f" (a running server?), so its file could not be rebuilt without the content's"
            f" old bytes: stop that process, then erase again",
        )


class Erasure(ServiceBase):
    """Erasing a data subject (a mixin of ``service.Contexts``)."""

    async def erasure_scope(self, caller: Caller, subject: str) -> list[str]:
        """The contexts of the caller's tenant that erasing ``subject`` would touch (those
        holding its content, and their forks); changes nothing."""
        await self.projector.catch_up()
        known = await self.readmodel.read(subject_keys_sync, caller.tenant, subject)
        key_ids = sorted({key_id for key_id, _ in known})
        return await self.readmodel.read(affected_sync, caller.tenant, subject, key_ids)

    async def subject_tenants(self, subject: str) -> list[str | None]:
        """Every tenant (None: none) whose contexts hold content of ``subject`` that is not
        erased yet, across tenants: for an operator, who may erase in any of them (a caller
        with an API key must never learn of other tenants)."""
        await self.projector.catch_up()
        return await self.readmodel.read(subject_tenants_sync, subject)

    async def erase(self, caller: Caller, subject: str) -> Erased:
        """Destroy ``subject``'s key in the caller's tenant, record it, and forget the content.

        Idempotent: an unknown or already erased subject destroys nothing and records
        nothing. An erasure cut short (key destroyed, not recorded; or recorded, read model
        file not yet rebuilt) is completed by running it again: a key of the subject that
        sealed content, is gone, and has no erasure recorded is recorded now, and the read
        model is rebuilt whenever contexts held the subject's content.
        """
        store, tenant = self.store, caller.tenant
        destroyed = await store.destroy_subject_key(tenant, subject)
        # Content sealed with the key before it was destroyed is all in the log now: once the
        # projector has applied it, the read model knows every context holding it.
        await self.projector.catch_up()
        known = await self.readmodel.read(subject_keys_sync, tenant, subject)
        unrecorded = [key_id for key_id, recorded in known if not recorded]
        remaining = await store.recorder.keys_by_id(unrecorded) if unrecorded else {}
        pending = sorted({*destroyed, *(k for k in unrecorded if k not in remaining)})
        every = sorted({*destroyed, *(key_id for key_id, _ in known)})
        contexts = await self.readmodel.read(affected_sync, tenant, subject, every)
        if pending:
            holding = {cid for cid, _ in await self.readmodel.read(holding_sync, pending)}
            if destroyed:
                # Content an older ctxlog sealed does not name its subject: its contexts are
                # found by metadata, and get the record when this erasure destroyed a key.
                holding.update(await self.readmodel.read(affected_sync, tenant, subject, []))
            record = [cid for cid in contexts if cid in holding]
            metadata = self._metadata(caller)
            for context_id in record:
                await store.append(
                    context_id, [SubjectErased(subject=subject, key_ids=pending)], ANY,
                    metadata=metadata,
                )  # fmt: skip
            await self.projector.catch_up()  # applied: every context holding it refolded
        if (pending or contexts) and self.readmodel.on_file:
            try:
                await self.rebuild()
            except ReadModelInUse as e:
                raise ErasedNotScrubbed(e.path) from e
        return Erased(
            subject=subject, tenant=tenant, keys_destroyed=len(destroyed), contexts=contexts
        )
