"""The folder tree: create folders, list them, rename and move files and folders, delete whole
subtrees.

Every change to the tree locks the owner's user row first (as an upload's commit does), so the
tree changes of one user are serialised: two moves cannot build a cycle between them, and an
upload cannot land in a folder that a concurrent delete is removing.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from dfms.errors import FileNotFound, FolderNotFound, NameConflict, NotFound, ValidationFailed
from dfms.metadata.db import Database
from dfms.metadata.models import Entry, Version, utcnow
from dfms.metadata.repositories import EntryRepository, UserRepository, VersionRepository
from dfms.metadata.tree_repository import TreeRepository
from dfms.services.files import _view as file_view
from dfms.services.names import parse_id, validate_name
from dfms.services.paging import page_count
from dfms.services.releases import release_files
from dfms.services.uploads import FileView


@dataclass(frozen=True, slots=True)
class FolderView:
    id: uuid.UUID
    name: str
    #: None for the root folder.
    parent_id: uuid.UUID | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class EntryView:
    """A file or folder as folder listings and search show it."""

    id: uuid.UUID
    type: str  # "file" | "folder"
    name: str
    parent_id: uuid.UUID | None
    size: int
    mime_type: str | None
    checksum: str | None
    version: int | None
    created_at: datetime
    updated_at: datetime
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class FolderPage:
    folder: FolderView
    entries: list[EntryView]
    total: int
    page: int
    page_size: int

    @property
    def total_pages(self) -> int:
        return page_count(self.total, self.page_size)


def folder_view(e: Entry) -> FolderView:
    return FolderView(e.id, e.name, e.parent_id, e.created_at, e.updated_at)


def entry_view(e: Entry, v: Version | None) -> EntryView:
    is_file = e.kind == "file"
    return EntryView(
        id=e.id,
        type=e.kind,
        name=e.name,
        parent_id=e.parent_id,
        size=(v.size if v else e.size) if is_file else 0,
        mime_type=(v.mime_type if v else e.mime_type) if is_file else None,
        checksum=v.sha256 if v else None,
        version=v.number if v else None,
        created_at=e.created_at,
        updated_at=e.updated_at,
        metadata=dict(e.user_metadata or {}),
    )


async def _locked_owner(s: AsyncSession, user_id: uuid.UUID, error: type[NotFound]) -> None:
    if await UserRepository(s).lock(user_id) is None:
        raise error()


async def resolve_folder(
    s: AsyncSession, user_id: uuid.UUID, folder_id: str | uuid.UUID | None
) -> Entry:
    """The user's live folder ``folder_id`` (None: the root); FolderNotFound otherwise."""
    entries = EntryRepository(s)
    if folder_id is None:
        folder = await entries.root(user_id)
    else:
        folder = await entries.get(user_id, parse_id(folder_id, FolderNotFound), "folder")
    if folder is None:
        raise FolderNotFound()
    return folder


async def _check_free(
    s: AsyncSession, user_id: uuid.UUID, parent_id: uuid.UUID, name: str, me: uuid.UUID | None
) -> None:
    """NameConflict if a live entry other than ``me`` has ``name`` in the folder."""
    taken = await EntryRepository(s).by_name(user_id, parent_id, name)
    if taken is not None and taken.id != me:
        raise NameConflict()


