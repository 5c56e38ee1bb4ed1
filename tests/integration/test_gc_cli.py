"""`dfms admin gc`, the scheduled GC of `dfms serve`, and the GC migration."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from dfms.cli.main import app
from dfms.config import Settings
from dfms.context import AppContext
from dfms.errors import StorageError
from dfms.metadata.db import Database
from dfms.metadata.gc_repository import GCRepository
from dfms.workers.gc import LEASE_NAME, GarbageCollector, GCReport, scheduled_gc
from tests.integration.test_gc import (
    all_on_disk,
    chunks_of,
    collector,
    new_user,
    open_ctx,
    put_file,
    rand,
)

runner = CliRunner()

GC_TABLES = {"gc_leases", "gc_deletions", "pin_sessions", "chunk_pins"}


async def _garbage(settings: Settings) -> tuple[set[str], set[str]]:
    """Two files sharing a prefix; the first is deleted. Returns (its unshared chunks, the
    chunks of the kept one)."""
    async with open_ctx(settings) as ctx:
        user = await new_user(ctx)
        a = rand(200_000, 1)
        b = a[:100_000] + rand(100_000, 2)
        fa = await put_file(ctx, user, a, "a.bin")
        await put_file(ctx, user, b, "b.bin")
        await ctx.files.delete(user, fa.id)
        return chunks_of(ctx, a) - chunks_of(ctx, b), chunks_of(ctx, b)


def _on_disk(settings: Settings) -> set[str]:
    return {
        p.name
        for n in settings.node_list()
        for p in Path(str(n.path)).rglob("*")
        if p.is_file() and len(p.name) == 64
    }


def test_admin_gc_json_on_a_data_dir(make_settings: Callable[..., Settings]) -> None:
    """`dfms admin gc --data-dir X --grace 0 --json`: a dry run first (nothing deleted), then the
    pass; the JSON reports the same counts for both and what was reclaimed."""
    settings = make_settings()
    unshared, kept = asyncio.run(_garbage(settings))
    base = ["admin", "gc", "--data-dir", str(settings.data_dir), "--grace", "0", "--json"]

    dry = runner.invoke(app, [*base, "--dry-run"])
    assert dry.exit_code == 0, dry.output
    planned = json.loads(dry.output)
    assert planned["dry_run"] is True and planned["swept"] == len(unshared)
    assert _on_disk(settings) == unshared | kept

    res = runner.invoke(app, base)
    assert res.exit_code == 0, res.output
    done = json.loads(res.output)
    assert done["dry_run"] is False and done["lease"] == "acquired"
    assert {k: done[k] for k in GCReport.COUNTS} == {k: planned[k] for k in GCReport.COUNTS}
    assert done["marked"] == done["swept"] == len(unshared)
    assert done["reclaimed_bytes"] == done["swept_bytes"] > 0
    assert done["stored_chunks"] == len(kept) and done["errors"] == []
    datetime.fromisoformat(done["started_at"])
    assert _on_disk(settings) == kept

    text = runner.invoke(app, ["admin", "gc", "--data-dir", str(settings.data_dir)])
    assert text.exit_code == 0, text.output
    assert "swept           0 chunk records" in text.output and "reclaimed" in text.output


def test_admin_gc_with_config_file(
    make_settings: Callable[..., Settings], db_url: str, tmp_path: Path
) -> None:
    """`--config FILE` finds the database (SQLite or PostgreSQL) and the nodes like `serve`."""
    settings = make_settings(database={"url": db_url})
    unshared, kept = asyncio.run(_garbage(settings))
    cfg = tmp_path / "dfms.yaml"
    cfg.write_text(
        f"data_dir: {settings.data_dir}\ndatabase:\n  url: {db_url}\ngc:\n  grace_period: 0\n"
    )
    res = runner.invoke(app, ["admin", "gc", "--config", str(cfg), "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["swept"] == len(unshared)
    assert _on_disk(settings) == kept


def test_admin_gc_reports_a_busy_lease(make_settings: Callable[..., Settings]) -> None:
    """Another runner holds the lease: nothing is done, the holder is named, exit status 3."""
    settings = make_settings()
    unshared, kept = asyncio.run(_garbage(settings))

    async def hold() -> None:
        db = Database.from_url(settings.database_url)
        try:
            now = datetime.now(UTC)
            async with db.write() as s:
                await GCRepository(s).acquire_lease(
                    LEASE_NAME, "gateway-7", now, now + timedelta(hours=1)
                )
        finally:
            await db.dispose()

    asyncio.run(hold())
    args = ["admin", "gc", "--data-dir", str(settings.data_dir), "--grace", "0"]
    res = runner.invoke(app, args)
    assert res.exit_code == 3, res.output
    assert "held by gateway-7" in res.output
    res = runner.invoke(app, [*args, "--json"])
    assert res.exit_code == 3 and json.loads(res.output)["lease"] == "busy"
    assert _on_disk(settings) == unshared | kept


def test_admin_gc_rejects_negative_grace_and_documents_options(tmp_path: Path) -> None:
    res = runner.invoke(app, ["admin", "gc", "--data-dir", str(tmp_path), "--grace", "-1"])
    assert res.exit_code == 2
    res = runner.invoke(app, ["admin", "gc", "--help"])
    for opt in ("--data-dir", "--config", "--grace", "--dry-run", "--json"):
        assert opt in res.output
    assert "admin" in runner.invoke(app, ["--help"]).output


def test_report_formats() -> None:
    """Sizes and the text report render for every magnitude; errors are listed."""
    from dfms.cli.admin import _size, _text

    assert [_size(n) for n in (5, 2048, 3 << 20, 5 << 30, 7 << 40)] == [
        "5 B",
        "2.0 KiB",
        "3.0 MiB",
        "5.0 GiB",
        "7.0 TiB",
    ]
    r = GCReport(dry_run=True, grace_period=0, started_at=datetime.now(UTC), errors=["x"])
    assert "dry run" in _text(r) and "error: x" in _text(r)


def test_gc_pass_with_store_error_exits_1(
    make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A pass that could not delete everything (a store failed) exits with status 1."""
    settings = make_settings()

    async def failing(self: Any, *args: Any, **kw: Any) -> GCReport:
        return GCReport(
            dry_run=False, grace_period=0, started_at=datetime.now(UTC), errors=["store down"]
        )

    monkeypatch.setattr(GarbageCollector, "run_once", failing)
    res = runner.invoke(app, ["admin", "gc", "--data-dir", str(settings.data_dir)])
    assert res.exit_code == 1 and "store down" in res.output


