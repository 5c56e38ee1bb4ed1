"""SQL of account administration and cluster statistics (the admin API and ``dfms user``)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import and_, func, select, true
from sqlalchemy.ext.asyncio import AsyncSession

from dfms.metadata.models import Chunk, ChunkReplica, Entry, User, Version


@dataclass(frozen=True, slots=True)
class UserCounts:
    users: int
    active: int
    active_admins: int


@dataclass(frozen=True, slots=True)
class FileTotals:
    #: Live files.
    files: int
    #: Stored versions of live files.
    versions: int
    #: Sum of the sizes of every stored version of live files (what quotas count).
    logical_bytes: int
    #: Sum of the sizes of live files' current versions.
    current_bytes: int


@dataclass(frozen=True, slots=True)
class ChunkTotals:
    #: Chunk records (distinct contents), including unreferenced ones awaiting GC.
    chunks: int
    #: Sum of the chunk records' sizes: each distinct content once.
    unique_bytes: int
    #: Sum over chunk records of size x recorded replicas: bytes on the storage nodes.
    stored_bytes: int


class AdminRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.s = session

    async def search_users(
        self, query: str | None, *, offset: int, limit: int
    ) -> tuple[list[User], int]:
        """A page of users ordered by email; ``query`` is a substring of the (lower-case) email,
        matched literally (``%`` and ``_`` are not wildcards)."""
        where = User.email.contains(query.lower(), autoescape=True) if query else true()
        total = (
            await self.s.execute(select(func.count()).select_from(User).where(where))
        ).scalar_one()
        stmt = select(User).where(where).order_by(User.email, User.id).offset(offset).limit(limit)
        return list((await self.s.execute(stmt)).scalars()), int(total)

    async def lock_active_admins(self) -> list[uuid.UUID]:
        """Ids of the active admins, locked (``FOR UPDATE``, in id order) until the transaction
        ends, so that two concurrent demotions cannot both see another admin left."""
        stmt = (
            select(User.id)
            .where(User.role == "admin", User.is_active.is_(True))
            .order_by(User.id)
            .with_for_update()
        )
        return list((await self.s.execute(stmt)).scalars())

    async def user_counts(self) -> UserCounts:
        active = User.is_active.is_(True)
        row = (
            await self.s.execute(
                select(
                    func.count(),
                    func.count().filter(active),
                    func.count().filter(and_(active, User.role == "admin")),
                ).select_from(User)
            )
        ).one()
        return UserCounts(int(row[0]), int(row[1]), int(row[2]))

    async def file_totals(self) -> FileTotals:
        live_file = and_(Entry.kind == "file", Entry.deleted_at.is_(None))
        files, current = (
            await self.s.execute(
                select(func.count(), func.coalesce(func.sum(Entry.size), 0))
                .select_from(Entry)
                .where(live_file)
            )
        ).one()
        versions, logical = (
            await self.s.execute(
                select(func.count(), func.coalesce(func.sum(Version.size), 0))
                .select_from(Version)
                .join(Entry, Entry.id == Version.entry_id)
                .where(live_file)
            )
        ).one()
        return FileTotals(int(files), int(versions), int(logical), int(current))

    async def chunk_totals(self) -> ChunkTotals:
        chunks, unique = (
            await self.s.execute(select(func.count(), func.coalesce(func.sum(Chunk.size), 0)))
        ).one()
        stored = (
            await self.s.execute(
                select(func.coalesce(func.sum(Chunk.size), 0))
                .select_from(ChunkReplica)
                .join(Chunk, Chunk.hash == ChunkReplica.chunk_hash)
            )
        ).scalar_one()
        return ChunkTotals(int(chunks), int(unique), int(stored))
