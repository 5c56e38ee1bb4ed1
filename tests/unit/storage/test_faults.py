"""FaultyStore: every injectable fault behaves as documented."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import pytest

from dfms.errors import ChunkNotFound, StoreUnavailable
from dfms.storage.faults import Fault, FaultyStore, flip
from dfms.storage.memory import MemoryStore

if TYPE_CHECKING:
    from conftest import MakeChunk


@pytest.fixture
def faulty() -> FaultyStore:
    return FaultyStore(MemoryStore("inner"), name="n1")


async def test_passes_through_and_counts_calls(faulty: FaultyStore, make_chunk: MakeChunk) -> None:
    h, data = make_chunk(1)
    await faulty.put(h, data)
    assert await faulty.get(h) == data
    assert faulty.calls["put"] == faulty.calls["get"] == 1
    assert faulty.name == "n1"
    assert FaultyStore(MemoryStore("x")).name == "x"
    assert "FaultyStore" in repr(faulty)


@pytest.mark.parametrize("op", ["put", "get", "has", "delete", "iterate", "stat", "sync"])
async def test_error_fault_raises_store_unavailable(
    faulty: FaultyStore, make_chunk: MakeChunk, op: str
) -> None:
    h, data = make_chunk(2)
    await faulty.inner.put(h, data)
    faulty.inject(op, Fault.ERROR)  # type: ignore[arg-type]
    calls = {
        "put": lambda: faulty.put(h, data),
        "get": lambda: faulty.get(h),
        "has": lambda: faulty.has([h]),
        "delete": lambda: faulty.delete([h]),
        "iterate": lambda: _drain(faulty),
        "stat": lambda: faulty.stat(),
        "sync": lambda: faulty.sync(),
    }
    with pytest.raises(StoreUnavailable) as info:
        await calls[op]()
    assert info.value.details["errno"] == "EIO"
    assert faulty.fired[(op, Fault.ERROR)] == 1
    assert await faulty.inner.has([h]) == {h}  # nothing reached the inner store


async def _drain(store: FaultyStore) -> list[str]:
    return [i.hash async for i in store.iterate()]


async def test_corrupt_get_returns_flipped_bytes(
    faulty: FaultyStore, make_chunk: MakeChunk
) -> None:
    h, data = make_chunk(3)
    await faulty.put(h, data)
    faulty.inject("get", Fault.CORRUPT)
    got = await faulty.get(h)
    assert got != data and len(got) == len(data)
    assert sum(a != b for a, b in zip(got, data, strict=True)) == 1
    assert flip(b"") == b"\x00"


async def test_missing_faults(faulty: FaultyStore, make_chunk: MakeChunk) -> None:
    h, data = make_chunk(4)
    await faulty.put(h, data)
    faulty.inject("get", Fault.MISSING)
    faulty.inject("has", Fault.MISSING)
    faulty.inject("iterate", Fault.MISSING)
    with pytest.raises(ChunkNotFound):
        await faulty.get(h)
    assert await faulty.has([h]) == set()
    assert await _drain(faulty) == []


async def test_drop_acknowledges_without_storing(
    faulty: FaultyStore, make_chunk: MakeChunk
) -> None:
    h, data = make_chunk(5)
    faulty.inject("put", Fault.DROP)
    await faulty.put(h, data)
    assert await faulty.inner.has([h]) == set()


async def test_hang_waits_until_cancelled_or_released(
    faulty: FaultyStore, make_chunk: MakeChunk
) -> None:
    h, data = make_chunk(6)
    await faulty.put(h, data)
    faulty.inject("get", Fault.HANG)
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.05):
            await faulty.get(h)
    task = asyncio.create_task(faulty.get(h))
    await asyncio.sleep(0)  # let it start hanging
    assert not task.done()
    faulty.release()
    assert await task == data
    faulty.inject("put", Fault.HANG)  # a new hang after a release hangs again
    task2 = asyncio.create_task(faulty.put(h, data))
    await asyncio.sleep(0)
    assert not task2.done()
    await faulty.close()  # close releases hanging calls
    with pytest.raises(StoreUnavailable):  # ... which then reach the closed inner store
        await task2


async def test_only_restricts_a_fault_to_some_chunks(
    faulty: FaultyStore, make_chunk: MakeChunk
) -> None:
    (h1, d1), (h2, d2) = make_chunk(7), make_chunk(8)
    await faulty.put(h1, d1)
    await faulty.put(h2, d2)
    faulty.inject("get", Fault.CORRUPT, only=[h1])
    faulty.inject("has", Fault.MISSING, only=[h1])
    assert await faulty.get(h1) != d1
    assert await faulty.get(h2) == d2
    assert await faulty.has([h1, h2]) == {h2}
    assert await faulty.has([h2]) == {h2}


async def test_times_limits_how_often_a_fault_fires(
    faulty: FaultyStore, make_chunk: MakeChunk
) -> None:
    h, data = make_chunk(9)
    faulty.inject("put", Fault.ERROR, times=2)
    for _ in range(2):
        with pytest.raises(StoreUnavailable):
            await faulty.put(h, data)
    await faulty.put(h, data)
    assert faulty.fault_of("put") is None
    assert await faulty.get(h) == data


async def test_all_applies_a_fault_to_every_operation_that_supports_it(
    faulty: FaultyStore, make_chunk: MakeChunk
) -> None:
    faulty.inject("all", Fault.ERROR)
    for op in ("put", "get", "has", "delete", "iterate", "stat", "sync"):
        assert faulty.fault_of(op) is Fault.ERROR  # type: ignore[arg-type]
    faulty.clear("get")
    assert faulty.fault_of("get") is None
    faulty.clear()
    assert faulty.fault_of("put") is None
    faulty.inject("all", Fault.CORRUPT)
    assert faulty.fault_of("get") is Fault.CORRUPT
    assert faulty.fault_of("put") is None


@pytest.mark.parametrize(
    ("op", "fault", "kwargs"),
    [
        ("put", Fault.CORRUPT, {}),
        ("get", Fault.DROP, {}),
        ("stat", Fault.MISSING, {}),
        ("nope", Fault.ERROR, {}),
        ("get", Fault.ERROR, {"times": 0}),
    ],
)
def test_unsupported_injections_are_rejected(
    faulty: FaultyStore, op: str, fault: Fault, kwargs: dict[str, int]
) -> None:
    with pytest.raises(ValueError):
        faulty.inject(op, fault, **kwargs)  # type: ignore[arg-type]
