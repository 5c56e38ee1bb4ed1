"""Garbage collection against real stores on disk, on SQLite and PostgreSQL: mark and sweep with
the grace period, shared chunks, versions, replicas, the lease, a crash mid-sweep, orphans and the
dry run. Time is an injected clock: no test sleeps waiting for state."""

from __future__ import annotations

import io
import random
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, update

from dfms.chunking import iter_file_chunks
from dfms.config import Settings
from dfms.context import AppContext, chunk_params
from dfms.errors import InvalidFileName, StorageError
from dfms.metadata.gc_repository import GCRepository, PinRepository
from dfms.metadata.models import Chunk, ChunkPin, ChunkReplica, GCDeletion, PinSession
from dfms.metadata.repositories import ChunkRepository
from dfms.services.uploads import FileView
from dfms.workers.gc import LEASE_NAME, GarbageCollector, GCLeaseLost, GCReport

# -- helpers (also used by the other test_gc_* modules) -------------------------------------


class FakeClock:
    """An injectable clock for the GC: moves only when told to."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def rand(n: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(n)


async def pieces(data: bytes, size: int = 64 * 1024) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


async def new_user(ctx: AppContext, email: str | None = None) -> uuid.UUID:
    email = email or f"u{uuid.uuid4().hex[:10]}@example.com"
    return (await ctx.users.create_user(email, "securepass123")).id


async def put_file(ctx: AppContext, user: uuid.UUID, data: bytes, name: str) -> FileView:
    staged = await ctx.uploads.stage(user, pieces(data))
    return await ctx.uploads.commit(user, staged, name=name, folder_id=None, mime_type=None)


async def read_file(
    ctx: AppContext, user: uuid.UUID, file_id: uuid.UUID, version: int | None = None
) -> bytes:
    d = await ctx.files.open_download(user, file_id, version)
    return b"".join([piece async for piece in ctx.files.stream(d)])


def chunks_of(ctx: AppContext, data: bytes) -> set[str]:
    return {c.sha256 for c in iter_file_chunks(io.BytesIO(data), chunk_params(ctx.settings))}


def on_disk(ctx: AppContext) -> dict[str, set[str]]:
    """Chunk files per node, read from the directories."""
    out: dict[str, set[str]] = {}
    for n in ctx.settings.node_list():
        assert n.path is not None
        out[n.id] = {p.name for p in Path(n.path).rglob("*") if p.is_file() and len(p.name) == 64}
    return out


def all_on_disk(ctx: AppContext) -> set[str]:
    return set().union(*on_disk(ctx).values())


def collector(
    ctx: AppContext,
    clock: Callable[[], datetime] | None = None,
    *,
    on_phase: Callable[[str], Awaitable[None]] | None = None,
    owner: str | None = None,
    **settings: Any,
) -> GarbageCollector:
    gc_settings = ctx.settings.gc.model_copy(update=settings)
    return GarbageCollector(
        ctx.db, ctx.store, gc_settings, clock=clock or FakeClock(), on_phase=on_phase, owner=owner
    )


async def table_count(ctx: AppContext, model: Any) -> int:
    async with ctx.db.read() as s:
        return int((await s.execute(select(func.count()).select_from(model))).scalar_one())


@asynccontextmanager
async def open_ctx(settings: Settings) -> AsyncIterator[AppContext]:
    context = await AppContext.open(settings)
    try:
        yield context
    finally:
        await context.aclose()


# -- mark and sweep ----------------------------------------------------------------------------


async def test_shared_chunks_only_unshared_are_deleted(ctx: AppContext) -> None:
    """Deleting a file whose chunks are partly shared with another: a pass with grace 0 deletes
    exactly the unshared chunks' files; the other file still downloads byte-exact; the stored
    figures (chunk records, store usage) drop by what was reclaimed."""
    user = await new_user(ctx)
    a = rand(240_000, 1)
    b = a[:120_000] + rand(120_000, 2)
    fa = await put_file(ctx, user, a, "a.bin")
    fb = await put_file(ctx, user, b, "b.bin")
    ca, cb = chunks_of(ctx, a), chunks_of(ctx, b)
    unshared = ca - cb
    assert unshared and ca & cb, "the test needs shared and unshared chunks"
    assert all_on_disk(ctx) == ca | cb

    async with ctx.db.read() as s:
        before_chunks, before_bytes = await ChunkRepository(s).totals()
    used_before = sum(st.used for st in (await ctx.store.stat()).values() if st)

    await ctx.files.delete(user, fa.id)
    report = await collector(ctx).run_once(grace=0)

    assert all_on_disk(ctx) == cb
    assert await read_file(ctx, user, fb.id) == b
    sizes = {
        c.sha256: c.length for c in iter_file_chunks(io.BytesIO(a), chunk_params(ctx.settings))
    }
    freed = sum(sizes[h] for h in unshared)
    assert (report.marked, report.swept, report.swept_bytes) == (
        len(unshared),
        len(unshared),
        freed,
    )
    assert report.reclaimed_bytes == freed and report.copies_removed == len(unshared)
    assert report.orphans == 0 and report.errors == []
    assert report.stored_chunks == before_chunks - len(unshared)
    assert report.stored_bytes == before_bytes - freed
    assert report.store_used_bytes == used_before - freed
    async with ctx.db.read() as s:
        assert await ChunkRepository(s).totals() == (report.stored_chunks, report.stored_bytes)
        replicas = await ChunkRepository(s).replicas(sorted(unshared))
    assert replicas == {}
    assert await table_count(ctx, GCDeletion) == 0

    again = await collector(ctx).run_once(grace=0)
    assert again.counts() == dict.fromkeys(GCReport.COUNTS, 0)


async def test_all_versions_released_on_delete(ctx: AppContext) -> None:
    """A file with several versions: deleting it releases every version; a pass deletes the
    chunks no other file uses and keeps the ones another file shares."""
    user = await new_user(ctx)
    v1, v2, v3 = rand(90_000, 11), rand(90_000, 12), rand(90_000, 13)
    keep = v2[:60_000] + rand(50_000, 14)
    f = await put_file(ctx, user, v1, "doc.bin")
    assert (await put_file(ctx, user, v2, "doc.bin")).version == 2
    assert (await put_file(ctx, user, v3, "doc.bin")).version == 3
    other = await put_file(ctx, user, keep, "other.bin")
    assert await read_file(ctx, user, f.id, 1) == v1

    await ctx.files.delete(user, f.id)
    gc = collector(ctx)
    report = await gc.run_once(grace=0)

    expected = chunks_of(ctx, keep)
    gone = (chunks_of(ctx, v1) | chunks_of(ctx, v2) | chunks_of(ctx, v3)) - expected
    assert all_on_disk(ctx) == expected
    assert report.swept == len(gone)
    assert await read_file(ctx, user, other.id) == keep


async def test_grace_period_is_respected(ctx: AppContext) -> None:
    """Unreferenced chunks are marked at the first pass and swept only by a pass that runs once
    they have been marked for longer than the grace period."""
    user = await new_user(ctx)
    data = rand(100_000, 21)
    f = await put_file(ctx, user, data, "g.bin")
    hashes = chunks_of(ctx, data)
    await ctx.files.delete(user, f.id)
    clock = FakeClock()
    gc = collector(ctx, clock, grace_period=3600)

    first = await gc.run_once()
    assert (first.marked, first.swept) == (len(hashes), 0)
    async with ctx.db.read() as s:
        states = {(c.state, c.marked_at) for c in (await s.execute(select(Chunk))).scalars()}
    assert states == {("marked", clock.now)}

    clock.advance(1800)
    second = await gc.run_once()
    assert (second.marked, second.swept) == (0, 0)
    assert all_on_disk(ctx) == hashes

    clock.advance(1800)  # exactly the grace period: due
    third = await gc.run_once()
    assert third.swept == len(hashes)
    assert all_on_disk(ctx) == set()


async def test_chunk_referenced_again_is_unmarked_not_deleted(ctx: AppContext) -> None:
    """A marked chunk that gained a reference meanwhile is unmarked by the next pass, never
    deleted; re-uploading the same content re-claims marked chunks at commit."""
    user = await new_user(ctx)
    data = rand(80_000, 31)
    f = await put_file(ctx, user, data, "x.bin")
    hashes = chunks_of(ctx, data)
    await ctx.files.delete(user, f.id)
    clock = FakeClock()
    gc = collector(ctx, clock, grace_period=60)
    assert (await gc.run_once()).marked == len(hashes)

    # A reference appears without the chunk being re-claimed (as another path might do).
    some = sorted(hashes)[0]
    async with ctx.db.write() as s:
        await s.execute(update(Chunk).where(Chunk.hash == some).values(ref_count=1))
    clock.advance(3600)
    report = await gc.run_once()
    assert report.unmarked == 1 and report.swept == len(hashes) - 1
    async with ctx.db.read() as s:
        chunk = await ChunkRepository(s).get(some)
    assert chunk is not None and chunk.state == "live" and chunk.marked_at is None
    assert all_on_disk(ctx) == {some}

    # Re-uploading re-claims a marked chunk in the commit (state live again).
    async with ctx.db.write() as s:
        await s.execute(update(Chunk).where(Chunk.hash == some).values(ref_count=0))
    assert (await gc.run_once()).marked == 1
    g = await put_file(ctx, user, data, "again.bin")
    async with ctx.db.read() as s:
        chunk = await ChunkRepository(s).get(some)
    assert chunk is not None and chunk.state == "live" and chunk.ref_count >= 1
    clock.advance(7200)
    assert (await gc.run_once()).swept == 0
    assert await read_file(ctx, user, g.id) == data


async def test_replicas_deleted_on_every_node(
    make_settings: Callable[..., Settings], db_url: str
) -> None:
    """With replication 2 over 3 nodes, a sweep deletes both copies of each unshared chunk and
    counts every copy's bytes as reclaimed."""
    settings = make_settings(database={"url": db_url}, storage={"node_count": 3, "replication": 2})
    async with open_ctx(settings) as ctx:
        user = await new_user(ctx)
        a, b = rand(150_000, 41), rand(150_000, 42)
        fa = await put_file(ctx, user, a, "a.bin")
        fb = await put_file(ctx, user, b, "b.bin")
        copies = sum(len(v & chunks_of(ctx, a)) for v in on_disk(ctx).values())
        assert copies == 2 * len(chunks_of(ctx, a))
        await ctx.files.delete(user, fa.id)
        report = await collector(ctx).run_once(grace=0)
        assert report.copies_removed == copies
        assert report.reclaimed_bytes == 2 * report.swept_bytes
        assert all(not (v & chunks_of(ctx, a)) for v in on_disk(ctx).values())
        assert await read_file(ctx, user, fb.id) == b


