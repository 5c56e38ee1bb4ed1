"""Repositories: every SQL statement of DFMS lives here. Each takes the caller's session, so a
service composes several of them inside one transaction.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, delete, func, insert, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from dfms.metadata.models import (
    Chunk,
    ChunkReplica,
    Entry,
    Manifest,
    ManifestChunk,
    Node,
    RefreshToken,
    RepairTask,
    User,
    Version,
    utcnow,
)

#: Rows per multi-row INSERT (keeps statements under SQLite's parameter limit).
BATCH = 500


def _dialect(session: AsyncSession) -> str:
    return session.get_bind().dialect.name


def _insert(session: AsyncSession, table: Any) -> Any:
    """A dialect-specific INSERT that supports ``on_conflict_*``."""
    if _dialect(session) == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


def _batches(items: Sequence[Any], size: int = BATCH) -> Iterable[Sequence[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


class UserRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.s = session

    async def get(self, user_id: uuid.UUID) -> User | None:
        return await self.s.get(User, user_id)

    async def by_email(self, email: str) -> User | None:
        return (await self.s.execute(select(User).where(User.email == email))).scalar_one_or_none()

    async def add(self, user: User) -> User:
        self.s.add(user)
        await self.s.flush()
        return user

    async def add_used_bytes(self, user_id: uuid.UUID, delta: int) -> None:
        await self.s.execute(
            update(User).where(User.id == user_id).values(used_bytes=User.used_bytes + delta)
        )

    async def lock(self, user_id: uuid.UUID) -> User | None:
        """Load the user row for update (serialises quota checks of one user on PostgreSQL)."""
        stmt = select(User).where(User.id == user_id).with_for_update()
        return (await self.s.execute(stmt)).scalar_one_or_none()


class RefreshTokenRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.s = session

    async def add(self, jti: str, user_id: uuid.UUID, family_id: str, expires_at: datetime) -> None:
        self.s.add(
            RefreshToken(jti=jti, user_id=user_id, family_id=family_id, expires_at=expires_at)
        )
        await self.s.flush()

    async def get(self, jti: str) -> RefreshToken | None:
        stmt = select(RefreshToken).where(RefreshToken.jti == jti).with_for_update()
        return (await self.s.execute(stmt)).scalar_one_or_none()

    async def mark_used(self, jti: str) -> bool:
        """Retire a token; False if it was already used or revoked (a replay)."""
        res = await self.s.execute(
            update(RefreshToken)
            .where(
                RefreshToken.jti == jti,
                RefreshToken.used_at.is_(None),
                RefreshToken.revoked_at.is_(None),
            )
            .values(used_at=utcnow())
        )
        return bool(getattr(res, "rowcount", 0))

    async def revoke_family(self, family_id: str) -> None:
        await self.s.execute(
            update(RefreshToken)
            .where(RefreshToken.family_id == family_id, RefreshToken.revoked_at.is_(None))
            .values(revoked_at=utcnow())
        )

    async def revoke_user(self, user_id: uuid.UUID) -> None:
        """Revoke every refresh token of a user (account disabled)."""
        await self.s.execute(
            update(RefreshToken)
            .where(RefreshToken.user_id == user_id, RefreshToken.revoked_at.is_(None))
            .values(revoked_at=utcnow())
        )


class EntryRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.s = session

    async def root(self, owner_id: uuid.UUID) -> Entry | None:
        stmt = select(Entry).where(Entry.owner_id == owner_id, Entry.parent_id.is_(None))
        return (await self.s.execute(stmt)).scalar_one_or_none()

    async def get(self, owner_id: uuid.UUID, entry_id: uuid.UUID, kind: str) -> Entry | None:
        """A live entry of ``kind`` owned by ``owner_id`` (None for anyone else's)."""
        stmt = select(Entry).where(
            Entry.id == entry_id,
            Entry.owner_id == owner_id,
            Entry.kind == kind,
            Entry.deleted_at.is_(None),
        )
        return (await self.s.execute(stmt)).scalar_one_or_none()

    async def by_name(
        self, owner_id: uuid.UUID, parent_id: uuid.UUID, name: str, *, for_update: bool = False
    ) -> Entry | None:
        stmt = select(Entry).where(
            Entry.owner_id == owner_id,
            Entry.parent_id == parent_id,
            Entry.name == name,
            Entry.deleted_at.is_(None),
        )
        if for_update:
            stmt = stmt.with_for_update()
        return (await self.s.execute(stmt)).scalar_one_or_none()

    async def add(self, entry: Entry) -> Entry:
        self.s.add(entry)
        await self.s.flush()
        return entry

    async def list_files(
        self, owner_id: uuid.UUID, *, offset: int, limit: int
    ) -> tuple[list[Entry], int]:
        where = and_(Entry.owner_id == owner_id, Entry.kind == "file", Entry.deleted_at.is_(None))
        total = (
            await self.s.execute(select(func.count()).select_from(Entry).where(where))
        ).scalar_one()
        stmt = (
            select(Entry)
            .where(where)
            .order_by(Entry.created_at.desc(), Entry.id)
            .offset(offset)
            .limit(limit)
        )
        rows = list((await self.s.execute(stmt)).scalars())
        return rows, int(total)

    async def soft_delete(self, entry_id: uuid.UUID) -> None:
        await self.s.execute(
            update(Entry)
            .where(Entry.id == entry_id)
            .values(deleted_at=utcnow(), current_version_id=None)
        )

    async def set_current(
        self, entry: Entry, version: Version, *, updated_at: datetime | None = None
    ) -> None:
        entry.current_version_id = version.id
        entry.size = version.size
        entry.mime_type = version.mime_type
        entry.updated_at = updated_at or utcnow()
        await self.s.flush()


@dataclass(frozen=True, slots=True)
class ManifestRow:
    seq: int
    chunk_hash: str
    offset: int
    length: int


class VersionRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.s = session

    async def get(self, version_id: uuid.UUID) -> Version | None:
        return await self.s.get(Version, version_id)

    async def get_many(self, version_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, Version]:
        """Versions by id, in one query per batch (a listing page, not one query per row)."""
        out: dict[uuid.UUID, Version] = {}
        for batch in _batches(list(version_ids)):
            for v in (await self.s.execute(select(Version).where(Version.id.in_(batch)))).scalars():
                out[v.id] = v
        return out

    async def next_number(self, entry_id: uuid.UUID) -> int:
        """One above the highest version number the entry has, or ever had (numbers of deleted
        versions are not reused: ``entries.version_floor``)."""
        top = select(func.coalesce(func.max(Version.number), 0)).where(Version.entry_id == entry_id)
        floor = select(Entry.version_floor).where(Entry.id == entry_id)
        highest = int((await self.s.execute(top)).scalar_one())
        return max(highest, int((await self.s.execute(floor)).scalar_one_or_none() or 0)) + 1

    async def list_for_entry(self, entry_id: uuid.UUID) -> list[Version]:
        stmt = select(Version).where(Version.entry_id == entry_id).order_by(Version.number)
        return list((await self.s.execute(stmt)).scalars())

    async def add(self, version: Version) -> Version:
        self.s.add(version)
        await self.s.flush()
        return version

    async def delete_for_entry(self, entry_id: uuid.UUID) -> list[tuple[uuid.UUID, int]]:
        """Delete every version of an entry; return (manifest id, size) of each."""
        rows = (
            await self.s.execute(
                select(Version.manifest_id, Version.size).where(Version.entry_id == entry_id)
            )
        ).all()
        await self.s.execute(delete(Version).where(Version.entry_id == entry_id))
        return [(r[0], int(r[1])) for r in rows]


class ManifestRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.s = session

    async def create(
        self, size: int, sha256: str, chunks: Sequence[tuple[str, int, int]]
    ) -> Manifest:
        """Insert a manifest and its ordered chunk rows ``(hash, offset, length)``."""
        manifest = Manifest(size=size, sha256=sha256, chunk_count=len(chunks), ref_count=1)
        self.s.add(manifest)
        await self.s.flush()
        rows = [
            {"manifest_id": manifest.id, "seq": i, "chunk_hash": h, "offset": o, "length": n}
            for i, (h, o, n) in enumerate(chunks)
        ]
        for batch in _batches(rows):
            await self.s.execute(insert(ManifestChunk), list(batch))
        return manifest

    async def add_ref(self, manifest_id: uuid.UUID, delta: int = 1) -> None:
        await self.s.execute(
            update(Manifest)
            .where(Manifest.id == manifest_id)
            .values(ref_count=Manifest.ref_count + delta)
        )

    async def release(self, manifest_id: uuid.UUID) -> Counter[str] | None:
        """Drop one version's reference; when none remain, delete the manifest and return its
        chunk occurrences (hash -> count) for the caller to release. Otherwise None."""
        res = await self.s.execute(
            update(Manifest)
            .where(Manifest.id == manifest_id)
            .values(ref_count=Manifest.ref_count - 1)
            .returning(Manifest.ref_count)
        )
        remaining = res.scalar_one_or_none()
        if remaining is None or remaining > 0:
            return None
        occurrences: Counter[str] = Counter()
        stmt = (
            select(ManifestChunk.chunk_hash, func.count())
            .where(ManifestChunk.manifest_id == manifest_id)
            .group_by(ManifestChunk.chunk_hash)
        )
        for h, n in (await self.s.execute(stmt)).all():
            occurrences[h] = int(n)
        await self.s.execute(delete(ManifestChunk).where(ManifestChunk.manifest_id == manifest_id))
        await self.s.execute(delete(Manifest).where(Manifest.id == manifest_id))
        return occurrences

    async def chunks(
        self,
        manifest_id: uuid.UUID,
        *,
        after_seq: int = -1,
        limit: int = 256,
        start: int | None = None,
        end: int | None = None,
    ) -> list[ManifestRow]:
        """A page of manifest rows in order (keyset on ``seq``), optionally only those that
        overlap the byte range [start, end]."""
        conds = [ManifestChunk.manifest_id == manifest_id, ManifestChunk.seq > after_seq]
        if start is not None:
            conds.append(ManifestChunk.offset + ManifestChunk.length > start)
        if end is not None:
            conds.append(ManifestChunk.offset <= end)
        stmt = (
            select(
                ManifestChunk.seq,
                ManifestChunk.chunk_hash,
                ManifestChunk.offset,
                ManifestChunk.length,
            )
            .where(*conds)
            .order_by(ManifestChunk.seq)
            .limit(limit)
        )
        return [
            ManifestRow(int(r[0]), r[1], int(r[2]), int(r[3]))
            for r in (await self.s.execute(stmt)).all()
        ]


class ChunkRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.s = session

    async def stored(self, hashes: Sequence[str]) -> dict[str, list[str]]:
        """Which of ``hashes`` are known with at least one replica: hash -> replica node ids."""
        out: dict[str, list[str]] = {}
        # Table columns, not mapped attributes: a plain Core statement skips the ORM's
        # per-execution set-up (the upload path runs this for every batch of chunks).
        replica = ChunkReplica.__table__.c
        chunk = Chunk.__table__.c
        for batch in _batches(list(hashes)):
            stmt = (
                select(replica.chunk_hash, replica.node_id)
                .join(Chunk.__table__, chunk.hash == replica.chunk_hash)
                .where(replica.chunk_hash.in_(batch))
            )
            for h, node in (await self.s.execute(stmt)).all():
                out.setdefault(h, []).append(node)
        return out

    async def add_refs(self, occurrences: Counter[str], sizes: dict[str, int]) -> None:
        """Insert or re-claim chunks, adding ``occurrences[h]`` references to each. A chunk that
        GC had marked becomes live again."""
        rows = [
            {"hash": h, "size": sizes[h], "ref_count": n, "state": "live", "created_at": utcnow()}
            for h, n in sorted(occurrences.items())
        ]
        for batch in _batches(rows):
            stmt = _insert(self.s, Chunk.__table__).values(list(batch))
            stmt = stmt.on_conflict_do_update(
                index_elements=["hash"],
                set_={
                    "ref_count": Chunk.__table__.c.ref_count + stmt.excluded.ref_count,
                    "state": "live",
                    "marked_at": None,
                },
            )
            await self.s.execute(stmt)

    async def release(self, occurrences: Counter[str]) -> None:
        """Drop references; chunks reaching zero stay for GC to mark and sweep."""
        by_count: dict[int, list[str]] = {}
        for h, n in occurrences.items():
            by_count.setdefault(n, []).append(h)
        # Two-argument max() is SQLite's scalar maximum; PostgreSQL calls it greatest().
        floor = func.max if _dialect(self.s) == "sqlite" else func.greatest
        for n, hashes in sorted(by_count.items()):
            for batch in _batches(sorted(hashes)):
                await self.s.execute(
                    update(Chunk)
                    .where(Chunk.hash.in_(batch))
                    .values(ref_count=floor(Chunk.ref_count - n, 0))
                )

    async def add_replicas(self, replicas: Mapping[str, Sequence[str]]) -> None:
        rows = [
            {"chunk_hash": h, "node_id": n, "created_at": utcnow()}
            for h, nodes in sorted(replicas.items())
            for n in nodes
        ]
        for batch in _batches(rows):
            stmt = _insert(self.s, ChunkReplica.__table__).values(list(batch))
            await self.s.execute(stmt.on_conflict_do_nothing())

    async def replicas(self, hashes: Sequence[str]) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for batch in _batches(list(set(hashes))):
            stmt = select(ChunkReplica.chunk_hash, ChunkReplica.node_id).where(
                ChunkReplica.chunk_hash.in_(batch)
            )
            for h, node in (await self.s.execute(stmt)).all():
                out.setdefault(h, []).append(node)
        return out

    async def totals(self) -> tuple[int, int]:
        """(chunk count, stored bytes) over all chunk records."""
        row = (
            await self.s.execute(select(func.count(), func.coalesce(func.sum(Chunk.size), 0)))
        ).one()
        return int(row[0]), int(row[1])

    async def get(self, chunk_hash: str) -> Chunk | None:
        return await self.s.get(Chunk, chunk_hash)


class NodeRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.s = session

    async def upsert(self, node_id: str, address: str, zone: str, weight: float) -> None:
        stmt = _insert(self.s, Node.__table__).values(
            id=node_id, address=address, zone=zone, weight=weight, state="up", updated_at=utcnow()
        )
        stmt = stmt.on_conflict_do_update(
            index_elements=["id"],
            set_={"address": address, "zone": zone, "weight": weight, "updated_at": utcnow()},
        )
        await self.s.execute(stmt)

    async def all(self) -> list[Node]:
        return list((await self.s.execute(select(Node).order_by(Node.id))).scalars())


class RepairRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.s = session

    async def add(self, items: Sequence[tuple[str, str, str]]) -> None:
        """Record (chunk hash, node id, reason) replicas to restore; duplicates are ignored."""
        rows = [
            {"chunk_hash": h, "node_id": n, "reason": r, "created_at": utcnow()}
            for h, n, r in items
        ]
        for batch in _batches(rows):
            stmt = _insert(self.s, RepairTask.__table__).values(list(batch))
            await self.s.execute(stmt.on_conflict_do_nothing())

    async def count(self) -> int:
        return int(
            (await self.s.execute(select(func.count()).select_from(RepairTask))).scalar_one()
        )

    async def drop_replicas(self, items: Sequence[tuple[str, str]]) -> None:
        """Forget replicas that a read found missing or corrupt."""
        if not items:
            return
        conds = [and_(ChunkReplica.chunk_hash == h, ChunkReplica.node_id == n) for h, n in items]
        await self.s.execute(delete(ChunkReplica).where(or_(*conds)))
