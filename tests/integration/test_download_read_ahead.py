"""Downloads fetch and verify chunks ahead of the one being sent, within a byte budget."""

from __future__ import annotations

import asyncio
import os
from typing import Any

import httpx
import pytest

from dfms.services.files import FileService
from tests.conftest import register
from tests.integration.test_api_files import upload


class _Watch:
    """Wraps the replicated store's ``get`` to record the bytes of chunk reads in flight."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self.real_get = store.get
        self.inflight = 0
        self.peak_count = 0
        self.count = 0

    async def get(self, chunk_hash: str, **kw: Any) -> bytes:
        self.count += 1
        self.inflight += 1
        self.peak_count = max(self.peak_count, self.inflight)
        try:
            data = await self.real_get(chunk_hash, **kw)
            await asyncio.sleep(0)  # let the streamer queue more while this one is "slow"
            return data
        finally:
            self.inflight -= 1


@pytest.mark.parametrize("budget", [1, 20_000, 10 << 20])
async def test_read_ahead_is_bounded_by_bytes_and_stream_is_exact(
    client: httpx.AsyncClient, ctx: Any, budget: int
) -> None:
    """With a budget of 1 byte one chunk is in flight at a time; with more, several are, but the
    chunks in flight never exceed the budget by more than one chunk; the bytes are exact."""
    auth = await register(client)
    data = os.urandom(300_000)
    f = (await upload(client, auth, data)).json()["file"]
    assert f["chunk_count"] > 10
    files: FileService = ctx.files
    (user_id,) = await _users(ctx)
    d = await files.open_download(user_id, f["id"])
    watch = _Watch(files.store)
    files.store.get = watch.get  # type: ignore[method-assign]
    old = files.read_ahead
    files.read_ahead = budget
    try:
        got = bytearray()
        async for piece in files.stream(d):
            got += piece
        assert bytes(got) == data
    finally:
        files.read_ahead = old
        del files.store.get
    assert watch.count == f["chunk_count"]
    if budget == 1:
        assert watch.peak_count == 1
    else:
        # every chunk but the last is at least min_size: the budget admits at most this many
        assert 1 < watch.peak_count <= budget // ctx.settings.chunking.min_size + 1


def test_read_ahead_must_be_positive(ctx: Any) -> None:
    """A zero budget is refused at construction."""
    with pytest.raises(ValueError, match="read_ahead"):
        FileService(ctx.db, ctx.store, read_ahead=0)


async def _users(ctx: Any) -> list[Any]:
    from sqlalchemy import select

    from dfms.metadata.models import User

    async with ctx.db.read() as s:
        return list((await s.execute(select(User.id))).scalars())
