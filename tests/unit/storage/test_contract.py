"""The ChunkStore contract, run against every implementation in ``STORE_FACTORIES``."""

from __future__ import annotations

import asyncio
import hashlib
from typing import TYPE_CHECKING

import pytest

from dfms.errors import (
    ChunkCorrupt,
    ChunkHashMismatch,
    ChunkNotFound,
    StoreUnavailable,
    ValidationFailed,
)
from dfms.storage.base import ChunkStore

if TYPE_CHECKING:
    from conftest import MakeChunk, StoreCase


async def test_implements_the_protocol(store: ChunkStore) -> None:
    assert isinstance(store, ChunkStore)
    assert isinstance(store.name, str) and store.name


async def test_put_then_get_roundtrips(store: ChunkStore, make_chunk: MakeChunk) -> None:
    h, data = make_chunk(1)
    await store.put(h, data)
    assert await store.get(h) == data


async def test_put_and_get_of_a_large_chunk(store: ChunkStore, make_chunk: MakeChunk) -> None:
    h, data = make_chunk(2, size=3 * 1024 * 1024 + 17)  # hashed off the event loop
    await store.put(h, data)
    assert await store.get(h) == data


async def test_empty_chunk_roundtrips(store: ChunkStore) -> None:
    h = hashlib.sha256(b"").hexdigest()
    await store.put(h, b"")
    assert await store.get(h) == b""


@pytest.mark.parametrize("kind", [bytearray, memoryview])
async def test_put_accepts_bytearray_and_memoryview(
    store: ChunkStore, make_chunk: MakeChunk, kind: type
) -> None:
    h, data = make_chunk(3)
    await store.put(h, kind(bytearray(data)))
    got = await store.get(h)
    assert type(got) is bytes and got == data


async def test_put_keeps_a_snapshot_of_a_mutable_buffer(
    store: ChunkStore, make_chunk: MakeChunk
) -> None:
    h, data = make_chunk(4)
    buf = bytearray(data)
    await store.put(h, buf)
    buf[:] = b"\0" * len(buf)  # the caller reuses its buffer
    assert await store.get(h) == data


async def test_put_verifies_and_stores_nothing_on_mismatch(
    store: ChunkStore, make_chunk: MakeChunk
) -> None:
    h, data = make_chunk(5)
    with pytest.raises(ChunkHashMismatch):
        await store.put(h, data + b"x")
    assert await store.has([h]) == set()
    assert (await store.stat()).chunk_count == 0
    assert [info async for info in store.iterate()] == []


async def test_put_is_idempotent(store: ChunkStore, make_chunk: MakeChunk) -> None:
    h, data = make_chunk(6)
    await store.put(h, data)
    await store.put(h, data)
    assert await store.get(h) == data
    st = await store.stat()
    assert (st.chunk_count, st.used) == (1, len(data))


async def test_put_over_a_corrupt_copy_repairs_it(
    store_case: StoreCase, make_chunk: MakeChunk
) -> None:
    store = store_case.store
    h, data = make_chunk(7)
    await store.put(h, data)
    await store_case.corrupt(h)
    await store.put(h, data)
    assert await store.get(h) == data
    assert (await store.stat()).used == len(data)


async def test_get_missing_raises_chunk_not_found(store: ChunkStore, make_chunk: MakeChunk) -> None:
    with pytest.raises(ChunkNotFound):
        await store.get(make_chunk(8)[0])


async def test_get_corrupt_raises_chunk_corrupt(
    store_case: StoreCase, make_chunk: MakeChunk
) -> None:
    h, data = make_chunk(9)
    await store_case.store.put(h, data)
    await store_case.corrupt(h)
    with pytest.raises(ChunkCorrupt):
        await store_case.store.get(h)


async def test_has_answers_for_a_batch(store: ChunkStore, make_chunk: MakeChunk) -> None:
    chunks = [make_chunk(i) for i in range(10, 20)]
    for h, data in chunks[:6]:
        await store.put(h, data)
    hashes = [h for h, _ in chunks]
    assert await store.has(hashes) == set(hashes[:6])
    assert await store.has([]) == set()
    assert await store.has(hashes[:2] + hashes[:2]) == set(hashes[:2])


