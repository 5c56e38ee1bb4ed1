"""The metadata schema (SQLAlchemy 2 declarative). One schema for SQLite and PostgreSQL.

Reference counting: a *manifest* (ordered list of chunks) is shared by every version that has the
same content by construction (rollback reuses it), and counts those versions in
``manifests.ref_count``. Each chunk's ``ref_count`` counts its occurrences in live manifests (a
chunk repeated three times in one manifest counts three). A manifest whose count reaches zero is
deleted and releases its chunk occurrences; a chunk whose count reaches zero is left for GC.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    Uuid,
    func,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC timestamps on every engine (SQLite stores naive values)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.astimezone(UTC)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, str):
            value = datetime.fromisoformat(value)
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)  # type: ignore[no-any-return]
        return value.astimezone(UTC)  # type: ignore[no-any-return]


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class User(Base):
    __tablename__ = "users"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    password_hash: Mapped[str] = mapped_column(String(100))
    display_name: Mapped[str] = mapped_column(String(100))
    role: Mapped[str] = mapped_column(String(16), default="user")
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    quota_bytes: Mapped[int] = mapped_column(BigInteger)
    #: Logical bytes of every stored version of the user's files (see README, "Quotas").
    used_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class RefreshToken(Base):
    """One issued refresh token; a family is one login's chain of rotations."""

    __tablename__ = "refresh_tokens"

    jti: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    family_id: Mapped[str] = mapped_column(String(64), index=True)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class Entry(Base):
    """A file or folder in a user's tree. Every user has one root folder (``parent_id`` NULL)."""

    __tablename__ = "entries"
    __table_args__ = (
        # Unique name per folder among live entries.
        Index(
            "uq_entries_live_name",
            "owner_id",
            "parent_id",
            "name",
            unique=True,
            sqlite_where=text("deleted_at IS NULL"),
            postgresql_where=text("deleted_at IS NULL"),
        ),
        # Exactly one root per user.
        Index(
            "uq_entries_root",
            "owner_id",
            unique=True,
            sqlite_where=text("parent_id IS NULL"),
            postgresql_where=text("parent_id IS NULL"),
        ),
        Index("ix_entries_owner_kind_created", "owner_id", "kind", "created_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    owner_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    parent_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("entries.id", ondelete="CASCADE"), nullable=True, index=True
    )
    kind: Mapped[str] = mapped_column(String(8))  # "file" | "folder"
    name: Mapped[str] = mapped_column(String(255))
    #: Current version of a file (NULL for folders).
    current_version_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, nullable=True)
    size: Mapped[int] = mapped_column(BigInteger, default=0)
    mime_type: Mapped[str | None] = mapped_column(String(255), nullable=True)
    user_metadata: Mapped[dict[str, str] | None] = mapped_column(JSON, nullable=True)
    #: ``user_metadata`` flattened to text ("key: value" lines) for the search indexes.
    search_meta: Mapped[str | None] = mapped_column(Text, nullable=True)
    #: Highest version number ever deleted: new versions are numbered above it (never reused).
    version_floor: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


# Subtree walks (folder delete, search in a folder): the live folders under a folder.
Index(
    "ix_entries_live_folders",
    Entry.parent_id,
    sqlite_where=text("kind = 'folder' AND deleted_at IS NULL"),
    postgresql_where=text("kind = 'folder' AND deleted_at IS NULL"),
)
# Search and listings in name order: a broad search walks this and stops after one page. On
# PostgreSQL migration 0004 creates it with ``name COLLATE "C"``, the order ``name_order`` sorts
# by (reflection does not report an index column's collation, so it is not declared here).
Index("ix_entries_owner_name", Entry.owner_id, Entry.name, Entry.id)
# Search (PostgreSQL): trigram indexes for case-insensitive substring search of names and
# metadata (``lower(x) LIKE '%q%'``). SQLite uses the FTS5 table ``entry_search`` instead, created
# with its triggers by migration 0003 (virtual tables are not declared here).
Index(
    "ix_entries_name_trgm",
    func.lower(Entry.name).label("name_lower"),
    postgresql_using="gin",
    postgresql_ops={"name_lower": "gin_trgm_ops"},
).ddl_if(dialect="postgresql")
Index(
    "ix_entries_meta_trgm",
    func.lower(Entry.search_meta).label("meta_lower"),
    postgresql_using="gin",
    postgresql_ops={"meta_lower": "gin_trgm_ops"},
).ddl_if(dialect="postgresql")


class Manifest(Base):
    """The ordered chunk list of some content; shared by every version with that content."""

    __tablename__ = "manifests"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    chunk_count: Mapped[int] = mapped_column(Integer)
    #: Number of versions that point at this manifest.
    ref_count: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ManifestChunk(Base):
    __tablename__ = "manifest_chunks"
    __table_args__ = (Index("ix_manifest_chunks_offset", "manifest_id", "offset"),)

    manifest_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("manifests.id", ondelete="CASCADE"), primary_key=True
    )
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    chunk_hash: Mapped[str] = mapped_column(String(64), index=True)
    offset: Mapped[int] = mapped_column(BigInteger)
    length: Mapped[int] = mapped_column(Integer)


