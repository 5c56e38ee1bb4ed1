"""The upload pipeline (the hot path).

body stream -> size/quota guard -> content-defined chunker + SHA-256 (threads, see
:mod:`dfms.chunking`) -> batched dedup lookup -> new chunks written to their ring owners in
parallel (bounded) -> ``sync`` of the stores -> ONE transaction: version, manifest, reference
counts, replicas, usage. Nothing is visible before that transaction commits; bytes written by an
upload that never commits are orphans that GC reclaims after its grace period.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import Counter
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession

from dfms.chunking import Chunk, ChunkParams, ChunkPipeline
from dfms.chunking.prefetch import prefetch, read_ahead
from dfms.errors import (
    ChecksumMismatch,
    FileTooLarge,
    FolderNotFound,
    NameConflict,
    QuorumNotReached,
    QuotaExceeded,
    StorageError,
)
from dfms.metadata.db import Database
from dfms.metadata.gc_repository import PinRepository
from dfms.metadata.models import Entry, Version, utcnow
from dfms.metadata.repositories import (
    ChunkRepository,
    EntryRepository,
    ManifestRepository,
    UserRepository,
    VersionRepository,
)
from dfms.services.names import media_type, parse_id, validate_name
from dfms.services.releases import apply_retention
from dfms.storage.cluster import ReplicatedStore

log = logging.getLogger(__name__)

#: Request body read ahead of the chunker, so receiving overlaps cutting, hashing and writing.
PREFETCH_BYTES = 8 << 20
#: Chunks cut and hashed ahead of the dedup lookups and writes (the pipeline keeps working while
#: the upload awaits the database or a store).
READ_AHEAD_CHUNKS = 4
#: Chunks looked up in the metadata DB at once for dedup.
LOOKUP_BATCH = 8


@dataclass(slots=True)
class StagedContent:
    """Content whose chunks are all durably stored, not yet referenced by any table."""

    size: int = 0
    sha256: str = ""
    #: Ordered manifest: (hash, offset, length).
    chunks: list[tuple[str, int, int]] = field(default_factory=list)
    sizes: dict[str, int] = field(default_factory=dict)
    #: Replicas of chunks this upload wrote: hash -> node ids.
    written: dict[str, list[str]] = field(default_factory=dict)
    #: Pin session protecting every chunk above from GC until the commit (docs/gc.md).
    pin_session: str | None = None

    @property
    def new_chunks(self) -> int:
        return len(self.written)

    def require_sha256(self, expected: str | None, what: str = "the uploaded bytes") -> None:
        """ChecksumMismatch unless ``expected`` (a client's declaration, lowercase hex; None:
        nothing declared) is this content's SHA-256."""
        if expected is not None and expected != self.sha256:
            raise ChecksumMismatch(f"{what} hash to {self.sha256}, not the declared {expected}")

    @property
    def dedup_chunks(self) -> int:
        return len(self.chunks) - len(self.written)


@dataclass(frozen=True, slots=True)
class FileView:
    id: uuid.UUID
    name: str
    folder_id: uuid.UUID | None
    size: int
    mime_type: str
    checksum: str
    version: int
    chunk_count: int
    new_chunks: int
    dedup_chunks: int
    created_at: datetime
    updated_at: datetime
    #: User metadata (string keys and values), see ``PUT /files/{id}/metadata``.
    metadata: dict[str, str] = field(default_factory=dict)


class _Guard:
    """Counts body bytes; refuses the upload the moment it crosses the size cap or the quota."""

    def __init__(self, max_size: int, quota_left: int) -> None:
        self.max_size = max_size
        self.quota_left = quota_left
        self.seen = 0

    async def wrap(self, source: AsyncIterable[bytes]) -> AsyncIterator[bytes]:
        async for piece in source:
            if not piece:
                continue
            self.seen += len(piece)
            if self.seen > self.max_size:
                raise FileTooLarge(f"file exceeds the maximum upload size of {self.max_size} bytes")
            if self.seen > self.quota_left:
                raise QuotaExceeded()
            yield piece


