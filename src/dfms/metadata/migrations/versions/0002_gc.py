"""garbage collection: lease, upload pins, deletion journal

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "gc_deletions",
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("queued_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("hash", name=op.f("pk_gc_deletions")),
    )
    op.create_table(
        "gc_leases",
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("owner", sa.String(length=128), nullable=False),
        sa.Column("acquired_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_gc_leases")),
    )
    op.create_table(
        "pin_sessions",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pin_sessions")),
    )
    with op.batch_alter_table("pin_sessions", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_pin_sessions_expires_at"), ["expires_at"], unique=False
        )

    op.create_table(
        "chunk_pins",
        sa.Column("session_id", sa.String(length=64), nullable=False),
        sa.Column("chunk_hash", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["pin_sessions.id"],
            name=op.f("fk_chunk_pins_session_id_pin_sessions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("session_id", "chunk_hash", name=op.f("pk_chunk_pins")),
    )
    with op.batch_alter_table("chunk_pins", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_chunk_pins_chunk_hash"), ["chunk_hash"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("chunk_pins", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_chunk_pins_chunk_hash"))

    op.drop_table("chunk_pins")
    with op.batch_alter_table("pin_sessions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_pin_sessions_expires_at"))

    op.drop_table("pin_sessions")
    op.drop_table("gc_leases")
    op.drop_table("gc_deletions")
