"""Migrations against the models, on SQLite and PostgreSQL: the migrated schema is the schema
the models declare, and the newest migration can be undone and redone."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import Connection

from tests.conftest import fresh_pg_database

#: SQLite-only search tables (FTS5 virtual table, its shadow tables and the id map): created by
#: migration 0003 with raw DDL, deliberately not declared as models.
SQLITE_SEARCH_PREFIX = "entry_search"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def fresh_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database of its own (never the session's shared one)."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'mig.db'}"
        return
    with fresh_pg_database("dfms_mig") as url:
        yield url


def _diff(conn: Connection) -> list[Any]:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from dfms.metadata.models import Base

    ctx = MigrationContext.configure(conn, opts={"compare_type": True})
    with warnings.catch_warnings():
        # SQLite cannot reflect expression indexes (the PostgreSQL-only trigram ones).
        warnings.simplefilter("ignore", UserWarning)
        diff = compare_metadata(ctx, Base.metadata)
    return [
        d
        for d in diff
        if not (
            isinstance(d, tuple)
            and d[0] == "remove_table"
            and d[1].name.startswith(SQLITE_SEARCH_PREFIX)
        )
    ]


async def test_migrated_schema_matches_models(fresh_url: str) -> None:
    """After `upgrade head` the database has exactly the tables, columns and indexes the models
    declare (autogenerate finds nothing to do)."""
    from dfms.metadata.db import Database
    from dfms.metadata.migrate import upgrade

    db = Database.from_url(fresh_url)
    try:
        await upgrade(db)
        async with db.engine.connect() as conn:
            assert await conn.run_sync(_diff) == []
    finally:
        await db.dispose()


async def test_newest_migration_downgrades_and_upgrades_again(fresh_url: str) -> None:
    """The newest migration can be undone and applied again; search works afterwards."""
    from alembic import command

    from dfms.metadata.db import Database
    from dfms.metadata.migrate import alembic_config, current_revision, upgrade
    from dfms.metadata.search_repository import SearchRepository

    db = Database.from_url(fresh_url)
    try:
        await upgrade(db)
        head = await current_revision(db)

        def down(conn: Connection) -> None:
            command.downgrade(alembic_config(conn), "-1")

        async with db.engine.begin() as conn:
            await conn.run_sync(down)
        assert await current_revision(db) != head
        await upgrade(db)
        assert await current_revision(db) == head
        async with db.read() as s:
            repo = SearchRepository(s)
            assert await repo.has_fts() == (repo.dialect == "sqlite")
    finally:
        await db.dispose()
