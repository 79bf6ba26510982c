"""``ctxlog audit`` and ``ctxlog stats``: who did what, when, and what the model saw; and
what the database holds.

The audit query is the one behind ``GET /api/v1/events``: the same filter
(``projections.audit.audit_filter``) over the same paged read of the log, across every
tenant unless ``--tenant`` is given.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import click
import msgspec

from eventstore import EVENT_TYPES, LogFilter, RecordedEvent, WindowServed
from eventstore.files import database_bytes
from projections.audit import audit_filter, log_stats

from .output import Output
from .render import ShortIds, describe, event_record, event_type_text, mentioned
from .support import (
    EXIT_CODES,
    TIME,
    db_option,
    format_option,
    is_postgres,
    open_store,
    readmodel_path,
    resolve_context,
    run,
    shared_readmodel,
)

SERVED = "window.served"
PAGE = 1000


@click.command(epilog=EXIT_CODES, short_help="The audit query: who changed what, and when.")
@click.option("--actor", help="Only events by this actor.")
@click.option(
    "--type",
    "types",
    multiple=True,
    metavar="TYPE",
    help="Only events of this type, e.g. message.edited (repeat, or separate with commas).",
)
@click.option("--context", "context_id", metavar="ID", help="Only events of this context.")
@click.option("--tenant", help="Only events of this tenant (default: every tenant).")
@click.option("--since", type=TIME, help="From this time on (ISO 8601, or ago: 15m, 2h, 7d).")
@click.option("--until", type=TIME, help="Before this time.")
@click.option(
    "--served",
    is_flag=True,
    help="Only WindowServed records: what the model saw, with the message ids.",
)
@click.option("--after", type=click.IntRange(min=0), default=0, metavar="POS",
              help="Start after this log position.")  # fmt: skip
@click.option("--limit", type=click.IntRange(min=1), metavar="N", help="At most N events.")
@db_option
@format_option
def audit(
    actor: str | None,
    types: tuple[str, ...],
    context_id: str | None,
    tenant: str | None,
    since: datetime | None,
    until: datetime | None,
    served: bool,
    after: int,
    limit: int | None,
    db: str,
    fmt: str,
) -> None:
    """The audit query over the whole log: who changed what, and when."""
    wanted = ",".join(types) or None
    unknown = sorted({t.strip() for t in (wanted or "").split(",") if t.strip()} - set(EVENT_TYPES))
    if unknown:  # a typo would otherwise list nothing, as if nothing had happened
        raise click.BadParameter(
            f"no event type {', '.join(map(repr, unknown))}; the types are"
            f" {', '.join(sorted(EVENT_TYPES))}",
            param_hint="'--type'",
        )
    if served:
        if wanted is not None and set(wanted.split(",")) != {SERVED}:
            raise click.UsageError("--served lists window.served events; leave out --type")
        wanted = SERVED
    flt = audit_filter(
        types=wanted, context_id=context_id, tenant=tenant, actor=actor, since=since, until=until
    )
    run(_audit(db, flt, after, limit, served, Output(fmt)))


async def _audit(
    db: str, flt: LogFilter, after: int, limit: int | None, served: bool, out: Output
) -> None:
    found: list[RecordedEvent] = []
    count = 0
    ids = ShortIds()
    async with open_store(db) as store:
        if flt.stream_id is not None:
            flt = msgspec.structs.replace(
                flt, stream_id=await resolve_context(store, flt.stream_id)
            )
        while limit is None or count < limit:
            size = PAGE if limit is None else min(PAGE, limit - count)
            events, after = await store.read_all(after, size, flt)
            count += len(events)
            ids.add(mid for e in events for mid in mentioned(e.event))
            if out.fmt == "ndjson":  # streamed: a large log never sits in memory
                out.records(event_record(e, change=describe(e.event, ids)) for e in events)
            else:
                found += events
            if len(events) < size:
                break
    if out.fmt == "json":
        out.document([event_record(e, change=describe(e.event, ids)) for e in found])
    elif out.text and served:
        out.table(
            [("pos", "right"), "time", "context", ("v", "right"), "actor", "model",
             ("tokens", "right"), "message ids"],
            [_served_row(out, e) for e in found],
        )  # fmt: skip
    elif out.text:
        out.table(
            [("pos", "right"), "time", "context", ("v", "right"), "actor", "tenant", "event",
             "change"],
            [(e.position, out.when(e.recorded_at), e.stream_id, e.version,
              e.metadata.actor or "-", e.metadata.tenant or "-", event_type_text(e.type),
              describe(e.event, ids))
             for e in found],
        )  # fmt: skip


def _served_row(out: Output, e: RecordedEvent) -> tuple[Any, ...]:
    served = e.event
    assert isinstance(served, WindowServed)
    budget = "" if served.max_tokens is None else f"/{served.max_tokens}"
    return (
        e.position, out.when(e.recorded_at), e.stream_id, e.version, e.metadata.actor or "-",
        served.model or "-", f"{served.total_tokens}{budget}", "\n".join(served.message_ids),
    )  # fmt: skip


@click.command(epilog=EXIT_CODES, short_help="Contexts, events, sizes, types, largest contexts.")
@click.option("--top", type=click.IntRange(min=0), default=10, show_default=True,
              help="How many of the largest contexts to list.")  # fmt: skip
@db_option
@format_option
def stats(top: int, db: str, fmt: str) -> None:
    """Contexts, events, database size, events by type, and the largest contexts."""
    run(_stats(db, top, Output(fmt)))


def _human(size: int | None) -> str:
    if size is None:
        return "-"
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:,.0f} {unit}" if unit == "B" else f"{value:,.1f} {unit}"
        value /= 1024
    return f"{value:,.1f} TiB"  # pragma: no cover


async def _stats(db: str, top: int, out: Output) -> None:
    async with open_store(db) as store:
        db_bytes = await store.stored_bytes()
        if is_postgres(db):
            async with shared_readmodel(store) as (model, exists):
                with out.progress("scanning the log") as (report,):
                    found = await log_stats(
                        store, model if exists else None, largest=top, progress=report
                    )
                rm_bytes = await model.stored_bytes() if exists else None
        else:
            readmodel = readmodel_path(db)
            with out.progress("scanning the log") as (report,):
                found = await log_stats(store, readmodel, largest=top, progress=report)
            rm_bytes = database_bytes(readmodel)
    if not out.text:
        out.document(
            {**msgspec.to_builtins(found), "database_bytes": db_bytes, "readmodel_bytes": rm_bytes}
        )
        return
    deleted = "" if found.deleted is None else f" ({found.deleted} deleted)"
    out.pairs([
        ("events", f"{found.events:,}"),
        ("contexts", f"{found.contexts:,}{deleted}"),
        ("tenants", f"{found.tenants:,}"),
        ("first event", "-" if found.first_at is None else out.when(found.first_at)),
        ("last event", "-" if found.last_at is None else out.when(found.last_at)),
        ("database", _human(db_bytes)),
        ("read model", _human(rm_bytes)),
    ])  # fmt: skip
    if found.by_type:
        out.print()
        out.table(["event type", ("events", "right")],
                  [(t, f"{n:,}") for t, n in found.by_type.items()])  # fmt: skip
    if found.largest:
        out.print()
        out.table(
            ["largest contexts", "tenant", ("events", "right"), ("messages", "right"),
             ("tokens", "right"), ""],
            [(c.context_id, c.tenant or "-", f"{c.events:,}", _opt(c.messages), _opt(c.tokens),
              "deleted" if c.deleted else "") for c in found.largest],
        )  # fmt: skip


def _opt(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"