class Version(Base):
    __tablename__ = "versions"
    __table_args__ = (UniqueConstraint("entry_id", "number"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    entry_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("entries.id", ondelete="CASCADE"))
    number: Mapped[int] = mapped_column(Integer)
    manifest_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("manifests.id"), index=True)
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    mime_type: Mapped[str] = mapped_column(String(255))
    chunk_count: Mapped[int] = mapped_column(Integer)
    new_chunks: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Chunk(Base):
    __tablename__ = "chunks"
    __table_args__ = (Index("ix_chunks_state_ref", "state", "ref_count"),)

    hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    size: Mapped[int] = mapped_column(Integer)
    #: Occurrences of this chunk in live manifests (every occurrence counts).
    ref_count: Mapped[int] = mapped_column(BigInteger, default=0)
    state: Mapped[str] = mapped_column(String(8), default="live")  # "live" | "marked"
    marked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ChunkReplica(Base):
    """A node that acknowledged holding a chunk (written after the acknowledgement)."""

    __tablename__ = "chunk_replicas"

    chunk_hash: Mapped[str] = mapped_column(
        ForeignKey("chunks.hash", ondelete="CASCADE"), primary_key=True
    )
    node_id: Mapped[str] = mapped_column(String(64), primary_key=True, index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Node(Base):
    __tablename__ = "nodes"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    address: Mapped[str] = mapped_column(Text)
    zone: Mapped[str] = mapped_column(String(64), default="default")
    weight: Mapped[float] = mapped_column(default=1.0)
    state: Mapped[str] = mapped_column(String(16), default="up")
    capacity: Mapped[int] = mapped_column(BigInteger, default=0)
    used: Mapped[int] = mapped_column(BigInteger, default=0)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class RepairTask(Base):
    """A chunk replica to restore (under-replicated write, failed or corrupt read)."""

    __tablename__ = "repair_tasks"

    chunk_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    node_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    reason: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class UploadSession(Base):
    """A multipart upload in progress. Its parts hold chunk references (counted in
    ``chunks.ref_count``) until it is completed, aborted or expires."""

    __tablename__ = "upload_sessions"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    owner_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    file_name: Mapped[str] = mapped_column(String(255))
    #: Target folder (NULL: the owner's root); checked again when the upload completes.
    folder_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, nullable=True)
    mime_type: Mapped[str | None] = mapped_column(String(255), nullable=True)
    #: Size announced by the client, checked at completion (optional).
    file_size: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    #: SHA-256 of the whole file announced by the client (lowercase hex), checked at completion.
    sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


class UploadPart(Base):
    __tablename__ = "upload_parts"

    session_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("upload_sessions.id", ondelete="CASCADE"), primary_key=True
    )
    number: Mapped[int] = mapped_column(Integer, primary_key=True)
    #: Changes each time the part is (re-)sent; completion checks it did not change meanwhile.
    token: Mapped[uuid.UUID] = mapped_column(Uuid, default=uuid.uuid4)
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    chunk_count: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class UploadPartChunk(Base):
    """The ordered chunks of one part (offsets relative to the part). Each row is one counted
    reference in ``chunks.ref_count``: a part pins its chunks while it exists."""

    __tablename__ = "upload_part_chunks"
    __table_args__ = (
        ForeignKeyConstraint(
            ["session_id", "number"],
            ["upload_parts.session_id", "upload_parts.number"],
            ondelete="CASCADE",
        ),
    )

    session_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    number: Mapped[int] = mapped_column(Integer, primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    chunk_hash: Mapped[str] = mapped_column(String(64), index=True)
    offset: Mapped[int] = mapped_column(BigInteger)
    length: Mapped[int] = mapped_column(Integer)
    #: This part's upload wrote the chunk (it was not stored before): dedup accounting.
    is_new: Mapped[bool] = mapped_column(Boolean, default=False)


# -- garbage collection (see docs/gc.md) ---------------------------------------------------------


class GCLease(Base):
    """An exclusive, expiring lease. The row named ``gc`` is held by the one GC runner allowed to
    mark and sweep; it is taken atomically (inserted, or taken over when expired or already ours)
    and renewed inside every GC transaction that deletes, so a runner that lost it stops there."""

    __tablename__ = "gc_leases"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    owner: Mapped[str] = mapped_column(String(128))
    acquired_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)


class PinSession(Base):
    """An in-flight upload that relies on chunks between its dedup lookup and its commit. Each
    lookup renews ``expires_at``; the commit (or a failed upload) deletes the session; GC deletes
    expired sessions (a gateway that died mid-upload)."""

    __tablename__ = "pin_sessions"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


class ChunkPin(Base):
    """A chunk a pin session relies on (deduplicated against, or written by it). GC deletes
    neither the record nor the bytes of a pinned chunk."""

    __tablename__ = "chunk_pins"

    session_id: Mapped[str] = mapped_column(
        ForeignKey("pin_sessions.id", ondelete="CASCADE"), primary_key=True
    )
    chunk_hash: Mapped[str] = mapped_column(String(64), primary_key=True, index=True)


class GCDeletion(Base):
    """A chunk whose record GC deleted and whose bytes it has not finished deleting yet. Written
    in the transaction that deletes the record; removed once the bytes are gone, so a pass that
    crashed in between is finished by the next one."""

    __tablename__ = "gc_deletions"

    hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    size: Mapped[int] = mapped_column(Integer)
    queued_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
