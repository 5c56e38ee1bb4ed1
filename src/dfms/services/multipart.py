"""Multipart upload sessions: init, parts, status, complete, abort, expiry.

A part's body is streamed through the upload pipeline (:meth:`UploadService.stage`: chunked,
deduplicated and stored as it arrives, never held whole) and committed in its own transaction
as ``upload_parts`` + ``upload_part_chunks`` rows. Each part chunk row is one counted reference
in ``chunks.ref_count``, so GC cannot take a part's chunks while the part exists; replacing a part
(the last one sent wins), aborting the session or its expiry releases them.

Completing builds ONE manifest from the parts' chunk lists in part order, with offsets shifted by
the sizes of the parts before (content-defined boundaries restart at each part boundary, which
only costs a little dedup across part edges). The file's SHA-256 must cover the concatenated
parts, which were hashed one by one as they arrived: completion re-reads the parts' chunks in
order through the verified read path (each chunk checked against its own hash by the store) and
hashes them in a worker thread, with bounded memory (a few chunks in flight). A single-part upload
reuses the part's checksum. The commit then goes through :meth:`UploadService.commit` (the
same quota check, new file or new version, retention, usage), and in the same transaction the
session is deleted and its part references released: the file's manifest now holds them.
If a part was re-sent while the checksum was being computed, the commit notices (every sending of
a part gets a new token) and starts over.
"""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections import Counter
from collections.abc import AsyncIterable, Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from dfms.errors import (
    FileTooLarge,
    FolderNotFound,
    QuotaExceeded,
    UploadConflict,
    UploadNotFound,
    ValidationFailed,
)
from dfms.metadata.db import Database
from dfms.metadata.models import UploadPart, UploadSession, utcnow
from dfms.metadata.multipart_repository import MultipartRepository, PartChunkRow
from dfms.metadata.repositories import ChunkRepository, UserRepository
from dfms.services.names import media_type, parse_id, parse_sha256, validate_name
from dfms.services.uploads import FileView, StagedContent, UploadService
from dfms.storage.cluster import ReplicatedStore

MAX_PARTS = 10_000
#: Chunks read ahead while hashing the concatenated parts.
PREFETCH = 4
#: Expired sessions released per sweep.
SWEEP_BATCH = 100


@dataclass(frozen=True, slots=True)
class PartView:
    number: int
    size: int
    checksum: str
    chunk_count: int
    created_at: datetime


@dataclass(frozen=True, slots=True)
class PartReceipt:
    upload_id: uuid.UUID
    part: PartView
    new_chunks: int
    dedup_chunks: int


@dataclass(frozen=True, slots=True)
class SessionView:
    upload_id: uuid.UUID
    file_name: str
    folder_id: uuid.UUID | None
    mime_type: str | None
    file_size: int | None
    sha256: str | None
    created_at: datetime
    expires_at: datetime
    parts: list[PartView]

    @property
    def received_bytes(self) -> int:
        return sum(p.size for p in self.parts)


class _PartsChanged(Exception):
    """A part was re-sent (or removed) while the upload was being completed."""


def _part_view(p: UploadPart) -> PartView:
    return PartView(p.number, p.size, p.sha256, p.chunk_count, p.created_at)


