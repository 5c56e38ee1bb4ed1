"""Invariant 4 under concurrency: GC never deletes a chunk that an in-flight upload deduplicated
against (or wrote), on SQLite and PostgreSQL. Uploads that deduplicate against unreferenced,
marked chunks run concurrently with passes at grace 0, many times, with the interleaving varied;
then every committed file must download byte-exact. Plus the worst interleavings, forced."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Coroutine
from datetime import UTC, datetime
from typing import Any, TypeVar

import pytest
from sqlalchemy import select

from dfms.context import AppContext
from dfms.errors import StorageError
from dfms.metadata.gc_repository import PinRepository
from dfms.metadata.models import Chunk, ChunkPin, ManifestChunk, PinSession
from dfms.services.uploads import FileView, StagedContent
from dfms.workers.gc import GCReport
from tests.integration.test_gc import (
    FakeClock,
    all_on_disk,
    chunks_of,
    collector,
    new_user,
    pieces,
    put_file,
    rand,
    read_file,
    table_count,
)

T = TypeVar("T")
ITERATIONS = 30


def _now() -> datetime:
    return datetime.now(UTC)


async def _after_yields(n: int, coro: Coroutine[Any, Any, T]) -> T:
    """Start ``coro`` after ``n`` turns of the event loop (varies the interleaving; no sleep)."""
    for _ in range(n):
        await asyncio.sleep(0)
    return await coro


async def _check_consistent(ctx: AppContext) -> None:
    """Every chunk a manifest references has a live record and its bytes on disk."""
    async with ctx.db.read() as s:
        wanted = set((await s.execute(select(ManifestChunk.chunk_hash))).scalars())
        records = {
            c.hash: c
            for c in (await s.execute(select(Chunk).where(Chunk.hash.in_(wanted)))).scalars()
        }
    assert set(records) == wanted
    assert all(c.ref_count > 0 and c.state == "live" for c in records.values())
    assert wanted <= all_on_disk(ctx)


async def test_uploads_racing_sweeps_never_lose_chunks(ctx: AppContext) -> None:
    """30 rounds: a file is deleted (its chunks unreferenced; marked in every other round), then
    two uploads deduplicate against those chunks (one the same content, one sharing a prefix)
    while a grace-0 pass runs: all at once with random start shifts and yields between the
    pass's phases; staged first and committing during the pass; staged first with a whole pass
    before the commits; or running inside the pass at one of its phase boundaries. Now and then
    an earlier file is deleted too. Every committed file downloads byte-exact, and every
    referenced chunk has its record and bytes."""
    rng = random.Random(4)
    user = await new_user(ctx)
    yields: list[int] = [0]

    async def jitter(phase: str) -> None:
        for _ in range(yields[0]):
            await asyncio.sleep(0)

    gc = collector(ctx, _now, on_phase=jitter)
    committed: list[tuple[FileView, bytes]] = []
    retried = swept = 0

    def commit(staged: StagedContent, name: str) -> Coroutine[Any, Any, FileView]:
        return ctx.uploads.commit(user, staged, name=name, folder_id=None, mime_type=None)

    def shifted(coro: Coroutine[Any, Any, T]) -> Coroutine[Any, Any, T]:
        return _after_yields(rng.randrange(0, 40), coro)

    for i in range(ITERATIONS):
        base = rand(rng.randrange(30_000, 60_000), 1000 + i)
        f = await put_file(ctx, user, base, f"base{i}.bin")
        await ctx.files.delete(user, f.id)
        if i % 2:
            await gc.run_once(grace=10**9)  # marked, not yet due
        cut = rng.randrange(5_000, len(base))
        datas = (base, base[:cut] + rand(rng.randrange(5_000, 25_000), 5000 + i))
        names = (f"same{i}.bin", f"mixed{i}.bin")
        todo = list(zip(datas, names, strict=True))
        yields[0] = rng.randrange(0, 6)
        outcomes: list[Any] = []
        report: Any = None
        mode = i % 4
        if mode == 0:  # everything at once
            *outcomes, report = await asyncio.gather(
                *(shifted(put_file(ctx, user, d, n)) for d, n in todo),
                shifted(gc.run_once(grace=0)),
                return_exceptions=True,
            )
        elif mode in (1, 2):  # deduplicated (staged) before the pass
            staged = [await ctx.uploads.stage(user, pieces(d)) for d in datas]
            assert staged[0].dedup_chunks == len(staged[0].chunks)
            if mode == 1:  # commits race the pass
                *outcomes, report = await asyncio.gather(
                    *(shifted(commit(s, n)) for s, n in zip(staged, names, strict=True)),
                    shifted(gc.run_once(grace=0)),
                    return_exceptions=True,
                )
            else:  # a whole pass between lookup and commit
                report = await gc.run_once(grace=0)
                outcomes = list(
                    await asyncio.gather(
                        *(commit(s, n) for s, n in zip(staged, names, strict=True)),
                        return_exceptions=True,
                    )
                )
        else:  # the uploads run inside the pass, at one of its phase boundaries
            phase = rng.choice(["pins-reaped", "marked", "records-deleted", "swept"])

            async def inside(
                p: str, phase: str = phase, out: list[Any] = outcomes, todo: Any = todo
            ) -> None:
                if p == phase and not out:
                    uploads = (put_file(ctx, user, d, f"{n}-{p}") for d, n in todo)
                    out.extend(await asyncio.gather(*uploads, return_exceptions=True))

            report = await collector(ctx, _now, on_phase=inside).run_once(grace=0)
            assert outcomes, phase
        assert isinstance(report, GCReport), report
        swept += report.swept
        for data, result in zip(datas, outcomes, strict=True):
            if isinstance(result, StorageError):  # retryable: nothing was committed
                retried += 1
                continue
            assert isinstance(result, FileView), result
            committed.append((result, data))
        if committed and rng.random() < 0.3:  # an earlier file becomes garbage too
            view, _ = committed.pop(rng.randrange(len(committed)))
            await ctx.files.delete(user, view.id)

    final = await gc.run_once(grace=0)
    assert final.errors == []
    assert swept + final.swept > 0, "the sweeps must have had something to race with"
    assert retried == 0
    for view, data in committed:
        assert await read_file(ctx, user, view.id) == data, view.name
    await _check_consistent(ctx)
    assert await table_count(ctx, PinSession) == 0 and await table_count(ctx, ChunkPin) == 0


async def test_staged_upload_survives_full_pass(ctx: AppContext) -> None:
    """An upload that deduplicated against marked, due chunks and has not committed yet: a whole
    grace-0 pass runs in between and sweeps none of them; the commit then succeeds."""
    user = await new_user(ctx)
    data = rand(120_000, 7)
    f = await put_file(ctx, user, data, "a.bin")
    await ctx.files.delete(user, f.id)
    clock = FakeClock()
    assert (await collector(ctx, clock).run_once(grace=10**6)).marked == len(chunks_of(ctx, data))
    staged = await ctx.uploads.stage(user, pieces(data))
    assert staged.dedup_chunks == len(staged.chunks)  # every chunk deduplicated

    report = await collector(ctx, clock).run_once(grace=0)
    assert report.swept == 0 and report.orphans == 0
    view = await ctx.uploads.commit(user, staged, name="b.bin", folder_id=None, mime_type=None)
    clock.advance(10**7)
    assert (await collector(ctx, clock).run_once(grace=0)).swept == 0
    assert await read_file(ctx, user, view.id) == data
    await _check_consistent(ctx)


async def test_upload_commits_between_record_and_byte_deletion(ctx: AppContext) -> None:
    """The sweep deleted the records and is about to delete the bytes when an upload of the same
    content runs to its commit (it finds no record, pins and writes the chunks): the sweep then
    leaves those bytes alone."""
    user = await new_user(ctx)
    data = rand(100_000, 8)
    f = await put_file(ctx, user, data, "a.bin")
    await ctx.files.delete(user, f.id)
    views: list[FileView] = []

    async def upload_now(phase: str) -> None:
        if phase == "records-deleted" and not views:
            async with ctx.db.read() as s:
                assert (await s.execute(select(Chunk))).first() is None
            views.append(await put_file(ctx, user, data, "again.bin"))

    report = await collector(ctx, on_phase=upload_now).run_once(grace=0)
    assert report.swept == len(chunks_of(ctx, data)) and report.copies_removed == 0
    assert all_on_disk(ctx) == chunks_of(ctx, data)
    assert await read_file(ctx, user, views[0].id) == data
    await _check_consistent(ctx)


async def test_upload_pinning_while_bytes_are_deleted(
    ctx: AppContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An upload of the same content reaches its dedup lookup while the sweep deletes the bytes
    (holding the GC gate): the lookup waits for the deletion to finish, finds no record, and the
    upload writes the chunks again; the commit is complete."""
    user = await new_user(ctx)
    data = rand(100_000, 9)
    f = await put_file(ctx, user, data, "a.bin")
    await ctx.files.delete(user, f.id)
    store = ctx.stores["node-1"]
    real_delete = store.delete
    tasks: list[asyncio.Task[FileView]] = []
    at_lookup = asyncio.Event()
    real_pin = PinRepository.pin

    async def pin(self: PinRepository, *args: Any) -> dict[str, list[str]]:
        at_lookup.set()
        return await real_pin(self, *args)

    monkeypatch.setattr(PinRepository, "pin", pin)

    async def delete_with_upload(hashes: Any) -> int:
        if not tasks:
            tasks.append(asyncio.create_task(put_file(ctx, user, data, "again.bin")))
            await asyncio.wait_for(at_lookup.wait(), 30)
            for _ in range(20):  # let its first statement reach the database and wait there
                await asyncio.sleep(0)
            assert not tasks[0].done()
        return await real_delete(hashes)

    store.delete = delete_with_upload  # type: ignore[method-assign]
    try:
        report = await collector(ctx).run_once(grace=0)
    finally:
        store.delete = real_delete  # type: ignore[method-assign]
    view = await tasks[0]
    assert report.swept == len(chunks_of(ctx, data))
    assert view.new_chunks == len(chunks_of(ctx, data))
    assert await read_file(ctx, user, view.id) == data
    await _check_consistent(ctx)
