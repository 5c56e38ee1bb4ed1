"""Alembic environment: runs on the connection handed over by dfms.metadata.migrate."""

from __future__ import annotations

from alembic import context

from dfms.metadata.models import Base

config = context.config
connection = config.attributes.get("connection")
if connection is None:  # pragma: no cover - only reachable through the alembic CLI
    raise RuntimeError("run migrations through `dfms db upgrade`")


def include_object(
    obj: object, name: str | None, type_: str, reflected: bool, compare_to: object
) -> bool:
    """Leave SQLite's search tables (FTS5 + id map, raw DDL of migration 0003) to migrations."""
    return not (type_ == "table" and reflected and (name or "").startswith("entry_search"))


context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
    include_object=include_object,
)
with context.begin_transaction():
    context.run_migrations()
