"""SQL of search and user metadata.

Substring search of names and metadata is index-backed on both engines:

- PostgreSQL: ``lower(name) LIKE lower(:pattern)`` (and the same on ``search_meta``) served by
  the ``pg_trgm`` GIN indexes ``ix_entries_name_trgm`` / ``ix_entries_meta_trgm``.
- SQLite: the FTS5 table ``entry_search`` (trigram tokenizer, case-insensitive) queried with a
  phrase, which matches exactly the rows containing the query as a substring. Trigrams need at
  least three characters: shorter queries, and SQLite builds without FTS5 trigram support, use
  ``LIKE`` over the user's entries (case-insensitive for ASCII letters only, as SQLite's LIKE).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Column,
    ColumnElement,
    Integer,
    MetaData,
    Table,
    Text,
    UnaryExpression,
    Uuid,
    bindparam,
    func,
    literal_column,
    or_,
    select,
    text,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql import operators

from dfms.metadata.models import Entry, Version, utcnow
from dfms.metadata.tree_repository import name_order, subtree_cte

# SQLite-only search tables (created by migration 0003 when FTS5 trigram is available).
_aux = MetaData()
search_ids = Table(
    "entry_search_ids",
    _aux,
    Column("id", Integer, primary_key=True),
    Column("entry_id", Uuid),
)
search_fts = Table("entry_search", _aux, Column("rowid", Integer), Column("name", Text))

#: Shortest query the trigram index can answer.
MIN_TRIGRAM = 3


def escape_like(q: str) -> str:
    """``q`` with LIKE's wildcards escaped (``\\`` is the escape character)."""
    return q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def like_pattern(q: str) -> str:
    """A LIKE pattern matching ``q`` literally anywhere in the value."""
    return f"%{escape_like(q)}%"


def _unindexed(column: Any) -> Any:
    """``+column``: the same value, but SQLite will not drive the query from an index on it."""
    return UnaryExpression(column, operator=operators.custom_op("+"), type_=column.type)


def _same(column: Any) -> Any:
    return column


def fts_phrase(q: str) -> str:
    """An FTS5 phrase matching ``q`` literally (double quotes doubled)."""
    return '"' + q.replace('"', '""') + '"'


@dataclass(frozen=True, slots=True)
class SearchFilter:
    owner_id: uuid.UUID
    q: str | None = None
    kind: str | None = None
    mime_exact: str | None = None
    mime_prefix: str | None = None
    min_size: int | None = None
    max_size: int | None = None
    after: datetime | None = None
    before: datetime | None = None
    folder_id: uuid.UUID | None = None


class SearchRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.s = session
        self.dialect = session.get_bind().dialect.name

    async def has_fts(self) -> bool:
        """Whether the SQLite FTS5 search table exists (always False on PostgreSQL)."""
        if self.dialect != "sqlite":
            return False
        stmt = text("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = :n")
        return bool((await self.s.execute(stmt, {"n": "entry_search"})).scalar_one())

    def _fts_driven(self, f: SearchFilter, fts: bool) -> bool:
        return self.dialect == "sqlite" and fts and len(f.q or "") >= MIN_TRIGRAM

    def _text_match(self, q: str, fts: bool) -> ColumnElement[bool]:
        pattern = like_pattern(q)
        if self.dialect == "postgresql":
            # Inlined (safely quoted) so PostgreSQL plans each pattern itself: a generic plan
            # cannot tell a selective pattern from a broad one and falls back to a scan.
            lowered = func.lower(bindparam("pattern", pattern, type_=Text, literal_execute=True))
            return or_(
                func.lower(Entry.name).like(lowered, escape="\\"),
                func.lower(Entry.search_meta).like(lowered, escape="\\"),
            )
        if fts and len(q) >= MIN_TRIGRAM:
            hits = select(search_fts.c.rowid).where(
                literal_column("entry_search").op("MATCH")(fts_phrase(q))
            )
            return Entry.id.in_(select(search_ids.c.entry_id).where(search_ids.c.id.in_(hits)))
        return or_(
            Entry.name.like(pattern, escape="\\"),
            Entry.search_meta.like(pattern, escape="\\"),
        )

    def _conditions(self, f: SearchFilter, fts: bool) -> list[ColumnElement[bool]]:
        # With an FTS match, the few matching rows should drive the query: keep SQLite from
        # starting at the owner's index instead (every entry of the user, fetched one by one).
        wrap = _unindexed if self._fts_driven(f, fts) else _same
        owner, parent = wrap(Entry.owner_id), wrap(Entry.parent_id)
        conds: list[ColumnElement[bool]] = [
            owner == f.owner_id,
            wrap(Entry.deleted_at).is_(None),
            parent.is_not(None),
        ]
        if f.q:
            conds.append(self._text_match(f.q, fts))
        if f.kind:
            conds.append(Entry.kind == f.kind)
        if f.mime_exact:
            conds.append(func.lower(Entry.mime_type) == f.mime_exact)
        if f.mime_prefix:
            prefix = escape_like(f.mime_prefix) + "%"
            conds.append(func.lower(Entry.mime_type).like(prefix, escape="\\"))
        if f.min_size is not None or f.max_size is not None:
            conds.append(Entry.kind == "file")  # sizes are a property of files
            if f.min_size is not None:
                conds.append(Entry.size >= f.min_size)
            if f.max_size is not None:
                conds.append(Entry.size <= f.max_size)
        if f.after is not None:
            conds.append(Entry.updated_at >= f.after)
        if f.before is not None:
            conds.append(Entry.updated_at < f.before)
        if f.folder_id is not None:
            tree = subtree_cte(f.owner_id, f.folder_id, folders_only=True)
            conds.append(parent.in_(select(tree.c.id)))
        return conds

    async def search(
        self, f: SearchFilter, *, offset: int, limit: int, fts: bool
    ) -> tuple[list[tuple[Entry, Version | None]], int]:
        """A page of matches by name, and how many there are in all (one pass: the total comes
        with the page as a window count)."""
        conds = self._conditions(f, fts)
        stmt = (
            select(Entry, Version, func.count().over())
            .outerjoin(Version, Version.id == Entry.current_version_id)
            .where(*conds)
            .order_by(name_order(self.s), Entry.id)
            .offset(offset)
            .limit(limit)
        )
        rows: list[Any] = list((await self.s.execute(stmt)).all())
        if rows:
            total = int(rows[0][2])
        elif offset == 0:
            total = 0
        else:  # past the last page: count separately
            count = select(func.count()).select_from(Entry).where(*conds)
            total = int((await self.s.execute(count)).scalar_one())
        return [(e, v) for e, v, _ in rows], total

    async def set_metadata(self, entry: Entry, metadata: dict[str, str], flat: str | None) -> None:
        entry.user_metadata = metadata or None
        entry.search_meta = flat
        entry.updated_at = utcnow()
        await self.s.flush()
