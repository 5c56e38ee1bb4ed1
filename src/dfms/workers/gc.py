"""Garbage collection: two-phase mark and sweep with a grace period, plus the orphan sweep.

One pass (:meth:`GarbageCollector.run_once`), every step batched (``gc.batch_size`` chunks per
transaction and per store call):

0. Take the lease (``gc_leases`` row ``gc``): one runner at a time; another reports "busy". The
   lease is renewed inside every GC transaction that deletes something, so a runner that lost it
   stops before deleting anything more.
1. Reap upload pin sessions that expired (gateways that died mid-upload).
2. Finish the deletion journal left by an interrupted pass.
3. Unmark: marked chunks that gained a reference become live again.
4. Mark: live chunks without references become ``marked`` at the pass's ``now``.
5. Sweep: records of unreferenced, unpinned chunks marked at or before ``now - grace`` are deleted
   (with their replica rows) and journaled in one transaction; then, in a second one, their bytes
   are deleted on every store unless an upload pinned or re-recorded the chunk in between; the
   journal rows go in the same transaction.
6. Orphans: each store is walked; chunk files older than the grace period that no record, pin or
   journal entry knows are deleted.

Steps 1, 2, 5 and 6 change or delete things that uploads rely on; they run under the GC gate
held exclusively (:func:`dfms.metadata.gc_repository.gate`), while uploads pin and commit under
it shared. Why that makes GC race-free with uploads: docs/gc.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession

from dfms.config import GCSettings
from dfms.errors import DFMSError, StorageError, ValidationFailed
from dfms.metadata.db import Database
from dfms.metadata.gc_repository import GCRepository, PinRepository, gate
from dfms.metadata.repositories import ChunkRepository
from dfms.storage.base import ChunkInfo, ChunkStore
from dfms.storage.cluster import ReplicatedStore

__all__ = ["LEASE_NAME", "GCLeaseLost", "GCReport", "GarbageCollector", "scheduled_gc"]

log = logging.getLogger(__name__)

#: Name of the lease row that makes a GC runner exclusive.
LEASE_NAME = "gc"

Clock = Callable[[], datetime]
#: Called with the name of each phase as it completes (tests inject faults and interleavings).
PhaseHook = Callable[[str], Awaitable[None]]


def _utcnow() -> datetime:
    return datetime.now(UTC)


class GCLeaseLost(DFMSError):
    """The runner's lease expired and another runner took it: this pass stops at once."""

    code = "GC_LEASE_LOST"
    status = 409
    default_message = "the GC lease expired and was taken over; pass stopped"


@dataclass
class GCReport:
    """What a pass did (or, for a dry run, what a real pass at that moment would do)."""

    dry_run: bool
    grace_period: float
    started_at: datetime
    #: "acquired", or "busy" when another runner holds the lease (nothing was done).
    lease: str = "acquired"
    lease_holder: str | None = None
    lease_expires_at: datetime | None = None
    #: Upload pin sessions that had expired and were removed.
    pins_expired: int = 0
    #: Marked chunks that had gained a reference and became live again.
    unmarked: int = 0
    #: Unreferenced chunks marked by this pass.
    marked: int = 0
    #: Chunk records deleted (unreferenced, marked longer ago than the grace period).
    swept: int = 0
    #: Sum of the sizes of the swept chunks (one copy each).
    swept_bytes: int = 0
    #: Journal entries of an interrupted earlier pass whose bytes this pass deleted.
    resumed: int = 0
    #: Chunk files deleted from stores that no record knew (per copy).
    orphans: int = 0
    orphan_bytes: int = 0
    #: Chunk files of swept or resumed chunks deleted, over every store.
    copies_removed: int = 0
    #: Bytes removed from the stores: every copy of swept and resumed chunks, plus orphans.
    reclaimed_bytes: int = 0
    #: Chunk records and their bytes (one copy each) after the pass.
    stored_chunks: int = 0
    stored_bytes: int = 0
    #: Bytes used on the stores after the pass (sum of ``stat().used`` of the stores answering).
    store_used_bytes: int = 0
    #: Problems that did not stop the pass (a store that failed): what was not done is retried by
    #: the next pass.
    errors: list[str] = field(default_factory=list)
    duration: float = 0.0

    #: The figures a dry run predicts and the real pass then performs.
    COUNTS = (
        "pins_expired",
        "unmarked",
        "marked",
        "swept",
        "swept_bytes",
        "resumed",
        "orphans",
        "orphan_bytes",
        "copies_removed",
        "reclaimed_bytes",
    )

    def counts(self) -> dict[str, int]:
        return {k: int(getattr(self, k)) for k in self.COUNTS}

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for key in ("started_at", "lease_expires_at"):
            value = out[key]
            out[key] = value.isoformat() if isinstance(value, datetime) else value
        out["duration"] = round(self.duration, 6)
        return out