class MultipartService:
    def __init__(
        self,
        db: Database,
        uploads: UploadService,
        store: ReplicatedStore,
        *,
        min_part_size: int,
        session_ttl: int,
        executor: Executor | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.db = db
        self.uploads = uploads
        self.store = store
        self.min_part_size = min_part_size
        self.session_ttl = session_ttl
        self.executor = executor
        self.clock = clock

    # ---- sessions ----

    async def init(
        self,
        user_id: uuid.UUID,
        *,
        file_name: str,
        mime_type: str | None = None,
        file_size: int | None = None,
        sha256: str | None = None,
        folder_id: str | uuid.UUID | None = None,
    ) -> SessionView:
        name = validate_name(file_name)
        if file_size is not None:
            if file_size < 0:
                raise ValidationFailed("file_size must not be negative")
            if file_size > self.uploads.max_size:
                raise FileTooLarge(
                    f"file exceeds the maximum upload size of {self.uploads.max_size} bytes"
                )
            if file_size > await self.uploads.quota_left(user_id):
                raise QuotaExceeded()
        await self.uploads.check_target(user_id, folder_id or None)
        mime = media_type(mime_type, name)
        declared = None if sha256 is None else parse_sha256(sha256, "sha256")
        await self.expire_sessions()
        now = self.clock()
        async with self.db.write() as s:
            upload = await MultipartRepository(s).add_session(
                UploadSession(
                    owner_id=user_id,
                    file_name=name,
                    folder_id=parse_id(folder_id, FolderNotFound) if folder_id else None,
                    mime_type=mime,
                    file_size=file_size,
                    sha256=declared,
                    created_at=now,
                    expires_at=now + timedelta(seconds=self.session_ttl),
                )
            )
            return self._view(upload, [])

    async def status(self, user_id: uuid.UUID, upload_id: str | uuid.UUID) -> SessionView:
        async with self.db.read() as s:
            repo = MultipartRepository(s)
            upload = await self._live(repo, user_id, upload_id)
            return self._view(upload, await repo.parts(upload.id))

    async def abort(self, user_id: uuid.UUID, upload_id: str | uuid.UUID) -> None:
        """Delete the session and release its parts' chunk references."""
        async with self.db.write() as s:
            if await UserRepository(s).lock(user_id) is None:
                raise UploadNotFound()
            repo = MultipartRepository(s)
            upload = await self._live(repo, user_id, upload_id, for_update=True)
            await self._release_session(s, upload.id)

    async def expire_sessions(self, limit: int = SWEEP_BATCH) -> int:
        """Release up to ``limit`` expired sessions (their parts' chunk references go to GC).
        Run at each init; a worker may call it too. Returns how many were released."""
        async with self.db.write() as s:
            ids = await MultipartRepository(s).expired(self.clock(), limit)
            for upload_id in ids:
                await self._release_session(s, upload_id)
            return len(ids)

    # ---- parts ----

    async def put_part(
        self,
        user_id: uuid.UUID,
        upload_id: str | uuid.UUID,
        number: int,
        body: AsyncIterable[bytes],
        *,
        expected_sha256: str | None = None,
    ) -> PartReceipt:
        """Stream one part into storage and record it (replacing an earlier one with the same
        number). Refused with 404 before reading the body when the session is not the user's
        or has expired; 413 as soon as the session would exceed the size cap or the quota
        (parts of open sessions count against the quota while they exist); 400
        CHECKSUM_MISMATCH, recording nothing, when the part does not hash to
        ``expected_sha256`` (what the client declared for this part)."""
        if not 1 <= number <= MAX_PARTS:
            raise ValidationFailed(f"part numbers are 1 to {MAX_PARTS}")
        async with self.db.read() as s:
            repo = MultipartRepository(s)
            upload = await self._live(repo, user_id, upload_id)
            others = await repo.session_bytes(upload.id, except_part=number)
            pending = await repo.pending_bytes(
                user_id, self.clock(), except_part=(upload.id, number)
            )
            user = await UserRepository(s).get(user_id)
            if user is None:
                raise UploadNotFound()
            quota_left = max(0, user.quota_bytes - user.used_bytes - pending)
        staged = await self.uploads.stage(
            user_id,
            body,
            max_size=max(0, self.uploads.max_size - others),
            quota_left=quota_left,
        )
        committed = False
        try:
            staged.require_sha256(expected_sha256, f"the bytes of part {number}")
            async with self.db.write() as s:
                # First statement: take the GC gate and turn the staging pins into references.
                await self.uploads.claim_pins(s, staged)
                user = await UserRepository(s).lock(user_id)
                if user is None:
                    raise UploadNotFound()
                repo = MultipartRepository(s)
                upload = await self._live(repo, user_id, upload.id, for_update=True)
                pending = await repo.pending_bytes(
                    user_id, self.clock(), except_part=(upload.id, number)
                )
                if user.used_bytes + pending + staged.size > user.quota_bytes:
                    raise QuotaExceeded()
                others = await repo.session_bytes(upload.id, except_part=number)
                if others + staged.size > self.uploads.max_size:
                    raise FileTooLarge(
                        f"file exceeds the maximum upload size of {self.uploads.max_size} bytes"
                    )
                chunks = ChunkRepository(s)
                # Reference the new part's chunks before releasing the replaced part's, so a chunk
                # both share never drops to zero.
                await chunks.add_refs(Counter(h for h, _, _ in staged.chunks), staged.sizes)
                await chunks.add_replicas(staged.written)
                replaced = await repo.occurrences(upload.id, number)
                if replaced:
                    await chunks.release(replaced)
                await repo.delete_part(upload.id, number)
                part = await repo.add_part(
                    upload.id,
                    number,
                    size=staged.size,
                    sha256=staged.sha256,
                    chunks=staged.chunks,
                    new=set(staged.written),
                )
                receipt = PartReceipt(
                    upload.id, _part_view(part), staged.new_chunks, staged.dedup_chunks
                )
            committed = True
            return receipt
        finally:
            if not committed:
                await self.uploads.release_pins(staged)

    # ---- complete ----

    async def complete(self, user_id: uuid.UUID, upload_id: str | uuid.UUID) -> FileView:
        """Assemble the parts into a file (or a new version of the name), atomically."""
        for _attempt in range(3):
            async with self.db.read() as s:
                repo = MultipartRepository(s)
                upload = await self._live(repo, user_id, upload_id)
                parts = await repo.parts(upload.id)
            total = self._check_parts(upload, parts)
            staged = await self._assemble(upload.id, parts, total)
            tokens = {p.number: p.token for p in parts}

            async def finalize(
                s: AsyncSession,
                sid: uuid.UUID = upload.id,
                seen: dict[int, uuid.UUID] = tokens,
            ) -> None:
                repo = MultipartRepository(s)
                await self._live(repo, user_id, sid, for_update=True)
                if {p.number: p.token for p in await repo.parts(sid)} != seen:
                    raise _PartsChanged()
                await self._release_session(s, sid)

            try:
                return await self.uploads.commit(
                    user_id,
                    staged,
                    name=upload.file_name,
                    folder_id=upload.folder_id,
                    mime_type=upload.mime_type,
                    finalize=finalize,
                    expected_sha256=upload.sha256,
                )
            except _PartsChanged:
                continue
        raise UploadConflict()

    def _check_parts(self, upload: UploadSession, parts: list[UploadPart]) -> int:
        if not parts:
            raise ValidationFailed("no parts were uploaded")
        numbers = [p.number for p in parts]
        if numbers != list(range(1, len(parts) + 1)):
            missing = next(n for n in range(1, numbers[-1] + 1) if n not in set(numbers))
            raise ValidationFailed(f"part {missing} is missing: parts must be numbered 1..n")
        for p in parts[:-1]:
            if p.size < self.min_part_size:
                raise ValidationFailed(
                    f"part {p.number} has {p.size} bytes: every part but the last needs at "
                    f"least {self.min_part_size}"
                )
        total = sum(p.size for p in parts)
        if upload.file_size is not None and total != upload.file_size:
            raise ValidationFailed(
                f"the parts hold {total} bytes but file_size announced {upload.file_size}"
            )
        if total > self.uploads.max_size:
            raise FileTooLarge(
                f"file exceeds the maximum upload size of {self.uploads.max_size} bytes"
            )
        return total

    async def _assemble(
        self, upload_id: uuid.UUID, parts: list[UploadPart], total: int
    ) -> StagedContent:
        """The file's manifest (part chunk lists concatenated, offsets shifted) and checksum."""
        starts: dict[int, int] = {}
        pos = 0
        for p in parts:
            starts[p.number] = pos
            pos += p.size
        staged = StagedContent(size=total)
        rows: list[PartChunkRow] = []
        after = (0, -1)
        while True:
            async with self.db.read() as s:
                page = await MultipartRepository(s).chunk_rows(upload_id, after=after)
            if not page:
                break
            rows += page
            after = (page[-1].number, page[-1].seq)
        for r in rows:
            staged.chunks.append((r.chunk_hash, starts[r.number] + r.offset, r.length))
            staged.sizes[r.chunk_hash] = r.length
            if r.is_new:
                # Replicas were recorded when the part was committed: nothing to add here.
                staged.written[r.chunk_hash] = []
        staged.sha256 = parts[0].sha256 if len(parts) == 1 else await self._sha256(rows)
        return staged

    async def _sha256(self, rows: list[PartChunkRow]) -> str:
        """SHA-256 of the chunks in order, each read and verified through the store."""
        digest = hashlib.sha256()
        loop = asyncio.get_running_loop()
        inflight: list[asyncio.Task[bytes]] = []
        try:
            for i in range(0, len(rows), 256):
                batch = rows[i : i + 256]
                async with self.db.read() as s:
                    replicas = await ChunkRepository(s).replicas([r.chunk_hash for r in batch])
                for r in batch:
                    inflight.append(
                        asyncio.create_task(
                            self.store.get(r.chunk_hash, replicas=replicas.get(r.chunk_hash, []))
                        )
                    )
                    if len(inflight) >= PREFETCH:
                        data = await inflight.pop(0)
                        await loop.run_in_executor(self.executor, digest.update, data)
            while inflight:
                data = await inflight.pop(0)
                await loop.run_in_executor(self.executor, digest.update, data)
        finally:
            for t in inflight:
                t.cancel()
            await asyncio.gather(*inflight, return_exceptions=True)
        return digest.hexdigest()

    # ---- helpers ----

    async def _live(
        self,
        repo: MultipartRepository,
        user_id: uuid.UUID,
        upload_id: str | uuid.UUID,
        *,
        for_update: bool = False,
    ) -> UploadSession:
        """The user's unexpired session; UploadNotFound for anyone else's, expired or unknown."""
        upload = await repo.get(user_id, parse_id(upload_id, UploadNotFound), for_update=for_update)
        if upload is None or upload.expires_at <= self.clock():
            raise UploadNotFound()
        return upload

    @staticmethod
    async def _release_session(s: AsyncSession, upload_id: uuid.UUID) -> None:
        repo = MultipartRepository(s)
        occurrences = await repo.occurrences(upload_id)
        if occurrences:
            await ChunkRepository(s).release(occurrences)
        await repo.delete_session(upload_id)

    @staticmethod
    def _view(upload: UploadSession, parts: list[UploadPart]) -> SessionView:
        return SessionView(
            upload_id=upload.id,
            file_name=upload.file_name,
            folder_id=upload.folder_id,
            mime_type=upload.mime_type,
            file_size=upload.file_size,
            sha256=upload.sha256,
            created_at=upload.created_at,
            expires_at=upload.expires_at,
            parts=[_part_view(p) for p in parts],
        )
