"""``dfms admin``: operator commands. ``dfms admin gc`` runs one garbage-collection pass."""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING, Annotated

import typer

from dfms.cli.common import ConfigOpt, DataDirOpt, fail, settings_from
from dfms.errors import DFMSError

if TYPE_CHECKING:
    from dfms.workers.gc import GCReport

admin_app = typer.Typer(help="Administration: garbage collection.", no_args_is_help=True)

#: Exit status when another GC runner holds the lease (nothing was done).
EXIT_BUSY = 3
#: Exit status when the pass ran but a store failed (what was not done is retried next pass).
EXIT_PARTIAL = 1


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")  # pragma: no cover


def _text(report: GCReport) -> str:
    if report.lease == "busy":
        until = report.lease_expires_at.isoformat() if report.lease_expires_at else "?"
        return f"GC lease held by {report.lease_holder} (until {until}); nothing done"
    head = "dry run (nothing changed): a pass now would" if report.dry_run else "GC pass:"
    lines = [
        f"{head} (grace period {report.grace_period:g} s)",
        f"  marked          {report.marked} unreferenced chunks",
        f"  unmarked        {report.unmarked} chunks referenced again",
        f"  swept           {report.swept} chunk records ({_size(report.swept_bytes)})",
        f"  resumed         {report.resumed} deletions left by an interrupted pass",
        f"  orphans         {report.orphans} chunk files no record knew "
        f"({_size(report.orphan_bytes)})",
        f"  expired pins    {report.pins_expired} upload sessions",
        f"  reclaimed       {_size(report.reclaimed_bytes)} "
        f"({report.reclaimed_bytes} bytes, {report.copies_removed} copies + orphans)",
        f"  stored now      {report.stored_chunks} chunks, {_size(report.stored_bytes)}; "
        f"stores use {_size(report.store_used_bytes)}",
        f"  took            {report.duration:.2f} s",
    ]
    lines += [f"  error: {e}" for e in report.errors]
    return "\n".join(lines)


@admin_app.command("gc")
def gc_cmd(
    data_dir: DataDirOpt = None,
    config: ConfigOpt = None,
    grace: Annotated[
        float | None,
        typer.Option(
            "--grace",
            min=0,
            help="Grace period in seconds (default: gc.grace_period, 24 h). 0 sweeps at once.",
            show_default=False,
        ),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Change nothing; report what a pass would do.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Run one full garbage-collection pass: mark unreferenced chunks, sweep those marked longer
    ago than the grace period, delete orphan chunk files; print what was reclaimed.

    Safe while `dfms serve` runs on the same data: a lease in the metadata database lets one
    runner at a time sweep (exit status 3 when another holds it; 1 when a store failed).
    """
    from dfms.context import AppContext

    settings = settings_from(data_dir, config)

    async def run() -> GCReport:
        ctx = await AppContext.open(settings)
        try:
            return await ctx.gc.run_once(grace=grace, dry_run=dry_run)
        finally:
            await ctx.aclose()

    try:
        report = asyncio.run(run())
    except DFMSError as exc:
        fail(exc.message)
    typer.echo(json.dumps(report.to_dict(), indent=2) if as_json else _text(report))
    if report.lease == "busy":
        raise typer.Exit(EXIT_BUSY)
    if report.errors:
        raise typer.Exit(EXIT_PARTIAL)