async def test_delete_batch_counts_removed_and_ignores_absent(
    store: ChunkStore, make_chunk: MakeChunk
) -> None:
    chunks = [make_chunk(i) for i in range(20, 25)]
    for h, data in chunks[:3]:
        await store.put(h, data)
    hashes = [h for h, _ in chunks]
    assert await store.delete(hashes) == 3
    assert await store.has(hashes) == set()
    assert await store.delete(hashes) == 0
    assert await store.delete([]) == 0
    with pytest.raises(ChunkNotFound):
        await store.get(hashes[0])
    st = await store.stat()
    assert (st.chunk_count, st.used) == (0, 0)


async def test_delete_of_a_repeated_id_counts_it_once(
    store: ChunkStore, make_chunk: MakeChunk
) -> None:
    h, data = make_chunk(25)
    await store.put(h, data)
    assert await store.delete([h, h]) == 1


async def test_iterate_yields_every_chunk_with_its_size(
    store: ChunkStore, make_chunk: MakeChunk
) -> None:
    chunks = {h: d for h, d in (make_chunk(i, size=100 + i) for i in range(30, 90))}
    for h, data in chunks.items():
        await store.put(h, data)
    seen = {info.hash: info async for info in store.iterate()}
    assert set(seen) == set(chunks)
    for h, info in seen.items():
        assert info.size == len(chunks[h])
        assert info.mtime > 0


async def test_stat_counts_chunks_and_bytes(store: ChunkStore, make_chunk: MakeChunk) -> None:
    empty = await store.stat()
    assert (empty.chunk_count, empty.used) == (0, 0)
    assert empty.capacity > 0 and 0 <= empty.free <= empty.capacity
    sizes = [100, 2000, 30000]
    chunks = [make_chunk(100 + i, size=s) for i, s in enumerate(sizes)]
    for h, data in chunks:
        await store.put(h, data)
    st = await store.stat()
    assert (st.chunk_count, st.used) == (3, sum(sizes))
    await store.delete([chunks[0][0]])
    st = await store.stat()
    assert (st.chunk_count, st.used) == (2, sum(sizes[1:]))


async def test_concurrent_puts_of_the_same_chunk(store: ChunkStore, make_chunk: MakeChunk) -> None:
    h, data = make_chunk(200, size=200_000)
    await asyncio.gather(*(store.put(h, data) for _ in range(12)))
    assert await store.get(h) == data
    st = await store.stat()
    assert (st.chunk_count, st.used) == (1, len(data))
    assert [info.hash async for info in store.iterate()] == [h]


async def test_concurrent_puts_of_different_chunks(
    store: ChunkStore, make_chunk: MakeChunk
) -> None:
    chunks = [make_chunk(300 + i) for i in range(40)]
    await asyncio.gather(*(store.put(h, d) for h, d in chunks))
    assert await store.has([h for h, _ in chunks]) == {h for h, _ in chunks}
    assert (await store.stat()).chunk_count == 40


async def test_sync_succeeds_and_keeps_data(store: ChunkStore, make_chunk: MakeChunk) -> None:
    h, data = make_chunk(400)
    await store.put(h, data)
    await store.sync()
    await store.sync()  # nothing pending
    assert await store.get(h) == data


@pytest.mark.parametrize(
    "bad",
    ["", "abc", "A" * 64, "g" * 64, "0" * 63, "0" * 65, "../" + "0" * 61, "0" * 62 + "/x"],
)
async def test_invalid_chunk_ids_are_rejected(store: ChunkStore, bad: str) -> None:
    with pytest.raises(ValidationFailed):
        await store.put(bad, b"data")
    with pytest.raises(ValidationFailed):
        await store.get(bad)
    with pytest.raises(ValidationFailed):
        await store.has([bad])
    with pytest.raises(ValidationFailed):
        await store.delete([bad])


async def test_closed_store_refuses_calls(store: ChunkStore, make_chunk: MakeChunk) -> None:
    h, data = make_chunk(500)
    await store.close()
    await store.close()  # idempotent
    with pytest.raises(StoreUnavailable):
        await store.put(h, data)
    with pytest.raises(StoreUnavailable):
        await store.get(h)
