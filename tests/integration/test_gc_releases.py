"""GC after the other ways references are released: a folder subtree deleted, one version
deleted, versions dropped by retention. In each case a pass with grace 0 deletes exactly the
chunks nothing references any more, and everything still listed downloads byte-exact."""

from __future__ import annotations

import uuid

from dfms.context import AppContext
from tests.integration.test_gc import (
    all_on_disk,
    chunks_of,
    collector,
    new_user,
    pieces,
    rand,
    read_file,
)


async def put_in(
    ctx: AppContext, user: uuid.UUID, data: bytes, name: str, folder: uuid.UUID | None
) -> uuid.UUID:
    staged = await ctx.uploads.stage(user, pieces(data))
    view = await ctx.uploads.commit(user, staged, name=name, folder_id=folder, mime_type=None)
    return view.id


async def test_folder_subtree_delete_then_gc(ctx: AppContext) -> None:
    """Deleting a folder subtree and running GC removes exactly the chunks used only inside it;
    a file outside that shares chunks with one inside stays downloadable."""
    user = await new_user(ctx)
    top = await ctx.folders.create(user, "top", None)
    sub = await ctx.folders.create(user, "sub", top.id)
    inner_a = rand(200_000, 11)
    inner_b = rand(150_000, 12)
    outside = inner_a[:100_000] + rand(100_000, 13)
    await put_in(ctx, user, inner_a, "a.bin", top.id)
    await put_in(ctx, user, inner_b, "b.bin", sub.id)
    out_id = await put_in(ctx, user, outside, "o.bin", None)
    keep = chunks_of(ctx, outside)
    gone = (chunks_of(ctx, inner_a) | chunks_of(ctx, inner_b)) - keep
    assert gone and keep & chunks_of(ctx, inner_a)
    await ctx.folders.delete(user, top.id, confirm=True)
    report = await collector(ctx).run_once(grace=0)
    assert all_on_disk(ctx) == keep
    assert report.swept == len(gone)
    assert await read_file(ctx, user, out_id) == outside


async def test_version_delete_then_gc(ctx: AppContext) -> None:
    """Deleting one version frees the chunks only it used; the remaining version is intact."""
    user = await new_user(ctx)
    v1 = rand(180_000, 21)
    v2 = v1[:90_000] + rand(90_000, 22)
    fid = await put_in(ctx, user, v1, "f.bin", None)
    assert await put_in(ctx, user, v2, "f.bin", None) == fid
    only_v1 = chunks_of(ctx, v1) - chunks_of(ctx, v2)
    assert only_v1
    await ctx.versions.delete(user, fid, 1)
    await collector(ctx).run_once(grace=0)
    assert all_on_disk(ctx) == chunks_of(ctx, v2)
    assert await read_file(ctx, user, fid) == v2


async def test_retention_then_gc(ctx: AppContext) -> None:
    """Versions dropped by retention release their chunks; GC then removes exactly those."""
    user = await new_user(ctx)
    ctx.uploads.retention = 2
    datas = [rand(120_000, 30 + i) for i in range(4)]
    fid = None
    for d in datas:
        fid = await put_in(ctx, user, d, "r.bin", None)
    assert fid is not None
    kept = chunks_of(ctx, datas[2]) | chunks_of(ctx, datas[3])
    await collector(ctx).run_once(grace=0)
    assert all_on_disk(ctx) == kept
    assert await read_file(ctx, user, fid) == datas[3]
    assert await read_file(ctx, user, fid, 3) == datas[2]
