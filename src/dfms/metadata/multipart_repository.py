"""SQL of multipart upload sessions and their parts.

Each ``upload_part_chunks`` row is one reference counted in ``chunks.ref_count`` (the caller adds
the references when it inserts a part and releases them, with :meth:`occurrences`, before it
deletes one): while a part exists, GC sees its chunks as referenced.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, delete, func, insert, not_, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from dfms.metadata.models import UploadPart, UploadPartChunk, UploadSession, utcnow
from dfms.metadata.repositories import BATCH


@dataclass(frozen=True, slots=True)
class PartChunkRow:
    number: int
    seq: int
    chunk_hash: str
    offset: int
    length: int
    is_new: bool


class MultipartRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.s = session

    async def add_session(self, upload: UploadSession) -> UploadSession:
        self.s.add(upload)
        await self.s.flush()
        return upload

    async def get(
        self, owner_id: uuid.UUID, upload_id: uuid.UUID, *, for_update: bool = False
    ) -> UploadSession | None:
        """The session if ``owner_id`` owns it (None for anyone else's)."""
        stmt = select(UploadSession).where(
            UploadSession.id == upload_id, UploadSession.owner_id == owner_id
        )
        if for_update:
            stmt = stmt.with_for_update()
        return (await self.s.execute(stmt)).scalar_one_or_none()

    async def parts(self, upload_id: uuid.UUID) -> list[UploadPart]:
        stmt = (
            select(UploadPart).where(UploadPart.session_id == upload_id).order_by(UploadPart.number)
        )
        return list((await self.s.execute(stmt)).scalars())

    async def session_bytes(self, upload_id: uuid.UUID, *, except_part: int) -> int:
        """Bytes of the session's parts other than ``except_part``."""
        stmt = select(func.coalesce(func.sum(UploadPart.size), 0)).where(
            UploadPart.session_id == upload_id, UploadPart.number != except_part
        )
        return int((await self.s.execute(stmt)).scalar_one())

    async def pending_bytes(
        self, owner_id: uuid.UUID, now: datetime, *, except_part: tuple[uuid.UUID, int]
    ) -> int:
        """Bytes held in the parts of the owner's live sessions, but one part."""
        sid, number = except_part
        stmt = (
            select(func.coalesce(func.sum(UploadPart.size), 0))
            .join(UploadSession, UploadSession.id == UploadPart.session_id)
            .where(
                UploadSession.owner_id == owner_id,
                UploadSession.expires_at > now,
                not_(and_(UploadPart.session_id == sid, UploadPart.number == number)),
            )
        )
        return int((await self.s.execute(stmt)).scalar_one())

    async def occurrences(self, upload_id: uuid.UUID, number: int | None = None) -> Counter[str]:
        """Chunk occurrences (hash -> count) of one part, or of every part of the session."""
        conds = [UploadPartChunk.session_id == upload_id]
        if number is not None:
            conds.append(UploadPartChunk.number == number)
        stmt = (
            select(UploadPartChunk.chunk_hash, func.count())
            .where(*conds)
            .group_by(UploadPartChunk.chunk_hash)
        )
        return Counter({h: int(n) for h, n in (await self.s.execute(stmt)).all()})

    async def add_part(
        self,
        upload_id: uuid.UUID,
        number: int,
        *,
        size: int,
        sha256: str,
        chunks: Sequence[tuple[str, int, int]],
        new: set[str],
    ) -> UploadPart:
        """Insert a part (the caller deleted any previous one with this number)."""
        part = UploadPart(
            session_id=upload_id,
            number=number,
            token=uuid.uuid4(),
            size=size,
            sha256=sha256,
            chunk_count=len(chunks),
            created_at=utcnow(),
        )
        self.s.add(part)
        await self.s.flush()
        rows = [
            {
                "session_id": upload_id,
                "number": number,
                "seq": i,
                "chunk_hash": h,
                "offset": o,
                "length": n,
                "is_new": h in new,
            }
            for i, (h, o, n) in enumerate(chunks)
        ]
        for i in range(0, len(rows), BATCH):
            await self.s.execute(insert(UploadPartChunk), rows[i : i + BATCH])
        return part

    async def delete_part(self, upload_id: uuid.UUID, number: int) -> None:
        await self.s.execute(
            delete(UploadPartChunk).where(
                UploadPartChunk.session_id == upload_id, UploadPartChunk.number == number
            )
        )
        await self.s.execute(
            delete(UploadPart).where(
                UploadPart.session_id == upload_id, UploadPart.number == number
            )
        )

    async def delete_session(self, upload_id: uuid.UUID) -> None:
        await self.s.execute(delete(UploadPartChunk).where(UploadPartChunk.session_id == upload_id))
        await self.s.execute(delete(UploadPart).where(UploadPart.session_id == upload_id))
        await self.s.execute(delete(UploadSession).where(UploadSession.id == upload_id))

    async def chunk_rows(
        self, upload_id: uuid.UUID, *, after: tuple[int, int] = (0, -1), limit: int = 512
    ) -> list[PartChunkRow]:
        """A page of the session's part chunks in (part, seq) order, after ``after``."""
        stmt = (
            select(
                UploadPartChunk.number,
                UploadPartChunk.seq,
                UploadPartChunk.chunk_hash,
                UploadPartChunk.offset,
                UploadPartChunk.length,
                UploadPartChunk.is_new,
            )
            .where(
                UploadPartChunk.session_id == upload_id,
                tuple_(UploadPartChunk.number, UploadPartChunk.seq) > tuple_(*after),
            )
            .order_by(UploadPartChunk.number, UploadPartChunk.seq)
            .limit(limit)
        )
        return [
            PartChunkRow(int(r[0]), int(r[1]), r[2], int(r[3]), int(r[4]), bool(r[5]))
            for r in (await self.s.execute(stmt)).all()
        ]

    async def expired(self, now: datetime, limit: int) -> list[uuid.UUID]:
        """Ids of sessions past their expiry, locked (others' locked ones are skipped)."""
        stmt = (
            select(UploadSession.id)
            .where(UploadSession.expires_at <= now)
            .order_by(UploadSession.expires_at)
            .limit(limit)
        )
        if self.s.get_bind().dialect.name == "postgresql":
            stmt = stmt.with_for_update(skip_locked=True)
        return list((await self.s.execute(stmt)).scalars())