# -- lease: one runner at a time ------------------------------------------------------------


async def test_two_runners_only_one_sweeps(ctx: AppContext) -> None:
    """While one runner holds the lease, a second reports it busy (holder and expiry) and does
    nothing; once the first is done, the second can run."""
    user = await new_user(ctx)
    f = await put_file(ctx, user, rand(100_000, 51), "a.bin")
    await ctx.files.delete(user, f.id)
    clock = FakeClock()
    second = collector(ctx, clock, owner="runner-2")
    seen: list[GCReport] = []

    async def hook(phase: str) -> None:
        if phase == "marked":
            seen.append(await second.run_once(grace=0))

    first = collector(ctx, clock, owner="runner-1", on_phase=hook)
    report = await first.run_once(grace=0)
    assert report.swept > 0 and report.lease == "acquired"
    (busy,) = seen
    assert busy.lease == "busy" and busy.lease_holder == "runner-1"
    assert busy.lease_expires_at is not None and busy.lease_expires_at > clock.now
    assert busy.counts() == dict.fromkeys(GCReport.COUNTS, 0)
    assert all_on_disk(ctx) == set()
    assert (await second.run_once(grace=0)).lease == "acquired"


async def test_crashed_runner_lease_expires_and_lost_lease_stops_a_pass(ctx: AppContext) -> None:
    """A lease left by a runner that died expires after lease_ttl; a runner whose lease was taken
    over stops at its next batch without deleting anything."""
    clock = FakeClock()
    async with ctx.db.write() as s:  # a runner took the lease and died
        assert await GCRepository(s).acquire_lease(
            LEASE_NAME, "dead", clock.now, clock.now + timedelta(seconds=300)
        )
    gc = collector(ctx, clock, owner="alive", lease_ttl=300)
    assert (await gc.run_once()).lease == "busy"
    clock.advance(301)
    assert (await gc.run_once()).lease == "acquired"

    user = await new_user(ctx)
    f = await put_file(ctx, user, rand(60_000, 52), "a.bin")
    await ctx.files.delete(user, f.id)
    on_disk_before = all_on_disk(ctx)

    async def steal(phase: str) -> None:
        if phase == "marked":  # this runner stalled past its lease; another one took it
            clock.advance(301)
            async with ctx.db.write() as s:
                assert await GCRepository(s).acquire_lease(
                    LEASE_NAME, "usurper", clock.now, clock.now + timedelta(seconds=300)
                )

    stalled = collector(ctx, clock, owner="stalled", lease_ttl=300, on_phase=steal)
    with pytest.raises(GCLeaseLost):
        await stalled.run_once(grace=0)
    assert all_on_disk(ctx) == on_disk_before
    async with ctx.db.read() as s:
        holder = await GCRepository(s).lease_holder(LEASE_NAME)
    assert holder is not None and holder.owner == "usurper"


