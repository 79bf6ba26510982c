"""``ctxlog verify``, ``export``, ``import``, ``backup``, ``rebuild`` and ``erase``: prove the
log is intact, move it, copy it, rebuild what is derived from it, and erase a data subject."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import click
import msgspec
from rich.markup import escape

from eventstore import ERASED, EventStore
from eventstore.backup import backup_sqlite
from eventstore.chain import GENESIS
from eventstore.files import private_opener
from eventstore.integrity import (
    Anchor,
    BadAnchor,
    MissingKey,
    check_anchor,
    now,
    read_anchor,
    write_anchor,
)
from eventstore.transfer import ALL, export_log, import_log
from projections import Caller, Contexts, TokenCounter
from projections.audit import Progress, ReadModelReport, audit_filter, verify_readmodel
from projections.openmarks import remove_files
from projections.readmodel import Damaged

from .output import Output
from .support import (
    EXIT_CODES,
    CliError,
    Exit,
    check_output,
    check_sqlite_path,
    db_option,
    format_option,
    is_postgres,
    open_store,
    readmodel_path,
    resolve_context,
    run,
    shared_readmodel,
)


@click.command(
    epilog=EXIT_CODES, short_help="Check the hash chain and the read model (exit 1 if not)."
)
@click.option(
    "--anchor",
    "anchor_path",
    type=click.Path(dir_okay=False),
    help="Also check the log still holds the head a previous verify wrote to FILE.",
)
@click.option(
    "--write-anchor",
    "write_path",
    type=click.Path(dir_okay=False),
    help="When everything verifies, write the head of the chain to FILE (keep it elsewhere).",
)
@db_option
@format_option
def verify(anchor_path: str | None, write_path: str | None, db: str, fmt: str) -> None:
    """Check the hash chain over the whole log, then that the read model equals a fresh fold
    of the log for every context. Exits 1 naming the first broken position (or context).

    Also exits 1 for a subject key that sealed content and is gone with no subject.erased
    event (deleted behind ctxlog's back, or an erasure cut short: erase again to record it).
    With --anchor FILE, the event at the anchored position must still have the anchored
    hash: truncating the log or rewriting it (hashes recomputed) at or before that position
    is caught. --write-anchor FILE records the verified head for the next run."""
    if write_path is not None:
        check_output(write_path)
    anchor = None
    if anchor_path is not None:
        try:
            anchor = read_anchor(anchor_path)
        except FileNotFoundError:
            raise CliError(Exit.NOT_FOUND, f"no anchor at {anchor_path}") from None
        except BadAnchor as e:
            raise CliError(Exit.USAGE, str(e)) from None
    run(_verify(db, anchor, write_path, Output(fmt)))


async def _verify(db: str, anchor: Anchor | None, write_path: str | None, out: Output) -> None:
    path = readmodel_path(db)
    problem = None
    async with open_store(db) as store:
        with out.progress("hash chain", "read model", unit="items") as (chain, contexts):
            report = await store.verify(chain, keys=True)
            model = ReadModelReport(status="in memory", path="")
            if report.ok:
                if anchor is not None:
                    problem = await check_anchor(store.recorder, anchor, GENESIS)
                if path is not None:
                    model = await verify_readmodel(store, path, TokenCounter(), progress=contexts)
                elif is_postgres(db):
                    model = await _verify_shared(store, contexts)
    broken, missing = report.broken, report.missing_keys or []
    ok = report.ok and problem is None and not missing and model.ok
    written = None
    if ok and write_path is not None:
        written = Anchor(position=report.events, hash=report.head_hash, written_at=now())
        write_anchor(write_path, written)
    if not out.text:
        out.document({
            "ok": ok,
            "chain": {"ok": report.ok, "events": report.events, "head_hash": report.head_hash,
                      "broken": None if broken is None else msgspec.to_builtins(broken)},
            "anchor": None if anchor is None or broken is not None else {
                "ok": problem is None, "position": anchor.position, "hash": anchor.hash,
                "written_at": anchor.written_at.isoformat(), "problem": problem,
            },
            "keys": None if broken is not None else {
                "ok": not missing, "missing": msgspec.to_builtins(missing),
            },
            "readmodel": None if broken is not None else msgspec.to_builtins(model),
            "anchor_written": None if written is None else msgspec.to_builtins(written),
        })  # fmt: skip
    elif broken is not None:
        out.print(f"hash chain: BROKEN at position {broken.position}: {broken.reason}", style="red")
        out.print(f"  the {report.events:,} events before it verify", style="red")
    else:
        out.print(
            f"hash chain: ok, {report.events:,} events, head {report.head_hash}", style="green"
        )
        _print_anchor(out, anchor, problem)
        _print_keys(out, missing)
        _print_readmodel(out, model)
        if written is not None:
            out.print(f"anchor written to {write_path}: position {written.position:,}")
    if broken is not None:
        raise CliError(Exit.FAILED, f"hash chain broken at position {broken.position}")
    if problem is not None:
        raise CliError(Exit.FAILED, f"anchor: {problem}")
    if missing:
        first = missing[0]
        raise CliError(
            Exit.FAILED,
            f"{len(missing)} subject keys are gone with no subject.erased event, first"
            f" {first.key_id} (content at position {first.position})",
        )
    if model.status == "damaged":
        raise CliError(
            Exit.FAILED,
            f"the read model {model.path} is damaged ({model.note}): a server sets it aside"
            " and rebuilds it at start, or run ctxlog rebuild",
        )
    if not model.ok:
        first_diff = model.mismatches[0]
        raise CliError(
            Exit.FAILED,
            f"read model differs from the log in {model.differing} contexts, first "
            f"{first_diff.context_id} (v{first_diff.version})",
        )


def _print_anchor(out: Output, anchor: Anchor | None, problem: str | None) -> None:
    if anchor is None:
        return
    if problem is None:
        out.print(
            f"anchor: ok, position {anchor.position:,} still has the hash anchored at"
            f" {anchor.written_at.isoformat()}",
            style="green",
        )
    else:
        out.print(f"anchor: FAILED: {problem}", style="red")


def _print_keys(out: Output, missing: list[MissingKey]) -> None:
    if not missing:
        out.print("subject keys: ok, every key gone was erased on record", style="green")
        return
    out.print(f"subject keys: {len(missing)} GONE with no subject.erased event", style="red")
    for m in missing[:20]:
        out.print(f"  {m.key_id} ({m.subject or 'subject not named'}): content at position"
                  f" {m.position:,}", style="red")  # fmt: skip


def _print_readmodel(out: Output, model: ReadModelReport) -> None:
    match model.status:
        case "ok":
            out.print(
                f"read model: ok, {model.contexts:,} contexts equal a fresh fold of the log"
                f" (through position {model.checkpoint:,})",
                style="green",
            )
        case "differs":
            out.print(
                f"read model: {model.differing} contexts DIFFER from a fresh fold", style="red"
            )
            for m in model.mismatches:
                out.print(f"  {m.context_id} v{m.version}: {m.reason}", style="red")
        case "damaged":
            out.print(f"read model: DAMAGED, {model.note} ({model.path})", style="red")
        case "absent":
            out.print("read model: none yet (built when the database is served or rebuilt)")
        case "in memory":
            out.print("read model: kept in each server's memory (PostgreSQL); nothing to compare")
        case _:
            out.print(
                f"read model: stale, rebuilt at the next start ({model.note})", style="yellow"
            )


@click.command(
    "export", epilog=EXIT_CODES, short_help="Write the log (or a context/tenant) as NDJSON."
)
@click.option("--context", "context_id", metavar="ID", help="Only this context's events.")
@click.option("--tenant", help="Only this tenant's events.")
@click.option(
    "-o", "--output", type=click.Path(dir_okay=False), help="Write to FILE (default: stdout)."
)
@db_option
def export(context_id: str | None, tenant: str | None, output: str | None, db: str) -> None:
    """Write the log as NDJSON: a header line, then every event with its position, version,
    id, time, data and hash, then (whole-log export only) the key of every data subject not
    erased, so that an import reads the same content.

    An export holds the keys of the content it carries: keep it as safe as the database.
    Erasing a subject later does not reach an export already taken; one taken after the
    erase carries neither that subject's key nor its content.

    Only a whole-log export can be imported; --context or --tenant make a partial one for
    reading (each line still carries its hash and the one before). A partial export carries
    no keys: content of data subjects stays sealed (encrypted) in it."""
    if context_id is not None and tenant is not None:
        raise click.UsageError("give --context or --tenant, not both")
    if output is not None:
        check_output(output)
    run(_export(db, context_id, tenant, output, Output()))


async def _export(
    db: str, context_id: str | None, tenant: str | None, output: str | None, out: Output
) -> None:
    async with open_store(db) as store:
        if context_id is not None:
            context_id = await resolve_context(store, context_id)
            if await store.stream_version(context_id) == 0:
                raise CliError(Exit.NOT_FOUND, f"context {context_id!r} not found")
        scope = ALL if context_id is None and tenant is None else (
            f"context:{context_id}" if context_id is not None else f"tenant:{tenant}"
        )  # fmt: skip
        flt = audit_filter(context_id=context_id, tenant=tenant)
        with _target(output) as sink, out.progress("export") as (report,):
            done = await export_log(store, sink, filter=flt, scope=scope, progress=report)
    keys = f" and {done.keys:,} subject keys" if scope == ALL else ""
    out.note(
        f"exported {done.events:,} events{keys} (log through position {done.through:,})"
        + (f" to {output}" if output else "")
    )


@contextlib.contextmanager
def _target(output: str | None) -> Iterator[IO[bytes]]:
    """stdout, or a file written beside ``output`` and renamed over it once complete."""
    if output is None:
        yield sys.stdout.buffer
        sys.stdout.buffer.flush()
        return
    partial = f"{output}.partial"
    with contextlib.suppress(FileNotFoundError):
        os.remove(partial)  # left by an export that was killed: created anew, owner-only
    try:
        # An export carries the subject keys: owner-only, as the database is.
        with open(partial, "wb", opener=private_opener) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(partial, output)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.remove(partial)


@click.command(
    "import", epilog=EXIT_CODES, short_help="Import a whole-log export into an empty database."
)
@click.argument("file", type=click.Path(dir_okay=False))
@db_option
@format_option
def import_(file: str, db: str, fmt: str) -> None:
    """Import a whole-log export into an empty database (created if missing), keeping every
    position, version, id, timestamp and hash, and restoring the data subjects' keys it
    carries. The file is checked first: a tampered or truncated export, or a malformed or
    changed key, is refused, naming the position or line, and nothing is written."""
    if not Path(file).is_file():
        raise CliError(Exit.NOT_FOUND, f"no export at {file}")
    created = not is_postgres(db) and not Path(db).exists()
    try:
        with open(file, "rb") as source:
            run(_import(db, source, Output(fmt)))
    except BaseException:
        if created:  # leave no empty database behind for a refused import
            with contextlib.suppress(OSError):  # the error raised says why
                remove_files(db)
        raise


async def _import(db: str, source: IO[bytes], out: Output) -> None:
    async with open_store(db, must_exist=False) as store:
        if not is_postgres(db) and await store.head() == 0:
            _remove_readmodel(db)  # one of an earlier log would be taken as this one's
        with out.progress("check", "import") as (check, put):
            done = await import_log(store, source, checked=check, imported=put)
    if out.text:
        out.print(
            f"imported {done.events:,} events and {done.keys:,} subject keys;"
            f" head {done.head_hash}",
            style="green",
        )
    else:
        out.document(msgspec.to_builtins(done))
    if done.unreadable_keys:
        out.note(
            f"content sealed with {done.unreadable_keys:,} keys that are not in the export"
            f" reads as {escape(ERASED)} (subjects erased before the export was taken, or an"
            " export from a ctxlog that did not carry keys)"
        )


def _remove_readmodel(db: str) -> None:
    path = readmodel_path(db)
    if path is not None:
        remove_files(path)


@click.command(
    epilog=EXIT_CODES, short_help="A consistent copy of a SQLite database, while it serves."
)
@click.argument("dest", type=click.Path(dir_okay=False))
@db_option
@format_option
def backup(dest: str, db: str, fmt: str) -> None:
    """Copy the SQLite database to DEST (a new file) as of one moment, while a server may
    keep writing (SQLite's online backup). The read model is not copied: it rebuilds. For
    PostgreSQL use pg_dump, or ctxlog export."""
    if is_postgres(db):
        raise CliError(Exit.USAGE, "backup copies SQLite files; for PostgreSQL use pg_dump")
    check_sqlite_path(db, must_exist=True)
    check_output(dest)
    out = Output(fmt)
    run(_backup(db, dest, out))


async def _backup(db: str, dest: str, out: Output) -> None:
    with out.progress("backup", unit="pages") as (report,):
        done = await backup_sqlite(db, dest, progress=report)
    if out.text:
        out.print(
            f"backed up through position {done.through:,} to {dest} ({done.bytes:,} bytes)",
            style="green",
        )
    else:
        out.document({**msgspec.to_builtins(done), "dest": dest})


@click.command(
    epilog=EXIT_CODES, short_help="Rebuild the read model from the log (server stopped)."
)
@db_option
@format_option
def rebuild(db: str, fmt: str) -> None:
    """Drop the read model (<db>.readmodel) and rebuild it from the log. Stop the server
    first: its projector writes to the same read model. With PostgreSQL, the shared read
    model (<schema>_readmodel) is emptied and replayed in place, while the nodes serve on:
    refused while a node is the elected projector (run it with the nodes stopped)."""
    run(_rebuild(db, Output(fmt)))


async def _rebuild(db: str, out: Output) -> None:
    async with open_store(db) as store:
        done, damaged = await _rebuild_store(store, out)
    if damaged is not None:
        out.note(escape(
            f"the read model was damaged ({damaged.reason}): set aside as {damaged.moved_to}"
        ))  # fmt: skip
    if out.text:
        out.print(f"rebuilt the read model from {done:,} events", style="green")
    else:
        out.document({
            "events": done, "readmodel": readmodel_path(db),
            "damaged": None if damaged is None else damaged._asdict(),
        })  # fmt: skip


async def _verify_shared(store: EventStore, progress: Progress) -> ReadModelReport:
    """``verify_readmodel`` of the shared read model beside a PostgreSQL log, as it is."""
    async with shared_readmodel(store) as (model, found):
        if not found:
            return ReadModelReport(status="absent", path=model.path)
        return await verify_readmodel(store, model, TokenCounter(), progress=progress)


async def _rebuild_store(store: EventStore, out: Output) -> tuple[int, Damaged | None]:
    """Rebuild the read model; returns the events applied and the damaged file that was
    set aside first, if any."""
    service = Contexts(store)
    try:
        # Opened without starting the projector: catching up first would be wasted work.
        # A file that cannot be opened is set aside here (and named), then rebuilt.
        await service.readmodel.open(service.counter.encoding)
        damaged = service.readmodel.damaged
        with out.progress("rebuild") as (report,):
            return await service.rebuild(report), damaged
    finally:
        await service.close()


@click.command(epilog=EXIT_CODES, short_help="Erase a data subject's content (crypto-shredding).")
@click.option("--subject", required=True, help="The subject (metadata.subject) to erase.")
@click.option(
    "--tenant",
    help="The subject's tenant (default: none, as on an open server). Exit 3, naming them,"
    " when only other tenants hold the subject's content.",
)
@db_option
@format_option
def erase(subject: str, tenant: str | None, db: str, fmt: str) -> None:
    """Destroy SUBJECT's key: every content of that subject (metadata.subject on the message
    or its context; edits, summaries and served windows' digests too) reads as "[erased]"
    from now on, in the log, the read model, exports and later backups, and every running
    server stops serving it within seconds. The log, its hash chain and history stay intact;
    each affected context records a subject.erased event. Idempotent. Beside a running
    server the read model's file cannot be rebuilt without the content's old bytes (exit 6:
    stop the server and run this again), so erase through its API instead
    (POST /api/v1/subjects/{subject}/erase) or stop it first."""
    run(_erase(db, subject, tenant, Output(fmt)))


async def _erase(db: str, subject: str, tenant: str | None, out: Output) -> None:
    async with open_store(db) as store:
        service = Contexts(store)
        try:
            await service.start()
            done = await service.erase(Caller(tenant=tenant, actor="ctxlog-cli"), subject)
            elsewhere = [] if done.keys_destroyed or done.contexts else [
                t for t in await service.subject_tenants(subject) if t != tenant
            ]  # fmt: skip
        finally:
            await service.close()
    if elsewhere:
        # A subject is erased per tenant: "nothing to erase" here while another tenant still
        # holds its content would read as done to an operator who forgot --tenant.
        raise CliError(Exit.NOT_FOUND, _held_elsewhere(subject, tenant, elsewhere))
    if not out.text:
        out.document(msgspec.to_builtins(done))
    elif done.keys_destroyed:
        out.print(
            f"erased subject {subject}: {len(done.contexts):,} contexts now read [erased]",
            style="green",
        )
    else:
        out.print(f"nothing to erase: subject {subject} has no key (unknown or already erased)")


def _held_elsewhere(subject: str, tenant: str | None, tenants: list[str | None]) -> str:
    """Why nothing was erased in ``tenant`` although ``tenants`` hold the subject's content."""
    where = "without a tenant" if tenant is None else f"in tenant {tenant!r}"
    names = ", ".join("(none)" if t is None else repr(t) for t in tenants)
    holders = f"tenant {names} holds" if len(tenants) == 1 else f"tenants {names} hold"
    how = " and ".join("without --tenant" if t is None else f"--tenant {t}" for t in tenants)
    return (
        f"nothing erased: subject {subject!r} has no content {where}, but {holders} some:"
        f" erase it there ({how})"
    )
