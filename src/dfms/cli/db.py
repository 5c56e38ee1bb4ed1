"""``dfms db``: schema migrations."""

from __future__ import annotations

import asyncio

import typer

from dfms.cli.common import ConfigOpt, DataDirOpt, settings_from

db_app = typer.Typer(help="Metadata database: migrations.", no_args_is_help=True)


@db_app.command("upgrade")
def upgrade_cmd(data_dir: DataDirOpt = None, config: ConfigOpt = None) -> None:
    """Apply every pending migration (needed before the first start on PostgreSQL)."""
    from dfms.metadata.db import Database
    from dfms.metadata.migrate import current_revision, upgrade

    settings = settings_from(data_dir, config)

    async def run() -> str | None:
        db = Database.from_url(settings.database_url)
        try:
            await upgrade(db)
            return await current_revision(db)
        finally:
            await db.dispose()

    rev = asyncio.run(run())
    typer.echo(f"database at revision {rev}")
