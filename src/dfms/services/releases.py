"""Releasing stored versions inside the caller's transaction: the one path by which versions
stop counting, used by folder deletes, version deletes and retention.

A released version drops its manifest reference; a manifest left with none is deleted and drops
one chunk reference per occurrence (``ManifestRepository.release`` + ``ChunkRepository.release``,
as a file delete does). The version's logical size leaves the owner's ``used_bytes``. Chunks whose
count reaches zero stay for GC and its grace period.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncSession

from dfms.metadata.repositories import ChunkRepository, ManifestRepository, UserRepository
from dfms.metadata.tree_repository import VersionHistoryRepository


async def release_versions(
    s: AsyncSession, user_id: uuid.UUID, released: Sequence[tuple[uuid.UUID, int]]
) -> None:
    """Release already-deleted versions given as (manifest id, size)."""
    manifests = ManifestRepository(s)
    occurrences: Counter[str] = Counter()
    for manifest_id, _size in released:
        freed = await manifests.release(manifest_id)
        if freed:
            occurrences.update(freed)
    if occurrences:
        await ChunkRepository(s).release(occurrences)
    total = sum(size for _, size in released)
    if total:
        await UserRepository(s).add_used_bytes(user_id, -total)


async def release_files(
    s: AsyncSession, user_id: uuid.UUID, entry_ids: Sequence[uuid.UUID]
) -> None:
    """Delete and release every version of the given (already hidden) file entries."""
    if entry_ids:
        released = await VersionHistoryRepository(s).of_entries(entry_ids)
        await release_versions(s, user_id, released)


async def apply_retention(
    s: AsyncSession, user_id: uuid.UUID, entry_id: uuid.UUID, keep: int
) -> int:
    """Release the versions of a file beyond its ``keep`` newest; returns how many."""
    history = VersionHistoryRepository(s)
    old = await history.oldest_beyond(entry_id, keep)
    if not old:
        return 0
    await history.delete([v.id for v in old])
    await release_versions(s, user_id, [(v.manifest_id, v.size) for v in old])
    return len(old)