# -- the scheduled GC in `dfms serve` ----------------------------------------------------------


async def test_scheduled_gc_runs_passes_and_stops_cleanly(ctx: AppContext) -> None:
    """The background task runs passes every gc.interval (a failing pass is logged and the next
    tick retried) and is cancelled cleanly when the block exits."""
    user = await new_user(ctx)
    f = await put_file(ctx, user, rand(50_000, 3), "a.bin")
    await ctx.files.delete(user, f.id)
    passes: list[str] = []
    two = asyncio.Event()

    async def done(phase: str) -> None:
        if phase == "done":
            passes.append(phase)
            if len(passes) >= 2:
                two.set()

    gc = collector(ctx, on_phase=done, grace_period=0)
    real = gc.run_once
    calls = 0

    async def flaky(**kw: Any) -> GCReport:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise StorageError("node unreachable")
        return await real(**kw)

    gc.run_once = flaky  # type: ignore[method-assign]
    settings = ctx.settings.gc.model_copy(update={"interval": 0.001})
    async with scheduled_gc(gc, settings) as task:
        assert task is not None
        await asyncio.wait_for(two.wait(), 60)
    assert task.done() and task.cancelled()
    assert calls >= 3 and all_on_disk(ctx) == set()

    off = settings.model_copy(update={"enabled": False})
    async with scheduled_gc(gc, off) as none:
        assert none is None


async def test_scheduled_pass_skips_when_lease_busy(ctx: AppContext) -> None:
    """A scheduled pass finding the lease held does nothing and tries again next tick."""
    now = datetime.now(UTC)
    async with ctx.db.write() as s:
        await GCRepository(s).acquire_lease(LEASE_NAME, "other", now, now + timedelta(hours=1))
    seen: list[GCReport] = []
    ticked = asyncio.Event()
    gc = collector(ctx)
    real = gc.run_once

    async def spy(**kw: Any) -> GCReport:
        report = await real(**kw)
        seen.append(report)
        ticked.set()
        return report

    gc.run_once = spy  # type: ignore[method-assign]
    task = asyncio.create_task(gc.run_forever(interval=3600, first_delay=0))
    await asyncio.wait_for(ticked.wait(), 60)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert seen[0].lease == "busy" and seen[0].lease_holder == "other"


async def test_serve_lifespan_starts_and_cancels_gc(make_settings: Callable[..., Settings]) -> None:
    """The app's lifespan (as `dfms serve` runs it) starts the GC task and cancels it at
    shutdown."""
    from dfms.api.app import create_app

    app = create_app(make_settings(gc={"interval": 3600}))
    async with app.router.lifespan_context(app):
        task = app.state.gc_task
        assert isinstance(task, asyncio.Task) and not task.done()
    assert task.cancelled()
    app = create_app(make_settings(gc={"enabled": False}))
    async with app.router.lifespan_context(app):
        assert app.state.gc_task is None


# -- schema ----------------------------------------------------------------------------------


async def test_gc_migration_matches_the_models(db_url: str) -> None:
    """Migration 0002 creates exactly what the models declare for the GC tables (autogenerate
    finds no difference), and downgrades cleanly."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext
    from sqlalchemy.engine import Connection

    from dfms.metadata.migrate import upgrade
    from dfms.metadata.models import Base

    db = Database.from_url(db_url)

    def diff(conn: Connection) -> list[Any]:
        mc = MigrationContext.configure(conn, opts={"compare_type": True})
        out = []
        for d in compare_metadata(mc, Base.metadata):
            flat = d if isinstance(d, tuple) else d[0]
            names = {getattr(x, "name", None) for x in flat} | {
                getattr(getattr(x, "table", None), "name", None) for x in flat
            }
            if names & GC_TABLES:
                out.append(d)
        return out

    try:
        await upgrade(db)
        async with db.engine.connect() as conn:
            assert await conn.run_sync(diff) == []
        await upgrade_down_and_up(db)
        async with db.engine.connect() as conn:
            assert await conn.run_sync(diff) == []
    finally:
        await db.dispose()


async def upgrade_down_and_up(db: Database) -> None:
    from alembic import command
    from alembic.script import ScriptDirectory
    from sqlalchemy.engine import Connection

    from dfms.metadata.migrate import alembic_config, current_revision, upgrade

    def down(conn: Connection) -> None:
        command.downgrade(alembic_config(conn), "0001")

    async with db.engine.begin() as conn:
        await conn.run_sync(down)
    assert await current_revision(db) == "0001"
    await upgrade(db)
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert await current_revision(db) == head