# -- crash mid-sweep ----------------------------------------------------------------------------


class Killed(RuntimeError):
    pass


async def test_runner_killed_mid_sweep_is_finished_by_the_next(ctx: AppContext) -> None:
    """A runner dying right after deleting a batch of records (bytes not yet deleted) leaves a
    journal; the next pass finishes it and everything else. Referenced data is untouched."""
    user = await new_user(ctx)
    doomed = rand(200_000, 61)
    kept = rand(100_000, 62)
    f = await put_file(ctx, user, doomed, "doomed.bin")
    k = await put_file(ctx, user, kept, "kept.bin")
    await ctx.files.delete(user, f.id)
    gone = chunks_of(ctx, doomed)
    clock = FakeClock()

    async def die(phase: str) -> None:
        if phase == "records-deleted":
            raise Killed()

    with pytest.raises(Killed):
        await collector(ctx, clock, batch_size=3, on_phase=die).run_once(grace=0)
    assert await table_count(ctx, GCDeletion) == 3  # records gone, bytes still there
    assert all_on_disk(ctx) == gone | chunks_of(ctx, kept)

    report = await collector(ctx, clock, batch_size=3).run_once(grace=0)
    assert report.resumed == 3 and report.swept == len(gone) - 3
    assert report.copies_removed == len(gone)
    assert await table_count(ctx, GCDeletion) == 0
    assert all_on_disk(ctx) == chunks_of(ctx, kept)
    assert await read_file(ctx, user, k.id) == kept


