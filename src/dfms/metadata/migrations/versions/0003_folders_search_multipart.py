"""folders, versions, search and multipart upload sessions

- ``entries.search_meta`` (user metadata flattened for search) and ``entries.version_floor``
  (version numbers are never reused after a delete); the partial index
  ``ix_entries_live_folders`` (live folders by parent) for subtree walks.
- ``upload_sessions``, ``upload_parts``, ``upload_part_chunks``: multipart uploads; part chunk
  rows are counted in ``chunks.ref_count`` (parts pin their chunks).
- Search indexes. PostgreSQL: ``pg_trgm`` GIN indexes on ``lower(name)`` and
  ``lower(search_meta)``. SQLite (3.34+ with FTS5): an FTS5 table ``entry_search`` with the
  trigram tokenizer, keyed through ``entry_search_ids`` (an INTEGER PRIMARY KEY, so VACUUM cannot
  renumber it) and kept in step with ``entries`` by triggers. Without FTS5 trigram support the
  search falls back to a scan of the user's entries.

Note for later migrations: recreating ``entries`` on SQLite (batch "move and copy") drops the
triggers below; re-create them with :func:`create_sqlite_search` afterwards.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SQLITE_SEARCH = [
    """CREATE TABLE entry_search_ids (
        id INTEGER PRIMARY KEY,
        entry_id CHAR(32) NOT NULL UNIQUE
    )""",
    "CREATE VIRTUAL TABLE entry_search USING fts5(name, meta, tokenize='trigram')",
    """CREATE TRIGGER entries_search_ai AFTER INSERT ON entries
    WHEN new.deleted_at IS NULL AND new.parent_id IS NOT NULL
    BEGIN
        INSERT INTO entry_search_ids(entry_id) VALUES (new.id);
        INSERT INTO entry_search(rowid, name, meta)
            SELECT id, new.name, coalesce(new.search_meta, '')
            FROM entry_search_ids WHERE entry_id = new.id;
    END""",
    """CREATE TRIGGER entries_search_ad AFTER DELETE ON entries
    BEGIN
        DELETE FROM entry_search
            WHERE rowid = (SELECT id FROM entry_search_ids WHERE entry_id = old.id);
        DELETE FROM entry_search_ids WHERE entry_id = old.id;
    END""",
    """CREATE TRIGGER entries_search_au AFTER UPDATE OF name, search_meta, deleted_at ON entries
    BEGIN
        DELETE FROM entry_search
            WHERE rowid = (SELECT id FROM entry_search_ids WHERE entry_id = old.id);
        DELETE FROM entry_search_ids WHERE entry_id = old.id;
        INSERT INTO entry_search_ids(entry_id)
            SELECT new.id WHERE new.deleted_at IS NULL AND new.parent_id IS NOT NULL;
        INSERT INTO entry_search(rowid, name, meta)
            SELECT id, new.name, coalesce(new.search_meta, '')
            FROM entry_search_ids WHERE entry_id = new.id;
    END""",
    # Index what already exists.
    """INSERT INTO entry_search_ids(entry_id)
        SELECT id FROM entries WHERE deleted_at IS NULL AND parent_id IS NOT NULL""",
    """INSERT INTO entry_search(rowid, name, meta)
        SELECT m.id, e.name, coalesce(e.search_meta, '')
        FROM entry_search_ids m JOIN entries e ON e.id = m.entry_id""",
]


def sqlite_fts_trigram(conn: sa.Connection) -> bool:
    """Whether this SQLite has FTS5 with the trigram tokenizer (3.34+)."""
    version = conn.exec_driver_sql("SELECT sqlite_version()").scalar_one()
    if tuple(int(x) for x in str(version).split(".")[:2]) < (3, 34):
        return False
    try:
        conn.exec_driver_sql(
            "CREATE VIRTUAL TABLE temp.dfms_fts_probe USING fts5(x, tokenize='trigram')"
        )
    except sa.exc.OperationalError:
        return False
    conn.exec_driver_sql("DROP TABLE temp.dfms_fts_probe")
    return True


def create_sqlite_search(conn: sa.Connection) -> None:
    if not sqlite_fts_trigram(conn):
        return
    for stmt in SQLITE_SEARCH:
        conn.exec_driver_sql(stmt)


def upgrade() -> None:
    conn = op.get_bind()
    op.add_column("entries", sa.Column("search_meta", sa.Text(), nullable=True))
    op.add_column(
        "entries",
        sa.Column("version_floor", sa.Integer(), server_default="0", nullable=False),
    )

    op.create_index(
        "ix_entries_live_folders",
        "entries",
        ["parent_id"],
        unique=False,
        sqlite_where=sa.text("kind = 'folder' AND deleted_at IS NULL"),
        postgresql_where=sa.text("kind = 'folder' AND deleted_at IS NULL"),
    )

    op.create_table(
        "upload_sessions",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("owner_id", sa.Uuid(), nullable=False),
        sa.Column("file_name", sa.String(length=255), nullable=False),
        sa.Column("folder_id", sa.Uuid(), nullable=True),
        sa.Column("mime_type", sa.String(length=255), nullable=True),
        sa.Column("file_size", sa.BigInteger(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["owner_id"],
            ["users.id"],
            name=op.f("fk_upload_sessions_owner_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_upload_sessions")),
    )
    with op.batch_alter_table("upload_sessions", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_upload_sessions_expires_at"), ["expires_at"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_upload_sessions_owner_id"), ["owner_id"], unique=False)

    op.create_table(
        "upload_parts",
        sa.Column("session_id", sa.Uuid(), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("token", sa.Uuid(), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("chunk_count", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["upload_sessions.id"],
            name=op.f("fk_upload_parts_session_id_upload_sessions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("session_id", "number", name=op.f("pk_upload_parts")),
    )
    op.create_table(
        "upload_part_chunks",
        sa.Column("session_id", sa.Uuid(), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("chunk_hash", sa.String(length=64), nullable=False),
        sa.Column("offset", sa.BigInteger(), nullable=False),
        sa.Column("length", sa.Integer(), nullable=False),
        sa.Column("is_new", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["session_id", "number"],
            ["upload_parts.session_id", "upload_parts.number"],
            name=op.f("fk_upload_part_chunks_session_id_upload_parts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("session_id", "number", "seq", name=op.f("pk_upload_part_chunks")),
    )
    with op.batch_alter_table("upload_part_chunks", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_upload_part_chunks_chunk_hash"), ["chunk_hash"], unique=False
        )

    if conn.dialect.name == "postgresql":
        op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
        op.execute(
            "CREATE INDEX ix_entries_name_trgm ON entries USING gin (lower(name) gin_trgm_ops)"
        )
        op.execute(
            "CREATE INDEX ix_entries_meta_trgm ON entries "
            "USING gin (lower(search_meta) gin_trgm_ops)"
        )
    elif conn.dialect.name == "sqlite":
        create_sqlite_search(conn)


def downgrade() -> None:
    conn = op.get_bind()
    if conn.dialect.name == "postgresql":
        op.execute("DROP INDEX IF EXISTS ix_entries_meta_trgm")
        op.execute("DROP INDEX IF EXISTS ix_entries_name_trgm")
    elif conn.dialect.name == "sqlite":
        for name in ("entries_search_au", "entries_search_ad", "entries_search_ai"):
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
        op.execute("DROP TABLE IF EXISTS entry_search")
        op.execute("DROP TABLE IF EXISTS entry_search_ids")

    with op.batch_alter_table("upload_part_chunks", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_upload_part_chunks_chunk_hash"))
    op.drop_table("upload_part_chunks")
    op.drop_table("upload_parts")
    with op.batch_alter_table("upload_sessions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_upload_sessions_owner_id"))
        batch_op.drop_index(batch_op.f("ix_upload_sessions_expires_at"))
    op.drop_table("upload_sessions")
    op.drop_index("ix_entries_live_folders", table_name="entries")
    with op.batch_alter_table("entries", schema=None) as batch_op:
        batch_op.drop_column("version_floor")
        batch_op.drop_column("search_meta")
