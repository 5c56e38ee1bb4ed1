"""Every SQL statement of garbage collection: the GC lease, upload pins, mark, sweep, the deletion
journal and the look-ups of the orphan sweep. Like :mod:`dfms.metadata.repositories`, each class
takes the caller's session so a service composes several calls in one transaction.

The *GC gate* (:func:`gate`) orders GC's destructive steps against the upload steps that rely on
chunks. On PostgreSQL it is a transaction-scoped advisory lock: uploads take it shared, GC takes it
exclusive. On SQLite every write transaction (``BEGIN IMMEDIATE``) already excludes every other
writer, so callers only need to be inside ``Database.write()``. See docs/gc.md, "Race-freedom".
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Select,
    and_,
    delete,
    exists,
    func,
    or_,
    select,
    union,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession

from dfms.metadata.models import (
    Chunk,
    ChunkPin,
    ChunkReplica,
    GCDeletion,
    GCLease,
    PinSession,
)
from dfms.metadata.repositories import ChunkRepository, _batches, _dialect, _insert

#: Key of the PostgreSQL advisory lock used as the GC gate ("dfmsgc" in ASCII).
GATE_KEY = 0x64666D73_6763


async def gate(session: AsyncSession, *, exclusive: bool) -> None:
    """Enter the GC gate for the rest of the session's transaction. Must be the transaction's
    first lock (so no one waits for the gate while holding row locks someone in it needs)."""
    if _dialect(session) != "postgresql":
        return  # SQLite: the write transaction's database lock already serialises everything
    fn = func.pg_advisory_xact_lock if exclusive else func.pg_advisory_xact_lock_shared
    await session.execute(select(fn(GATE_KEY)))


def _pinned(*, active_at: datetime | None) -> ColumnElement[bool]:
    """``EXISTS`` a pin on the enclosing query's chunk. With ``active_at`` only pins of sessions
    not yet expired at that time count (what a real pass keeps after reaping expired ones)."""
    q = select(ChunkPin.chunk_hash).where(ChunkPin.chunk_hash == Chunk.hash)
    if active_at is not None:
        q = q.join(PinSession, PinSession.id == ChunkPin.session_id).where(
            PinSession.expires_at >= active_at
        )
    return exists(q)


@dataclass(frozen=True, slots=True)
class LeaseHolder:
    owner: str
    expires_at: datetime


class PinRepository:
    """Upload pins: what an in-flight upload relies on between its dedup lookup and its commit."""

    def __init__(self, session: AsyncSession) -> None:
        self.s = session

    async def pin(
        self, session_id: str, hashes: Sequence[str], expires_at: datetime
    ) -> dict[str, list[str]]:
        """Pin ``hashes`` for the session (creating or renewing it), then look them up: hash ->
        replica node ids of those already stored. Run in a write transaction: the GC gate is
        taken shared, so the answer stays true until the session is claimed or expires."""
        await gate(self.s, exclusive=False)
        table = PinSession.__table__
        stmt = _insert(self.s, table).values(id=session_id, expires_at=expires_at)
        await self.s.execute(
            stmt.on_conflict_do_update(index_elements=["id"], set_={"expires_at": expires_at})
        )
        rows = [{"session_id": session_id, "chunk_hash": h} for h in sorted(set(hashes))]
        if rows:
            # One cached single-row statement run for all rows (executemany): a multi-row
            # VALUES statement would be compiled afresh for every batch size.
            ins = _insert(self.s, ChunkPin.__table__).on_conflict_do_nothing()
            await self.s.execute(ins, rows)
        return await ChunkRepository(self.s).stored(hashes)

    async def claim(self, session_id: str) -> bool:
        """In the commit transaction, first: take the gate shared and delete the session with its
        pins. False if GC had already reaped it (expired): its chunks may have been collected."""
        await gate(self.s, exclusive=False)
        await self.s.execute(delete(ChunkPin).where(ChunkPin.session_id == session_id))
        res = await self.s.execute(delete(PinSession).where(PinSession.id == session_id))
        return bool(getattr(res, "rowcount", 0))

    async def release(self, session_id: str) -> None:
        """Drop a session that will not commit (its upload failed)."""
        await self.s.execute(delete(ChunkPin).where(ChunkPin.session_id == session_id))
        await self.s.execute(delete(PinSession).where(PinSession.id == session_id))

    async def reap(self, now: datetime) -> int:
        """Delete sessions expired at ``now`` with their pins (caller holds the gate
        exclusively); return how many."""
        expired = select(PinSession.id).where(PinSession.expires_at < now)
        await self.s.execute(delete(ChunkPin).where(ChunkPin.session_id.in_(expired)))
        res = await self.s.execute(delete(PinSession).where(PinSession.expires_at < now))
        return int(getattr(res, "rowcount", 0))

    async def count_expired(self, now: datetime) -> int:
        stmt = select(func.count()).select_from(PinSession).where(PinSession.expires_at < now)
        return int((await self.s.execute(stmt)).scalar_one())


class GCRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.s = session

    # -- lease -------------------------------------------------------------------------------

    async def acquire_lease(
        self, name: str, owner: str, now: datetime, expires_at: datetime
    ) -> bool:
        """Take the lease if it is free, expired or already ours (one atomic upsert)."""
        t = GCLease.__table__
        stmt = _insert(self.s, t).values(
            name=name, owner=owner, acquired_at=now, expires_at=expires_at
        )
        stmt = stmt.on_conflict_do_update(
            index_elements=["name"],
            set_={
                "owner": stmt.excluded.owner,
                "acquired_at": stmt.excluded.acquired_at,
                "expires_at": stmt.excluded.expires_at,
            },
            where=or_(t.c.expires_at < now, t.c.owner == owner),
        ).returning(t.c.owner)
        return (await self.s.execute(stmt)).scalar_one_or_none() == owner

    async def renew_lease(self, name: str, owner: str, expires_at: datetime) -> bool:
        """Extend our lease; False if it is no longer ours (expired and taken over)."""
        res = await self.s.execute(
            update(GCLease)
            .where(GCLease.name == name, GCLease.owner == owner)
            .values(expires_at=expires_at)
        )
        return bool(getattr(res, "rowcount", 0))

    async def release_lease(self, name: str, owner: str) -> None:
        await self.s.execute(delete(GCLease).where(GCLease.name == name, GCLease.owner == owner))

    async def lease_holder(self, name: str) -> LeaseHolder | None:
        row = (
            await self.s.execute(
                select(GCLease.owner, GCLease.expires_at).where(GCLease.name == name)
            )
        ).one_or_none()
        return LeaseHolder(row[0], row[1]) if row else None

    # -- phase 1: unmark and mark ------------------------------------------------------------

    def _locked(self, stmt: Select[Any]) -> Select[Any]:
        # PostgreSQL: rows another transaction holds are left for the next batch or pass, so GC
        # never waits on (nor deadlocks with) uploads and deletes. SQLite: the write lock.
        return stmt.with_for_update(of=Chunk, skip_locked=True)

    async def unmark_batch(self, limit: int) -> int:
        """Marked chunks that gained a reference become live again; return how many."""
        cond = and_(Chunk.state == "marked", Chunk.ref_count > 0)
        hashes = list(
            (await self.s.execute(self._locked(select(Chunk.hash).where(cond).limit(limit))))
            .scalars()
            .all()
        )
        if not hashes:
            return 0
        # The rows are locked (or the database is): no need to re-check the state. Only the
        # primary key in the WHERE clause, so SQLite looks rows up by it rather than walking the
        # (state, ref_count) index.
        res = await self.s.execute(
            update(Chunk)
            .where(Chunk.hash.in_(hashes), Chunk.ref_count > 0)
            .values(state="live", marked_at=None)
            .execution_options(synchronize_session=False)
        )
        return int(getattr(res, "rowcount", 0))

    async def mark_batch(self, now: datetime, limit: int) -> int:
        """Live chunks without references become marked at ``now``; return how many."""
        cond = and_(Chunk.state == "live", Chunk.ref_count == 0)
        hashes = list(
            (await self.s.execute(self._locked(select(Chunk.hash).where(cond).limit(limit))))
            .scalars()
            .all()
        )
        if not hashes:
            return 0
        res = await self.s.execute(
            update(Chunk)
            .where(Chunk.hash.in_(hashes), Chunk.ref_count == 0)
            .values(state="marked", marked_at=now)
            .execution_options(synchronize_session=False)
        )
        return int(getattr(res, "rowcount", 0))

    async def count_unmark(self) -> int:
        stmt = select(func.count()).where(Chunk.state == "marked", Chunk.ref_count > 0)
        return int((await self.s.execute(stmt)).scalar_one())

    async def count_mark(self) -> int:
        stmt = select(func.count()).where(Chunk.state == "live", Chunk.ref_count == 0)
        return int((await self.s.execute(stmt)).scalar_one())

    # -- phase 2: sweep ----------------------------------------------------------------------

    @staticmethod
    def _sweepable(
        cutoff: datetime, *, include_live: bool, active_at: datetime | None
    ) -> ColumnElement[bool]:
        due = and_(Chunk.state == "marked", Chunk.marked_at <= cutoff)
        if include_live:
            due = or_(due, Chunk.state == "live")
        return and_(Chunk.ref_count == 0, due, ~_pinned(active_at=active_at))

    async def sweep_batch(
        self, cutoff: datetime, limit: int, now: datetime
    ) -> list[tuple[str, int]]:
        """Delete up to ``limit`` chunk records (and their replica rows) that are unreferenced,
        unpinned and were marked at or before ``cutoff``, and queue their bytes in the deletion
        journal; return (hash, size) of each. The caller holds the gate exclusively."""
        cond = self._sweepable(cutoff, include_live=False, active_at=None)
        hashes = list(
            (await self.s.execute(self._locked(select(Chunk.hash).where(cond).limit(limit))))
            .scalars()
            .all()
        )
        if not hashes:
            return []
        await self.s.execute(delete(ChunkReplica).where(ChunkReplica.chunk_hash.in_(hashes)))
        # Selected and locked under the exclusive gate: nothing can pin or reference them before
        # this commits (``ref_count = 0`` is re-checked anyway; by primary key, see above).
        res = await self.s.execute(
            delete(Chunk)
            .where(Chunk.hash.in_(hashes), Chunk.ref_count == 0)
            .returning(Chunk.hash, Chunk.size)
            .execution_options(synchronize_session=False)
        )
        rows = sorted((str(h), int(n)) for h, n in res.all())
        if rows:
            ins = _insert(self.s, GCDeletion.__table__).on_conflict_do_nothing()
            await self.s.execute(ins, [{"hash": h, "size": n, "queued_at": now} for h, n in rows])
        return rows

    async def plan_sweep(
        self, cutoff: datetime, *, include_live: bool, active_at: datetime, batch: int
    ) -> AsyncIterator[list[tuple[str, int]]]:
        """Dry run: the chunks a real pass would sweep, ``batch`` at a time (one streamed query,
        so memory stays bounded)."""
        cond = self._sweepable(cutoff, include_live=include_live, active_at=active_at)
        stmt = select(Chunk.hash, Chunk.size).where(cond).execution_options(yield_per=batch)
        result = await self.s.stream(stmt)
        async for part in result.partitions(batch):
            yield [(str(h), int(n)) for h, n in part]

    # -- deletion journal --------------------------------------------------------------------

    async def journal_page(self, after: str, limit: int) -> list[tuple[str, int]]:
        stmt = (
            select(GCDeletion.hash, GCDeletion.size)
            .where(GCDeletion.hash > after)
            .order_by(GCDeletion.hash)
            .limit(limit)
        )
        return [(str(h), int(n)) for h, n in (await self.s.execute(stmt)).all()]

    async def take_journal(self, hashes: Sequence[str]) -> list[tuple[str, int]]:
        """Remove the journal rows of ``hashes``; return (hash, size) of those that were there.
        (If the caller's transaction rolls back, they are back for the next pass.)"""
        out: list[tuple[str, int]] = []
        for batch in _batches(sorted(set(hashes))):
            res = await self.s.execute(
                delete(GCDeletion)
                .where(GCDeletion.hash.in_(batch))
                .returning(GCDeletion.hash, GCDeletion.size)
            )
            out.extend((str(h), int(n)) for h, n in res.all())
        return sorted(out)

    async def count_journal(self) -> int:
        return int(
            (await self.s.execute(select(func.count()).select_from(GCDeletion))).scalar_one()
        )

    # -- what must not be deleted ------------------------------------------------------------

    async def protected(
        self,
        hashes: Sequence[str],
        *,
        active_at: datetime | None = None,
        journal: bool = False,
    ) -> set[str]:
        """Those of ``hashes`` that have a chunk record or a pin (only pins of sessions active
        at ``active_at`` if given), or with ``journal`` a pending journal entry."""
        out: set[str] = set()
        for batch in _batches(sorted(set(hashes))):
            pins = select(ChunkPin.chunk_hash).where(ChunkPin.chunk_hash.in_(batch))
            if active_at is not None:
                pins = pins.join(PinSession, PinSession.id == ChunkPin.session_id).where(
                    PinSession.expires_at >= active_at
                )
            parts = [select(Chunk.hash).where(Chunk.hash.in_(batch)), pins]
            if journal:
                parts.append(select(GCDeletion.hash).where(GCDeletion.hash.in_(batch)))
            out.update((await self.s.execute(union(*parts))).scalars())
        return out