async def test_store_failure_keeps_journal_for_next_pass(ctx: AppContext) -> None:
    """If a store fails while deleting bytes, the pass reports the error, keeps the journal rows
    and the next pass deletes the bytes."""
    user = await new_user(ctx)
    data = rand(80_000, 63)
    f = await put_file(ctx, user, data, "a.bin")
    await ctx.files.delete(user, f.id)
    store = ctx.stores["node-1"]
    real_delete = store.delete

    async def broken(hashes: Any) -> int:
        raise StorageError("disk on fire")

    store.delete = broken  # type: ignore[method-assign]
    try:
        report = await collector(ctx).run_once(grace=0)
    finally:
        store.delete = real_delete  # type: ignore[method-assign]
    assert report.swept == len(chunks_of(ctx, data)) and report.copies_removed == 0
    assert report.errors and "disk on fire" in report.errors[0]
    assert await table_count(ctx, GCDeletion) == report.swept
    assert all_on_disk(ctx) == chunks_of(ctx, data)

    report = await collector(ctx).run_once(grace=0)
    assert report.resumed == len(chunks_of(ctx, data)) and report.errors == []
    assert all_on_disk(ctx) == set()


# -- orphans ----------------------------------------------------------------------------------


async def test_orphan_bytes_reclaimed_only_after_grace(ctx: AppContext) -> None:
    """Chunk bytes no record knows (a server killed before its commit) are deleted only once
    older than the grace period; referenced chunks never are."""
    import hashlib

    user = await new_user(ctx)
    data = rand(50_000, 71)
    f = await put_file(ctx, user, data, "live.bin")
    orphan = rand(10_000, 72)
    h = hashlib.sha256(orphan).hexdigest()
    await ctx.stores["node-1"].put(h, orphan)
    clock = FakeClock(datetime.now(UTC))
    gc = collector(ctx, clock, grace_period=3600)

    report = await gc.run_once()
    assert report.orphans == 0 and h in all_on_disk(ctx)
    clock.advance(3601)
    report = await gc.run_once()
    assert (report.orphans, report.orphan_bytes) == (1, len(orphan))
    assert report.reclaimed_bytes == len(orphan)
    assert all_on_disk(ctx) == chunks_of(ctx, data)
    assert await read_file(ctx, user, f.id) == data


