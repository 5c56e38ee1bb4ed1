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

    def _conditions(
        self, f: SearchFilter, fts: bool, *, plan: str = "auto"
    ) -> list[ColumnElement[bool]]:
        """The WHERE clause of a search. ``plan`` steers SQLite's choice of index:

        - ``auto``: with an FTS match, the few matching rows drive the query (SQLite is kept
          from starting at the owner's index: every entry of the user, fetched one by one);
        - ``owner``: the user's entries in creation order, through ``(owner_id, kind,
          created_at)``: only this user's rows, read nearly in storage order (they were
          inserted in that order), so a probe stops as soon as it has enough matches;
        - ``walk``: every owner index stays usable (the name index, for a page in order).

        PostgreSQL plans with statistics; the steering applies to SQLite only.
        """
        sqlite = self.dialect == "sqlite"
        unindexed = plan == "owner" or (plan == "auto" and self._fts_driven(f, fts))
        wrap = _unindexed if sqlite and unindexed else _same
        owner = Entry.owner_id if plan == "owner" else wrap(Entry.owner_id)
        parent = wrap(Entry.parent_id)
        conds: list[ColumnElement[bool]] = [
            owner == f.owner_id,
            wrap(Entry.deleted_at).is_(None),
            parent.is_not(None),
        ]
        if sqlite and plan == "owner" and not f.kind:
            # every entry has one of these kinds: the condition only makes SQLite take the
            # (owner_id, kind, created_at) index
            conds.append(Entry.kind.in_(("file", "folder")))
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
        self, f: SearchFilter, *, offset: int, limit: int, fts: bool, count_cap: int
    ) -> tuple[list[tuple[Entry, Version | None]], int, bool]:
        """A page of matches in name order; how many match (counted up to ``count_cap``); and
        whether that count is exact (False: more than ``count_cap`` match).

        1. Probe: ``(name, id)`` of at most ``count_cap + 1`` matches, in whatever order the
           cheapest plan yields them (on SQLite a plain table scan, or the FTS index).
        2. At most ``count_cap`` matches: that is all of them; the page is sorted here. More:
           matches are dense, so walking the ``(owner_id, name, id)`` index in order finds a
           page after a few rows; the database does that.
        3. The page's rows with their current versions, by id.

        So no statement sorts or counts more than ``count_cap + 1`` matches, however broad the
        query."""
        if (
            self._fts_driven(f, fts)
            and f.q
            and f.q.isascii()
            and await self._fts_broad(f.q, count_cap)
        ):
            # the FTS index would hand over every match of every user first; LIKE along the
            # user's entries finds enough of a common term after a few rows
            probe_conds = self._conditions(f, fts=False, plan="owner")
        elif self._fts_driven(f, fts):
            probe_conds = self._conditions(f, fts)
        else:
            probe_conds = self._conditions(f, fts, plan="owner")
        probe = select(Entry.name, Entry.id).where(*probe_conds)
        if self.dialect == "postgresql":
            # Plan every search for its own values: after five runs PostgreSQL may switch a
            # prepared statement to a generic plan, which cannot tell a selective pattern from a
            # broad one and scans the table. The matches are planned without the LIMIT (a CTE),
            # so a LIMIT cannot talk the planner into a scan either; rows stream from it, so the
            # LIMIT still stops the work early.
            await self.s.execute(text("SET LOCAL plan_cache_mode = force_custom_plan"))
            matches = probe.cte("matches").prefix_with("MATERIALIZED")
            probe = select(matches.c.name, matches.c.id)
        probe = probe.limit(count_cap + 1)
        found = list((await self.s.execute(probe)).all())
        if len(found) <= count_cap:
            # code-point order of names, then id: what name_order() gives on both engines
            found.sort(key=lambda row: (row[0], row[1]))
            ids = [row[1] for row in found[offset : offset + limit]]
            total, exact = len(found), True
        else:
            ids = await self._page_in_name_order(f, fts, offset, limit)
            total, exact = count_cap, False
        rows: list[tuple[Entry, Version | None]] = []
        if ids:
            stmt = (
                select(Entry, Version)
                .outerjoin(Version, Version.id == Entry.current_version_id)
                .where(Entry.id.in_(ids))
            )
            by_id = {e.id: (e, v) for e, v in (await self.s.execute(stmt)).all()}
            rows = [by_id[i] for i in ids if i in by_id]
        return rows, total, exact

    async def _fts_broad(self, q: str, count_cap: int) -> bool:
        """Whether the FTS index holds more than ``4 * count_cap`` matches of ``q`` (all users;
        counted up to that bound, which costs well under a millisecond)."""
        hits = (
            select(search_fts.c.rowid)
            .where(literal_column("entry_search").op("MATCH")(fts_phrase(q)))
            .limit(4 * count_cap + 1)
        )
        count = select(func.count()).select_from(hits.subquery())
        return int((await self.s.execute(count)).scalar_one()) > 4 * count_cap

    async def _page_in_name_order(
        self, f: SearchFilter, fts: bool, offset: int, limit: int
    ) -> list[uuid.UUID]:
        """Ids of one page of a broad query, walking the name index."""
        if self.dialect == "sqlite" and f.q and f.q.isascii():
            # LIKE matches what the trigram index matches for an ASCII query (case folded for
            # ASCII letters), and is checked row by row along the name index
            conds = self._conditions(f, fts=False, plan="walk")
        else:
            conds = self._conditions(f, fts, plan="walk")
        stmt = (
            select(Entry.id)
            .where(*conds)
            .order_by(name_order(self.s), Entry.id)
            .offset(offset)
            .limit(limit)
        )
        if self.dialect != "postgresql":
            return list((await self.s.execute(stmt)).scalars())
        # We know there are more than count_cap matches, PostgreSQL does not (a two-letter
        # pattern is estimated at a handful of rows): without a sort it must walk the name index
        await self.s.execute(text("SET LOCAL enable_sort = off"))
        try:
            return list((await self.s.execute(stmt)).scalars())
        finally:
            await self.s.execute(text("SET LOCAL enable_sort TO DEFAULT"))

    async def set_metadata(self, entry: Entry, metadata: dict[str, str], flat: str | None) -> None:
        entry.user_metadata = metadata or None
        entry.search_meta = flat
        entry.updated_at = utcnow()
        await self.s.flush()
