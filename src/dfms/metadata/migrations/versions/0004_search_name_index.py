"""search: entries of a user in name order

``ix_entries_owner_name`` on ``(owner_id, name, id)`` (PostgreSQL: ``name COLLATE "C"``, the
order listings and search use): a broad search walks it in name order and stops after one page
instead of sorting every match.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute('CREATE INDEX ix_entries_owner_name ON entries (owner_id, name COLLATE "C", id)')
    else:
        op.execute("CREATE INDEX ix_entries_owner_name ON entries (owner_id, name, id)")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP INDEX ix_entries_owner_name")
    else:
        op.execute("DROP INDEX ix_entries_owner_name")
