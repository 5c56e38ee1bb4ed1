"""Version history of a file: list, delete one version, restore (rollback).

The current version of a file is always its highest-numbered one (uploads and restores both add
a version above every other). Version numbers are never reused: deleting the newest version
raises the file's ``version_floor``.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from dfms.errors import FileNotFound, QuotaExceeded, VersionNotFound
from dfms.metadata.db import Database
from dfms.metadata.models import Entry, Version, utcnow
from dfms.metadata.repositories import (
    EntryRepository,
    ManifestRepository,
    UserRepository,
    VersionRepository,
)
from dfms.metadata.tree_repository import VersionHistoryRepository
from dfms.services.files import _view as file_view
from dfms.services.names import parse_id
from dfms.services.releases import apply_retention, release_files, release_versions
from dfms.services.uploads import FileView


@dataclass(frozen=True, slots=True)
class VersionView:
    number: int
    size: int
    checksum: str
    mime_type: str
    chunk_count: int
    created_at: datetime
    current: bool


@dataclass(frozen=True, slots=True)
class VersionDeleted:
    """What deleting a version did: the file's new current version, or the file is gone."""

    file_deleted: bool
    current: int | None


async def _file(s: AsyncSession, user_id: uuid.UUID, file_id: str | uuid.UUID) -> Entry:
    entry = await EntryRepository(s).get(user_id, parse_id(file_id, FileNotFound), "file")
    if entry is None:
        raise FileNotFound()
    return entry


class VersionService:
    def __init__(self, db: Database, *, retention: int = 50) -> None:
        self.db = db
        self.retention = retention

    async def list(self, user_id: uuid.UUID, file_id: str | uuid.UUID) -> list[VersionView]:
        """Every stored version of the file, newest first."""
        async with self.db.read() as s:
            entry = await _file(s, user_id, file_id)
            rows = await VersionHistoryRepository(s).newest_first(entry.id)
        return [
            VersionView(
                number=v.number,
                size=v.size,
                checksum=v.sha256,
                mime_type=v.mime_type,
                chunk_count=v.chunk_count,
                created_at=v.created_at,
                current=v.id == entry.current_version_id,
            )
            for v in rows
        ]

    async def delete(
        self, user_id: uuid.UUID, file_id: str | uuid.UUID, number: int
    ) -> VersionDeleted:
        """Delete version ``number`` and release it. Deleting the current version makes the
        previous one current; deleting the only version deletes the file."""
        async with self.db.write() as s:
            if await UserRepository(s).lock(user_id) is None:
                raise FileNotFound()
            entry = await _file(s, user_id, file_id)
            history = VersionHistoryRepository(s)
            version = await history.by_number(entry.id, number)
            if version is None:
                raise VersionNotFound()
            if await history.count(entry.id) == 1:
                await EntryRepository(s).soft_delete(entry.id)
                await release_files(s, user_id, [entry.id])
                return VersionDeleted(file_deleted=True, current=None)
            was_current = version.id == entry.current_version_id
            await history.delete([version.id])
            await history.raise_floor(entry.id, version.number)
            await release_versions(s, user_id, [(version.manifest_id, version.size)])
            if was_current:
                previous = await history.latest(entry.id)
                assert previous is not None  # more than one version existed
                await EntryRepository(s).set_current(entry, previous)
            current_id = entry.current_version_id
            current = await VersionRepository(s).get(current_id) if current_id else None
            return VersionDeleted(file_deleted=False, current=current.number if current else None)

    async def restore(self, user_id: uuid.UUID, file_id: str | uuid.UUID, number: int) -> FileView:
        """Make a new current version with version ``number``'s content. It shares that
        version's manifest (one more manifest reference): no byte is copied, no chunk written
        and no chunk reference changes. The new version counts in the owner's usage (logical
        bytes) and is refused with QuotaExceeded when that would cross the quota."""
        async with self.db.write() as s:
            users = UserRepository(s)
            user = await users.lock(user_id)
            if user is None:
                raise FileNotFound()
            entry = await _file(s, user_id, file_id)
            source = await VersionHistoryRepository(s).by_number(entry.id, number)
            if source is None:
                raise VersionNotFound()
            if user.used_bytes + source.size > user.quota_bytes:
                raise QuotaExceeded()
            versions = VersionRepository(s)
            now = utcnow()
            version = await versions.add(
                Version(
                    entry_id=entry.id,
                    number=await versions.next_number(entry.id),
                    manifest_id=source.manifest_id,
                    size=source.size,
                    sha256=source.sha256,
                    mime_type=source.mime_type,
                    chunk_count=source.chunk_count,
                    new_chunks=0,
                    created_at=now,
                )
            )
            await ManifestRepository(s).add_ref(source.manifest_id)
            await EntryRepository(s).set_current(entry, version, updated_at=now)
            await users.add_used_bytes(user_id, source.size)
            await apply_retention(s, user_id, entry.id, self.retention)
            return file_view(entry, version)
