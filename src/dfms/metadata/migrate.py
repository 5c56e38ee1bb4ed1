"""Apply Alembic migrations programmatically (``dfms db upgrade`` and ``dfms serve`` at start)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy.engine import Connection

from dfms.errors import SchemaOutdated
from dfms.metadata.db import Database

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def alembic_config(connection: Connection | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


async def upgrade(db: Database, revision: str = "head") -> None:
    """Bring the schema to ``revision`` (idempotent)."""

    def _run(conn: Connection) -> None:
        command.upgrade(alembic_config(conn), revision)

    async with db.engine.begin() as conn:
        await conn.run_sync(_run)


async def current_revision(db: Database) -> str | None:
    from alembic.runtime.migration import MigrationContext

    def _get(conn: Connection) -> str | None:
        return MigrationContext.configure(conn).get_current_revision()

    async with db.engine.connect() as conn:
        return await conn.run_sync(_get)


def head_revision() -> str:
    """The newest migration this version of DFMS ships."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None, "no migrations shipped"
    return head


async def require_current(db: Database) -> None:
    """:class:`SchemaOutdated` unless the schema is exactly at this version's head (a gateway
    never migrates: ``dfms db upgrade`` does, once, before the gateways start)."""
    current = await current_revision(db)
    head = head_revision()
    if current != head:
        raise SchemaOutdated(
            f"database schema is at revision {current or 'none (empty database)'}, this version "
            f"of DFMS needs {head}: run `dfms db upgrade` first"
        )
