"""``ctxlog retention``: what the configured retention policies take (``--dry-run``), or apply
them now, on the database (a running server applies them itself, on its schedule)."""

from __future__ import annotations

import click
import msgspec

from projections import Contexts
from projections.retention import Applied, Plan, Retention, RetentionPolicy

from .config import resolve_flags
from .output import Output
from .support import EXIT_CODES, CliError, Exit, format_option, open_store, run


@click.command(epilog=EXIT_CODES, short_help="List (--dry-run) or apply the retention policies.")
@click.option("--dry-run", is_flag=True, help="List what the policies would take; change nothing.")
@click.option(
    "--config", metavar="FILE", help="The config file the policies are in (env CTXLOG_CONFIG)."
)
@click.option("--db", help="SQLite file or postgresql:// DSN (env CTXLOG_DB, key db).")
@click.option(
    "--retention",
    "policies",
    metavar="T:DAYS[:erase],…",
    help="Policies instead of the configured ones (env CTXLOG_RETENTION, key retention).",
)
@format_option
def retention(dry_run: bool, config: str | None, db: str | None, policies: str | None,
              fmt: str) -> None:  # fmt: skip
    """Apply the retention policies of the configuration (the same flags, CTXLOG_* variables
    and file as ``ctxlog serve``): contexts of a policy's tenant idle longer than its days are
    deleted, and with erase their subjects erased. --dry-run lists the contexts and subjects
    each policy would take, and the subjects it keeps because their content is also in
    contexts outside it. Applying an erasure needs the server stopped (exit 6 otherwise)."""
    settings = resolve_flags(config, {"db": db, "retention": policies}).settings
    if not settings.retention:
        raise CliError(
            Exit.USAGE, "no retention policies configured (key retention, CTXLOG_RETENTION)"
        )
    run(_retention(settings.db, settings.retention, dry_run, Output(fmt)))


async def _retention(
    db: str, policies: tuple[RetentionPolicy, ...], dry_run: bool, out: Output
) -> None:
    results: list[Plan | Applied] = []
    async with open_store(db) as store:
        service = Contexts(store)
        try:
            await service.start()
            keeper = Retention(service)
            for policy in policies:
                results.append(await (keeper.plan(policy) if dry_run else keeper.apply(policy)))
        finally:
            await service.close()
    if not out.text:
        out.records([msgspec.to_builtins(result) for result in results])
        return
    for result in results:
        if isinstance(result, Plan):
            _show(out, result, None)
        else:
            _show(out, result.plan, result)


def _show(out: Output, plan: Plan, done: Applied | None) -> None:
    policy = plan.policy
    verb = "would delete" if done is None else "deleted"
    count = len(plan.delete) if done is None else len(done.deleted)
    erase = " and erase" if policy.erase else ""
    tenant = policy.tenant or "(none)"
    out.print(
        f"tenant {tenant!r}: idle over {policy.idle_days:g} days (before"
        f" {plan.cutoff:%Y-%m-%d %H:%M:%S}Z): {verb}{erase} {count} contexts"
    )
    for item in plan.delete:
        out.print(f"  {item.context_id}  idle since {item.idle_since:%Y-%m-%d %H:%M:%S}Z")
    subjects = plan.erase if done is None else [e.subject for e in done.erased]
    for subject in subjects:
        out.print(f"  erase subject {subject}")
    for kept in plan.kept:
        out.print(f"  keep subject {kept.subject}: also in {len(kept.outside)} contexts outside"
                  " the policy")  # fmt: skip
    if done is not None and done.skipped:
        out.print(f"  skipped {len(done.skipped)} contexts written to since the plan")