class GarbageCollector:
    """Runs GC passes over one metadata database and the stores of one :class:`ReplicatedStore`.

    ``clock`` gives the time used for marks, the grace period, pin expiry and the lease (tests
    inject one); ``owner`` names this runner in the lease.
    """

    def __init__(
        self,
        db: Database,
        store: ReplicatedStore,
        settings: GCSettings,
        *,
        clock: Clock = _utcnow,
        owner: str | None = None,
        on_phase: PhaseHook | None = None,
        before_pass: Callable[[], Awaitable[object]] | None = None,
    ) -> None:
        self.db = db
        #: Awaited at the start of every real pass (``dfms serve`` releases expired multipart
        #: sessions here, so their parts' chunks are collected by the same pass).
        self.before_pass = before_pass
        self.store = store
        self.settings = settings
        self.clock = clock
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.on_phase = on_phase
        self._renewed = 0.0

    # -- public ------------------------------------------------------------------------------

    async def run_once(self, *, grace: float | None = None, dry_run: bool = False) -> GCReport:
        """One full pass. ``grace`` overrides ``gc.grace_period`` (seconds, >= 0). A dry run
        changes nothing and reports what a real pass started at the same moment would do."""
        grace = self.settings.grace_period if grace is None else float(grace)
        if not grace >= 0:
            raise ValidationFailed(f"grace period must be >= 0 seconds, not {grace}")
        started = time.monotonic()
        now = self.clock()
        report = GCReport(dry_run=dry_run, grace_period=grace, started_at=now)
        cutoff = now - timedelta(seconds=grace)
        if dry_run:
            await self._plan(report, now, cutoff)
            await self._totals(report)
            report.duration = time.monotonic() - started
            await self._phase("done")
            return report
        if self.before_pass is not None:
            await self.before_pass()
        if await self._acquire(report, now):
            try:
                await self._pass(report, now, cutoff)
            finally:
                await self._release()
        else:
            report.duration = time.monotonic() - started
            return report
        await self._totals(report)
        report.duration = time.monotonic() - started
        await self._phase("done")
        return report

    async def run_forever(
        self, *, interval: float | None = None, first_delay: float | None = None
    ) -> None:
        """Run a pass every ``interval`` seconds (``gc.interval``), the first one after
        ``first_delay`` (default: one minute, or the interval if shorter). A failed pass is
        logged and retried at the next tick. Runs until cancelled."""
        interval = self.settings.interval if interval is None else interval
        delay = min(interval, 60.0) if first_delay is None else first_delay
        while True:
            await asyncio.sleep(delay)
            delay = interval
            try:
                report = await self.run_once()
            except (DFMSError, SQLAlchemyError, OSError) as exc:
                log.warning("GC pass failed (retried in %gs): %s", interval, exc)
                continue
            if report.lease == "busy":
                log.info("GC pass skipped: lease held by %s", report.lease_holder)
            else:
                log.info(
                    "GC pass: marked=%d swept=%d orphans=%d reclaimed_bytes=%d errors=%d",
                    report.marked,
                    report.swept,
                    report.orphans,
                    report.reclaimed_bytes,
                    len(report.errors),
                )

    # -- lease -------------------------------------------------------------------------------

    def _lease_expiry(self) -> datetime:
        return self.clock() + timedelta(seconds=self.settings.lease_ttl)

    async def _acquire(self, report: GCReport, now: datetime) -> bool:
        async with self.db.write() as s:
            repo = GCRepository(s)
            if await repo.acquire_lease(LEASE_NAME, self.owner, now, self._lease_expiry()):
                self._renewed = time.monotonic()
                report.lease_holder = self.owner
                return True
            holder = await repo.lease_holder(LEASE_NAME)
        report.lease = "busy"
        if holder is not None:
            report.lease_holder = holder.owner
            report.lease_expires_at = holder.expires_at
        return False

    async def _fence(self, s: AsyncSession) -> None:
        """Renew the lease inside the caller's transaction; if it is no longer ours, stop (the
        transaction rolls back, so nothing is done without the lease)."""
        if not await GCRepository(s).renew_lease(LEASE_NAME, self.owner, self._lease_expiry()):
            raise GCLeaseLost()
        self._renewed = time.monotonic()

    async def _keepalive(self) -> None:
        """Renew the lease during long stretches without GC transactions (store walks)."""
        if time.monotonic() - self._renewed >= self.settings.lease_ttl / 3:
            async with self.db.write() as s:
                await self._fence(s)

    async def _release(self) -> None:
        try:
            async with self.db.write() as s:
                await GCRepository(s).release_lease(LEASE_NAME, self.owner)
        except (SQLAlchemyError, OSError) as exc:  # it expires after gc.lease_ttl anyway
            log.warning("could not release the GC lease: %s", exc)

    async def _phase(self, name: str) -> None:
        if self.on_phase is not None:
            await self.on_phase(name)

    # -- the real pass -----------------------------------------------------------------------

    async def _pass(self, report: GCReport, now: datetime, cutoff: datetime) -> None:
        batch = self.settings.batch_size
        async with self.db.write() as s:
            await gate(s, exclusive=True)
            await self._fence(s)
            report.pins_expired = await PinRepository(s).reap(now)
        await self._phase("pins-reaped")

        after = ""  # finish what an interrupted pass left in the journal
        while True:
            async with self.db.read() as s:
                page = await GCRepository(s).journal_page(after, batch)
            if page:
                after = page[-1][0]
                report.resumed += await self._delete_bytes([h for h, _ in page], report)
            if len(page) < batch:
                break
        await self._phase("resumed")

        # A batch shorter than batch_size means nothing else qualifies (rows other transactions
        # held were skipped: the next pass takes them).
        while True:
            n = await self._in_tx(lambda repo: repo.unmark_batch(batch))
            report.unmarked += n
            if n < batch:
                break
        while True:
            n = await self._in_tx(lambda repo: repo.mark_batch(now, batch))
            report.marked += n
            if n < batch:
                break
        await self._phase("marked")

        while True:
            async with self.db.write() as s:
                await gate(s, exclusive=True)
                await self._fence(s)
                rows = await GCRepository(s).sweep_batch(cutoff, batch, now)
            if rows:
                report.swept += len(rows)
                report.swept_bytes += sum(n for _, n in rows)
                await self._phase("records-deleted")
                await self._delete_bytes([h for h, _ in rows], report)
            if len(rows) < batch:
                break
        await self._phase("swept")

        await self._orphans(report, cutoff, active_at=None)
        await self._phase("orphans")

    async def _in_tx(self, op: Callable[[GCRepository], Awaitable[int]]) -> int:
        """A marking transaction: harmless without the lease, so it is only renewed when due."""
        await self._keepalive()
        async with self.db.write() as s:
            return await op(GCRepository(s))

    async def _delete_bytes(self, hashes: Sequence[str], report: GCReport) -> int:
        """Delete, on every store, the bytes of journaled chunks that nothing has claimed since
        their records were deleted, then drop their journal rows; return how many were deleted.
        On a store failure the transaction rolls back: the journal rows stay for the next pass."""
        try:
            async with self.db.write() as s:
                await gate(s, exclusive=True)
                await self._fence(s)
                repo = GCRepository(s)
                rows = await repo.take_journal(hashes)
                # Pinned by an upload that found no record (and writes the bytes), or recorded
                # again by one that committed since: the bytes are in use again.
                keep = await repo.protected([h for h, _ in rows])
                gone = [(h, n) for h, n in rows if h not in keep]
                if gone:
                    doomed = [h for h, _ in gone]
                    holders = await self.store.has(doomed)
                    await self.store.delete(doomed)
                    for h, n in gone:
                        copies = len(holders.get(h, ()))
                        report.copies_removed += copies
                        report.reclaimed_bytes += copies * n
        except StorageError as exc:
            report.errors.append(f"deleting chunk bytes: {exc.message}")
            log.warning("GC could not delete chunk bytes (retried next pass): %s", exc.message)
            return 0
        return len(gone)

    async def _orphans(
        self, report: GCReport, cutoff: datetime, *, active_at: datetime | None
    ) -> None:
        """Walk every store; delete (or, in a dry run, count) chunk files older than ``cutoff``
        that no record, pin or journal entry knows."""
        limit = cutoff.timestamp()
        for node, store in list(self.store.stores.items()):
            found: list[ChunkInfo] = []
            try:
                async for info in store.iterate():
                    if info.mtime > limit:
                        continue
                    found.append(info)
                    if len(found) >= self.settings.batch_size:
                        await self._orphan_batch(store, found, report, active_at)
                        found = []
                if found:
                    await self._orphan_batch(store, found, report, active_at)
            except StorageError as exc:
                report.errors.append(f"orphan sweep of node {node}: {exc.message}")
                log.warning("GC orphan sweep of node %s failed: %s", node, exc.message)

    async def _orphan_batch(
        self,
        store: ChunkStore,
        infos: Sequence[ChunkInfo],
        report: GCReport,
        active_at: datetime | None,
    ) -> None:
        dry_run = report.dry_run
        if not dry_run:
            await self._keepalive()
        async with self.db.read() as s:
            known = await GCRepository(s).protected(
                [i.hash for i in infos], active_at=active_at, journal=True
            )
        candidates = [i for i in infos if i.hash not in known]
        if not candidates:
            return
        if dry_run:
            self._count_orphans(report, candidates)
            return
        async with self.db.write() as s:
            await gate(s, exclusive=True)
            await self._fence(s)
            # Again under the gate: an upload may have pinned or committed one meanwhile.
            again = await GCRepository(s).protected([i.hash for i in candidates], journal=True)
            final = [i for i in candidates if i.hash not in again]
            if final:
                present = await store.has([i.hash for i in final])
                if present:
                    await store.delete(sorted(present))
                self._count_orphans(report, [i for i in final if i.hash in present])

    @staticmethod
    def _count_orphans(report: GCReport, infos: Sequence[ChunkInfo]) -> None:
        size = sum(i.size for i in infos)
        report.orphans += len(infos)
        report.orphan_bytes += size
        report.reclaimed_bytes += size

    # -- dry run -----------------------------------------------------------------------------

    async def _plan(self, report: GCReport, now: datetime, cutoff: datetime) -> None:
        """What ``_pass`` would do if it started at ``now``; reads only."""
        batch = self.settings.batch_size
        async with self.db.read() as s:
            report.pins_expired = await PinRepository(s).count_expired(now)
            repo = GCRepository(s)
            report.unmarked = await repo.count_unmark()
            report.marked = await repo.count_mark()
            holder = await repo.lease_holder(LEASE_NAME)
        if holder is not None:
            report.lease_holder, report.lease_expires_at = holder.owner, holder.expires_at

        after = ""
        while True:
            async with self.db.read() as s:
                repo = GCRepository(s)
                page = await repo.journal_page(after, batch)
                keep = await repo.protected([h for h, _ in page], active_at=now)
            if not page:
                break
            after = page[-1][0]
            gone = [(h, n) for h, n in page if h not in keep]
            report.resumed += len(gone)
            await self._count_copies(report, gone)

        # A chunk marked by the pass itself has marked_at == now: swept when the grace is 0.
        include_live = now <= cutoff
        async with self.db.read() as s:
            pages = GCRepository(s).plan_sweep(
                cutoff, include_live=include_live, active_at=now, batch=batch
            )
            async for page in pages:
                report.swept += len(page)
                report.swept_bytes += sum(n for _, n in page)
                await self._count_copies(report, page)

        await self._orphans(report, cutoff, active_at=now)

    async def _count_copies(self, report: GCReport, rows: Sequence[tuple[str, int]]) -> None:
        if not rows:
            return
        holders = await self.store.has([h for h, _ in rows])
        for h, n in rows:
            copies = len(holders.get(h, ()))
            report.copies_removed += copies
            report.reclaimed_bytes += copies * n

    # -- figures -----------------------------------------------------------------------------

    async def _totals(self, report: GCReport) -> None:
        async with self.db.read() as s:
            report.stored_chunks, report.stored_bytes = await ChunkRepository(s).totals()
        stats = await self.store.stat()
        report.store_used_bytes = sum(st.used for st in stats.values() if st is not None)


@contextlib.asynccontextmanager
async def scheduled_gc(
    gc: GarbageCollector, settings: GCSettings
) -> AsyncIterator[asyncio.Task[None] | None]:
    """Run ``gc`` every ``settings.interval`` seconds in a background task while the block runs
    (``dfms serve``'s lifespan); cancel it cleanly when the block exits. No task when
    ``settings.enabled`` is false."""
    if not settings.enabled:
        yield None
        return
    task = asyncio.create_task(gc.run_forever(interval=settings.interval), name="dfms-gc")
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