async def test_staged_but_never_committed_upload(ctx: AppContext) -> None:
    """An upload staged and never committed (its gateway died): its bytes are pinned while its
    pins live, even with grace 0; once the pins expire, GC reaps them and reclaims the bytes."""
    user = await new_user(ctx)
    data = rand(90_000, 81)
    staged = await ctx.uploads.stage(user, pieces(data))
    assert staged.pin_session is not None
    clock = FakeClock(datetime.now(UTC))
    gc = collector(ctx, clock)

    report = await gc.run_once(grace=0)
    assert report.orphans == 0 and all_on_disk(ctx) == chunks_of(ctx, data)

    clock.advance(ctx.settings.gc.pin_ttl + 1)
    dry = await gc.run_once(grace=0, dry_run=True)
    report = await gc.run_once(grace=0)
    assert report.pins_expired == 1 and report.orphans == len(chunks_of(ctx, data))
    assert dry.counts() == report.counts()
    assert all_on_disk(ctx) == set()
    assert await table_count(ctx, ChunkPin) == 0 and await table_count(ctx, PinSession) == 0

    # Its commit now fails with a retryable error instead of pointing at collected chunks.
    with pytest.raises(StorageError, match="retry"):
        await ctx.uploads.commit(user, staged, name="late.bin", folder_id=None, mime_type=None)
    assert (await ctx.files.list_files(user, 1, 10)).total == 0


async def test_failed_upload_releases_its_pins(ctx: AppContext) -> None:
    """An upload that fails (quota, bad name) drops its pins at once: its bytes are ordinary
    orphans, and a successful commit leaves no pin behind either."""
    user = await new_user(ctx)
    staged = await ctx.uploads.stage(user, pieces(rand(30_000, 91)))
    assert await table_count(ctx, ChunkPin) > 0
    with pytest.raises(InvalidFileName):
        await ctx.uploads.commit(user, staged, name="bad/name", folder_id=None, mime_type=None)
    assert await table_count(ctx, ChunkPin) == 0 and await table_count(ctx, PinSession) == 0

    async def failing() -> AsyncIterator[bytes]:
        yield rand(70_000, 92)
        raise OSError("client went away")

    with pytest.raises(OSError):
        await ctx.uploads.stage(user, failing())
    assert await table_count(ctx, PinSession) == 0

    await put_file(ctx, user, rand(30_000, 93), "ok.bin")
    assert await table_count(ctx, ChunkPin) == 0 and await table_count(ctx, PinSession) == 0
    report = await collector(ctx).run_once(grace=0)
    assert report.orphans > 0 and report.swept == 0