class UploadService:
    def __init__(
        self,
        db: Database,
        store: ReplicatedStore,
        params: ChunkParams,
        *,
        max_size: int,
        write_concurrency: int = 8,
        executor: Executor | None = None,
        pin_ttl: float = 3600.0,
        retention: int = 50,
    ) -> None:
        self.db = db
        self.store = store
        self.params = params
        self.max_size = max_size
        self.write_concurrency = write_concurrency
        self.executor = executor
        #: Seconds an upload's pins live without renewal (``gc.pin_ttl``).
        self.pin_ttl = pin_ttl
        #: Versions kept per file; a commit releases older ones in its transaction.
        self.retention = retention

    async def check_target(self, user_id: uuid.UUID, folder_id: str | uuid.UUID | None) -> None:
        """Fail fast (before reading the body) on a folder that is not the user's."""
        async with self.db.read() as s:
            await self._folder(EntryRepository(s), user_id, folder_id)

    async def quota_left(self, user_id: uuid.UUID) -> int:
        async with self.db.read() as s:
            user = await UserRepository(s).get(user_id)
        if user is None:
            return 0
        return max(0, user.quota_bytes - user.used_bytes)

    async def stage(
        self,
        user_id: uuid.UUID,
        source: AsyncIterable[bytes],
        *,
        max_size: int | None = None,
        quota_left: int | None = None,
    ) -> StagedContent:
        """Stage the body (see ``_stage``). Its chunks stay pinned against GC until the commit
        claims the pins (``claim_pins``); if staging fails, they are dropped at once."""
        staged = StagedContent()
        done = False
        try:
            await self._stage(staged, user_id, source, max_size=max_size, quota_left=quota_left)
            done = True
        finally:
            if not done:
                await self.release_pins(staged)
        return staged

    async def claim_pins(self, s: AsyncSession, staged: StagedContent) -> None:
        """First statement of a transaction that references the staged chunks: take the GC gate
        and drop the pins. Fails (retryable) if GC reaped them as expired, since a chunk this
        upload relied on may then have been collected."""
        pinned = staged.pin_session
        if pinned is not None and not await PinRepository(s).claim(pinned):
            raise StorageError(
                "the upload outlived its chunk pins (gc.pin_ttl); its chunks may have been "
                "garbage-collected: retry the upload"
            )

    async def release_pins(self, staged: StagedContent) -> None:
        """Drop the pins of content that will not be committed. Best effort: pins that cannot be
        dropped now expire after ``gc.pin_ttl``."""
        if staged.pin_session is None:
            return
        try:
            async with self.db.write() as s:
                await PinRepository(s).release(staged.pin_session)
        except (SQLAlchemyError, OSError) as exc:
            log.warning("could not release upload pins %s: %s", staged.pin_session, exc)
        staged.pin_session = None

    async def _stage(
        self,
        staged: StagedContent,
        user_id: uuid.UUID,
        source: AsyncIterable[bytes],
        *,
        max_size: int | None = None,
        quota_left: int | None = None,
    ) -> StagedContent:
        """Chunk, dedup and durably store the body; return what the commit needs. ``max_size``
        and ``quota_left`` override the byte limits (a multipart part shares them with the
        session's other parts)."""
        if quota_left is None:
            quota_left = await self.quota_left(user_id)
        guard = _Guard(self.max_size if max_size is None else max_size, quota_left)
        pipeline = ChunkPipeline(self.params, executor=self.executor)
        slots = asyncio.Semaphore(self.write_concurrency)
        writing: dict[str, asyncio.Task[list[str]]] = {}
        pending: list[Chunk] = []

        async def write(c: Chunk) -> list[str]:
            try:
                # The pipeline hashed these exact bytes a moment ago: no second hash.
                return await self.store.put(c.sha256, c.data, trusted=True)
            finally:
                slots.release()

        async def flush() -> None:
            hashes = [c.sha256 for c in pending if c.sha256 not in staged.sizes]
            known: dict[str, list[str]] = {}
            if hashes:
                # Pin before relying on a chunk (dedup) or writing it: GC deletes neither the
                # record nor the bytes of a pinned chunk (docs/gc.md, "Race-freedom").
                staged.pin_session = staged.pin_session or uuid.uuid4().hex
                expires = utcnow() + timedelta(seconds=self.pin_ttl)
                async with self.db.write() as s:
                    known = await PinRepository(s).pin(staged.pin_session, hashes, expires)
            for c in pending:
                if c.sha256 in staged.sizes:
                    continue
                staged.sizes[c.sha256] = c.length
                if c.sha256 in known:
                    continue
                await slots.acquire()
                writing[c.sha256] = asyncio.create_task(write(c))
            pending.clear()

        try:
            chunks = pipeline.chunks(prefetch(guard.wrap(source), PREFETCH_BYTES))
            async for c in read_ahead(chunks, READ_AHEAD_CHUNKS):
                staged.chunks.append((c.sha256, c.offset, c.length))
                pending.append(c)
                if len(pending) >= LOOKUP_BATCH:
                    await flush()
            await flush()
            for h, task in writing.items():
                staged.written[h] = await task
        finally:
            for task in writing.values():
                if not task.done():
                    task.cancel()
            if writing:
                await asyncio.gather(*writing.values(), return_exceptions=True)
        await self._sync(staged)
        staged.size = pipeline.size
        staged.sha256 = pipeline.sha256
        return staged

    async def _sync(self, staged: StagedContent) -> None:
        """Make the written chunks durable. A node whose sync failed no longer counts as holding
        what this upload wrote there; a chunk left with fewer than W durable copies fails the
        upload (nothing is committed)."""
        failed = await self.store.sync()
        if not failed:
            return
        quorum = self.store.write_quorum
        for h, nodes in staged.written.items():
            durable = [n for n in nodes if n not in failed]
            if len(durable) < quorum:
                raise QuorumNotReached(
                    f"chunk {h}: only {len(durable)} durable copies after sync "
                    f"(write quorum {quorum}); failed: {failed}",
                    chunk_hash=h,
                )
            staged.written[h] = durable

    async def commit(
        self,
        user_id: uuid.UUID,
        staged: StagedContent,
        *,
        name: str,
        folder_id: str | uuid.UUID | None,
        mime_type: str | None,
        finalize: Callable[[AsyncSession], Awaitable[None]] | None = None,
        expected_sha256: str | None = None,
    ) -> FileView:
        """Make the staged content visible as a new file or a new version, atomically.
        ``finalize`` runs last inside the same transaction (multipart completion uses it to
        retire its session). ``expected_sha256`` (lowercase hex, what the client declared)
        must equal the staged content's SHA-256, or nothing is committed."""
        committed = False
        try:
            staged.require_sha256(expected_sha256)
            name = validate_name(name)
            mime = media_type(mime_type, name)
            for attempt in range(3):
                try:
                    view = await self._commit_once(user_id, staged, name, folder_id, mime, finalize)
                    committed = True
                    return view
                except IntegrityError:
                    if attempt == 2:
                        raise NameConflict() from None
            raise AssertionError("unreachable")  # pragma: no cover
        finally:
            if not committed:  # its bytes become orphans for GC
                await self.release_pins(staged)

    async def _commit_once(
        self,
        user_id: uuid.UUID,
        staged: StagedContent,
        name: str,
        folder_id: str | uuid.UUID | None,
        mime: str,
        finalize: Callable[[AsyncSession], Awaitable[None]] | None = None,
    ) -> FileView:
        async with self.db.write() as s:
            # First: every chunk this upload deduplicated against or wrote is still there, and
            # stays (add_refs below) once this commits. See docs/gc.md, "Race-freedom".
            await self.claim_pins(s, staged)
            entries = EntryRepository(s)
            users = UserRepository(s)
            user = await users.lock(user_id)
            if user is None:
                raise FolderNotFound()
            if user.used_bytes + staged.size > user.quota_bytes:
                raise QuotaExceeded()
            folder = await self._folder(entries, user_id, folder_id)
            entry = await entries.by_name(user_id, folder.id, name, for_update=True)
            if entry is not None and entry.kind != "file":
                raise NameConflict("a folder with this name already exists")
            now = utcnow()
            if entry is None:
                entry = await entries.add(
                    Entry(
                        owner_id=user_id,
                        parent_id=folder.id,
                        kind="file",
                        name=name,
                        size=staged.size,
                        mime_type=mime,
                        created_at=now,
                        updated_at=now,
                    )
                )
            manifest = await ManifestRepository(s).create(staged.size, staged.sha256, staged.chunks)
            chunks = ChunkRepository(s)
            await chunks.add_refs(Counter(h for h, _, _ in staged.chunks), staged.sizes)
            await chunks.add_replicas(staged.written)
            versions = VersionRepository(s)
            version = await versions.add(
                Version(
                    entry_id=entry.id,
                    number=await versions.next_number(entry.id),
                    manifest_id=manifest.id,
                    size=staged.size,
                    sha256=staged.sha256,
                    mime_type=mime,
                    chunk_count=len(staged.chunks),
                    new_chunks=staged.new_chunks,
                    created_at=now,
                )
            )
            await entries.set_current(entry, version, updated_at=now)
            await users.add_used_bytes(user_id, staged.size)
            await apply_retention(s, user_id, entry.id, self.retention)
            if finalize is not None:
                await finalize(s)
            return FileView(
                id=entry.id,
                name=entry.name,
                folder_id=entry.parent_id,
                size=version.size,
                mime_type=mime,
                checksum=version.sha256,
                version=version.number,
                chunk_count=version.chunk_count,
                new_chunks=staged.new_chunks,
                dedup_chunks=staged.dedup_chunks,
                created_at=entry.created_at,
                updated_at=now,
                metadata=dict(entry.user_metadata or {}),
            )

    @staticmethod
    async def _folder(
        entries: EntryRepository, user_id: uuid.UUID, folder_id: str | uuid.UUID | None
    ) -> Entry:
        if folder_id is None or folder_id == "":
            root = await entries.root(user_id)
        else:
            root = await entries.get(user_id, parse_id(folder_id, FolderNotFound), "folder")
        if root is None:
            raise FolderNotFound()
        return root
