"""SQL of the folder tree: listings, subtrees (recursive CTEs), ancestors, renames, moves and
subtree deletes, and of version history (numbers, retention). Each repository takes the caller's
session so that a service composes them inside one transaction.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import (
    CTE,
    ColumnElement,
    and_,
    case,
    delete,
    func,
    literal_column,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession

from dfms.metadata.models import Entry, Version, utcnow
from dfms.metadata.repositories import BATCH


def name_order(session: AsyncSession) -> ColumnElement[Any]:
    """Order by name in code-point order on every engine (PostgreSQL's default collation sorts
    by locale rules, SQLite by bytes)."""
    if session.get_bind().dialect.name == "postgresql":
        return Entry.name.collate("C")
    return Entry.name  # type: ignore[return-value]


def subtree_cte(owner_id: uuid.UUID, folder_id: uuid.UUID, *, folders_only: bool) -> CTE:
    """A recursive CTE (column ``id``) of the live entries under ``folder_id``, the folder
    itself included; with ``folders_only`` just the folders."""
    anchor = select(Entry.id).where(
        Entry.id == folder_id,
        Entry.owner_id == owner_id,
        Entry.kind == "folder",
        Entry.deleted_at.is_(None),
    )
    tree = anchor.cte("subtree", recursive=True)
    child_conds = [Entry.parent_id == tree.c.id, Entry.deleted_at.is_(None)]
    if folders_only:
        # A literal, so that the planners can use the partial index ix_entries_live_folders.
        child_conds.append(Entry.kind == literal_column("'folder'"))
    return tree.union_all(select(Entry.id).where(*child_conds))


class TreeRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.s = session

    async def entry(self, owner_id: uuid.UUID, entry_id: uuid.UUID) -> Entry | None:
        """A live entry (file or folder) of ``owner_id``."""
        stmt = select(Entry).where(
            Entry.id == entry_id, Entry.owner_id == owner_id, Entry.deleted_at.is_(None)
        )
        return (await self.s.execute(stmt)).scalar_one_or_none()

    async def children(
        self, owner_id: uuid.UUID, folder_id: uuid.UUID, *, offset: int, limit: int
    ) -> tuple[list[tuple[Entry, Version | None]], int]:
        """A page of a folder's live entries, folders first, then by name; and their total."""
        where = and_(
            Entry.owner_id == owner_id,
            Entry.parent_id == folder_id,
            Entry.deleted_at.is_(None),
        )
        total = (
            await self.s.execute(select(func.count()).select_from(Entry).where(where))
        ).scalar_one()
        stmt = (
            select(Entry, Version)
            .outerjoin(Version, Version.id == Entry.current_version_id)
            .where(where)
            .order_by(case((Entry.kind == "folder", 0), else_=1), name_order(self.s), Entry.id)
            .offset(offset)
            .limit(limit)
        )
        rows: list[tuple[Entry, Version | None]] = [
            (e, v) for e, v in (await self.s.execute(stmt)).all()
        ]
        return rows, int(total)

    async def ancestors(self, entry_id: uuid.UUID) -> list[uuid.UUID]:
        """``entry_id`` and every folder above it up to the root."""
        up = select(Entry.id, Entry.parent_id).where(Entry.id == entry_id).cte("up", recursive=True)
        up = up.union_all(select(Entry.id, Entry.parent_id).where(Entry.id == up.c.parent_id))
        return list((await self.s.execute(select(up.c.id))).scalars())

    async def rename(self, entry: Entry, name: str) -> None:
        entry.name = name
        entry.updated_at = utcnow()
        await self.s.flush()

    async def move(self, entry: Entry, parent_id: uuid.UUID) -> None:
        entry.parent_id = parent_id
        entry.updated_at = utcnow()
        await self.s.flush()

    async def subtree_file_ids(self, owner_id: uuid.UUID, folder_id: uuid.UUID) -> list[uuid.UUID]:
        tree = subtree_cte(owner_id, folder_id, folders_only=True)
        stmt = select(Entry.id).where(
            Entry.parent_id.in_(select(tree.c.id)),
            Entry.kind == "file",
            Entry.deleted_at.is_(None),
        )
        return list((await self.s.execute(stmt)).scalars())

    async def soft_delete_subtree(self, owner_id: uuid.UUID, folder_id: uuid.UUID) -> int:
        """Mark the folder and every live entry under it deleted, in one statement; returns how
        many entries that was."""
        tree = subtree_cte(owner_id, folder_id, folders_only=False)
        res = await self.s.execute(
            update(Entry)
            .where(Entry.id.in_(select(tree.c.id)))
            .values(deleted_at=utcnow(), current_version_id=None)
            .execution_options(synchronize_session=False)
        )
        return int(getattr(res, "rowcount", 0))


class VersionHistoryRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.s = session

    async def by_number(self, entry_id: uuid.UUID, number: int) -> Version | None:
        stmt = select(Version).where(Version.entry_id == entry_id, Version.number == number)
        return (await self.s.execute(stmt)).scalar_one_or_none()

    async def latest(self, entry_id: uuid.UUID) -> Version | None:
        stmt = (
            select(Version)
            .where(Version.entry_id == entry_id)
            .order_by(Version.number.desc())
            .limit(1)
        )
        return (await self.s.execute(stmt)).scalar_one_or_none()

    async def newest_first(self, entry_id: uuid.UUID) -> list[Version]:
        stmt = select(Version).where(Version.entry_id == entry_id).order_by(Version.number.desc())
        return list((await self.s.execute(stmt)).scalars())

    async def count(self, entry_id: uuid.UUID) -> int:
        stmt = select(func.count()).select_from(Version).where(Version.entry_id == entry_id)
        return int((await self.s.execute(stmt)).scalar_one())

    async def delete(self, version_ids: Sequence[uuid.UUID]) -> None:
        for i in range(0, len(version_ids), BATCH):
            batch = list(version_ids[i : i + BATCH])
            await self.s.execute(delete(Version).where(Version.id.in_(batch)))

    async def oldest_beyond(self, entry_id: uuid.UUID, keep: int) -> list[Version]:
        """The versions of an entry older than its ``keep`` newest."""
        stmt = (
            select(Version)
            .where(Version.entry_id == entry_id)
            .order_by(Version.number.desc())
            .offset(keep)
        )
        return list((await self.s.execute(stmt)).scalars())

    async def of_entries(self, entry_ids: Sequence[uuid.UUID]) -> list[tuple[uuid.UUID, int]]:
        """(manifest id, size) of every version of the given entries, and delete them."""
        out: list[tuple[uuid.UUID, int]] = []
        for i in range(0, len(entry_ids), BATCH):
            batch = list(entry_ids[i : i + BATCH])
            rows = (
                await self.s.execute(
                    select(Version.manifest_id, Version.size).where(Version.entry_id.in_(batch))
                )
            ).all()
            out += [(r[0], int(r[1])) for r in rows]
            await self.s.execute(delete(Version).where(Version.entry_id.in_(batch)))
        return out

    async def raise_floor(self, entry_id: uuid.UUID, number: int) -> None:
        """Never hand out ``number`` again for this entry."""
        await self.s.execute(
            update(Entry)
            .where(Entry.id == entry_id, Entry.version_floor < number)
            .values(version_floor=number)
            .execution_options(synchronize_session=False)
        )