# -- dry run ------------------------------------------------------------------------------------


async def _scenario(ctx: AppContext, clock: FakeClock) -> tuple[uuid.UUID, list[FileView]]:
    """Deleted files (some chunks marked long ago, some not yet marked), a chunk referenced
    again, an orphan, an expired and a live pin session, a journal leftover."""
    import hashlib

    user = await new_user(ctx)
    files = [await put_file(ctx, user, rand(70_000, 100 + i), f"f{i}.bin") for i in range(4)]
    await ctx.files.delete(user, files[0].id)
    await collector(ctx, clock, grace_period=10**6).run_once()  # marks files[0]'s chunks
    clock.advance(7200)
    await ctx.files.delete(user, files[1].id)  # unreferenced, not marked yet
    async with ctx.db.write() as s:  # a marked chunk that gained a reference
        first = (await s.execute(select(Chunk.hash).where(Chunk.state == "marked"))).scalar()
        await s.execute(update(Chunk).where(Chunk.hash == first).values(ref_count=1))
    orphan = rand(5000, 120)
    await ctx.stores["node-1"].put(hashlib.sha256(orphan).hexdigest(), orphan)
    async with ctx.db.write() as s:
        await PinRepository(s).pin(
            "expired-session", sorted(chunks_of(ctx, rand(70_000, 101))), clock.now
        )
        await PinRepository(s).pin("live-session", [], clock.now + timedelta(days=1))
    async with ctx.db.write() as s:  # a journal entry left by a crashed pass
        stmt = select(Chunk).where(Chunk.state == "marked", Chunk.ref_count == 0)
        gone = (await s.execute(stmt)).scalars().first()
        assert gone is not None
        await s.execute(ChunkReplica.__table__.delete().where(ChunkReplica.chunk_hash == gone.hash))
        s.add(GCDeletion(hash=gone.hash, size=gone.size, queued_at=clock.now))
        await s.delete(gone)
    clock.advance(1)
    return user, files


@pytest.mark.parametrize("grace", [0, 3600, 10**6])
async def test_dry_run_changes_nothing_and_predicts_the_pass(ctx: AppContext, grace: int) -> None:
    """A dry run deletes nothing, changes no record, and reports exactly the counts the real
    pass then performs (grace 0 includes chunks the pass itself marks)."""
    clock = FakeClock(datetime.now(UTC))
    user, files = await _scenario(ctx, clock)

    async def snapshot() -> tuple[Any, ...]:
        async with ctx.db.read() as s:
            chunks = sorted(
                (c.hash, c.ref_count, c.state, c.marked_at)
                for c in (await s.execute(select(Chunk))).scalars()
            )
        return (
            chunks,
            await table_count(ctx, ChunkReplica),
            await table_count(ctx, ChunkPin),
            await table_count(ctx, PinSession),
            await table_count(ctx, GCDeletion),
            on_disk(ctx),
        )

    before = await snapshot()
    gc = collector(ctx, clock, grace_period=grace)
    dry = await gc.run_once(dry_run=True)
    assert await snapshot() == before
    real = await gc.run_once()
    assert real.dry_run is False and dry.dry_run is True
    assert dry.counts() == real.counts()
    assert real.pins_expired == 1 and real.unmarked == 1 and real.resumed == 1
    assert real.orphans == (1 if grace <= 3600 else 0)
    assert real.swept > 0 if grace <= 3600 else real.swept == 0
    for f in files[2:]:
        assert len(await read_file(ctx, user, f.id)) == 70_000