class FolderService:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def create(
        self, user_id: uuid.UUID, name: str, parent_id: str | uuid.UUID | None
    ) -> FolderView:
        name = validate_name(name, what="folder name")
        try:
            async with self.db.write() as s:
                await _locked_owner(s, user_id, FolderNotFound)
                parent = await resolve_folder(s, user_id, parent_id)
                await _check_free(s, user_id, parent.id, name, None)
                now = utcnow()
                folder = await EntryRepository(s).add(
                    Entry(
                        owner_id=user_id,
                        parent_id=parent.id,
                        kind="folder",
                        name=name,
                        size=0,
                        created_at=now,
                        updated_at=now,
                    )
                )
                return folder_view(folder)
        except IntegrityError:
            raise NameConflict() from None

    async def contents(
        self, user_id: uuid.UUID, folder_id: str | uuid.UUID | None, page: int, page_size: int
    ) -> FolderPage:
        """A page of a folder's entries (None: the root), folders first, then by name."""
        async with self.db.read() as s:
            folder = await resolve_folder(s, user_id, folder_id)
            rows, total = await TreeRepository(s).children(
                user_id, folder.id, offset=(page - 1) * page_size, limit=page_size
            )
            return FolderPage(
                folder_view(folder),
                [entry_view(e, v) for e, v in rows],
                total,
                page,
                page_size,
            )

    # ---- rename and move ----

    async def rename_file(
        self, user_id: uuid.UUID, file_id: str | uuid.UUID, name: str
    ) -> FileView:
        entry, version = await self._update(user_id, file_id, "file", name=validate_name(name))
        return file_view(entry, version)

    async def rename_folder(
        self, user_id: uuid.UUID, folder_id: str | uuid.UUID, name: str
    ) -> FolderView:
        name = validate_name(name, what="folder name")
        entry, _ = await self._update(user_id, folder_id, "folder", name=name)
        return folder_view(entry)

    async def move_file(
        self, user_id: uuid.UUID, file_id: str | uuid.UUID, new_parent_id: str | uuid.UUID | None
    ) -> FileView:
        entry, version = await self._update(
            user_id, file_id, "file", move=True, new_parent_id=new_parent_id
        )
        return file_view(entry, version)

    async def move_folder(
        self, user_id: uuid.UUID, folder_id: str | uuid.UUID, new_parent_id: str | uuid.UUID | None
    ) -> FolderView:
        entry, _ = await self._update(
            user_id, folder_id, "folder", move=True, new_parent_id=new_parent_id
        )
        return folder_view(entry)

    async def _update(
        self,
        user_id: uuid.UUID,
        entry_id: str | uuid.UUID,
        kind: str,
        *,
        name: str | None = None,
        move: bool = False,
        new_parent_id: str | uuid.UUID | None = None,
    ) -> tuple[Entry, Version | None]:
        """Rename and/or move one entry. Order of refusals: the entry is not the user's (404),
        the target folder is not the user's (404), a folder into its own subtree (400), the
        name is taken in the target folder (409)."""
        missing: type[NotFound] = FileNotFound if kind == "file" else FolderNotFound
        try:
            async with self.db.write() as s:
                await _locked_owner(s, user_id, missing)
                entry = await EntryRepository(s).get(user_id, parse_id(entry_id, missing), kind)
                if entry is None:
                    raise missing()
                if entry.parent_id is None:
                    raise ValidationFailed("the root folder cannot be renamed or moved")
                tree = TreeRepository(s)
                parent_id = entry.parent_id
                if move:
                    target = await resolve_folder(s, user_id, new_parent_id)
                    if kind == "folder" and entry.id in await tree.ancestors(target.id):
                        raise ValidationFailed(
                            "a folder cannot be moved into itself or its own subtree"
                        )
                    parent_id = target.id
                new_name = entry.name if name is None else name
                if (parent_id, new_name) != (entry.parent_id, entry.name):
                    await _check_free(s, user_id, parent_id, new_name, entry.id)
                    if parent_id != entry.parent_id:
                        await tree.move(entry, parent_id)
                    if new_name != entry.name:
                        await tree.rename(entry, new_name)
                version = (
                    await VersionRepository(s).get(entry.current_version_id)
                    if entry.current_version_id
                    else None
                )
                return entry, version
        except IntegrityError:
            raise NameConflict() from None

    # ---- delete ----

    async def delete(self, user_id: uuid.UUID, folder_id: str | uuid.UUID, *, confirm: bool) -> int:
        """Delete a folder and everything under it in one transaction: every file's versions
        are released (manifests, chunk references, usage). Returns the number of entries
        deleted. Refused without ``confirm`` and for the root folder (400)."""
        async with self.db.write() as s:
            await _locked_owner(s, user_id, FolderNotFound)
            folder = await EntryRepository(s).get(
                user_id, parse_id(folder_id, FolderNotFound), "folder"
            )
            if folder is None:
                raise FolderNotFound()
            if folder.parent_id is None:
                raise ValidationFailed("the root folder cannot be deleted")
            if not confirm:
                raise ValidationFailed(
                    "deleting a folder deletes everything in it: repeat with confirm=true"
                )
            tree = TreeRepository(s)
            file_ids = await tree.subtree_file_ids(user_id, folder.id)
            deleted = await tree.soft_delete_subtree(user_id, folder.id)
            await release_files(s, user_id, file_ids)
            return deleted
