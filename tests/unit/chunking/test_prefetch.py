"""prefetch(): read-ahead of an async byte stream within a byte budget."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from dfms.chunking.prefetch import prefetch


async def test_items_arrive_in_order() -> None:
    """Every item comes through, in order, whatever the budget."""

    async def src() -> AsyncIterator[bytes]:
        for i in range(50):
            yield bytes([i]) * (i + 1)

    for budget in (1, 10, 1 << 20):
        got = [x async for x in prefetch(src(), budget)]
        assert got == [bytes([i]) * (i + 1) for i in range(50)]


async def test_reads_ahead_but_within_budget() -> None:
    """The reader runs ahead of a stalled consumer, but never queues more than the budget
    (beyond a single item larger than it)."""
    read = 0

    async def src() -> AsyncIterator[memoryview]:
        nonlocal read
        for _ in range(100):
            read += 1000
            yield memoryview(b"x" * 1000)

    gen = prefetch(src(), 5000)
    first = await anext(gen)
    assert first.nbytes == 1000
    # Let the reader run as far as the budget allows: poll until it stops advancing.
    last = -1
    for _ in range(1000):
        if read == last:
            break
        last = read
        await asyncio.sleep(0)
    assert 1000 < read <= 1000 + 5000 + 1000
    rest = [x async for x in gen]
    assert len(rest) == 99


async def test_error_is_raised_after_earlier_items() -> None:
    """An error from the source reaches the consumer after the items read before it."""

    async def src() -> AsyncIterator[bytes]:
        yield b"a"
        yield b"b"
        raise OSError("boom")

    got = []
    with pytest.raises(OSError, match="boom"):
        async for x in prefetch(src()):
            got.append(x)
    assert got == [b"a", b"b"]


async def test_closing_cancels_the_reader() -> None:
    """Closing the generator early stops the background reader."""
    stopped = asyncio.Event()

    async def src() -> AsyncIterator[bytes]:
        try:
            while True:
                yield b"x" * 100
        finally:
            stopped.set()

    gen = prefetch(src(), 1000)
    await anext(gen)
    await gen.aclose()
    await asyncio.wait_for(stopped.wait(), 5)
    assert stopped.is_set()


def test_budget_must_be_positive() -> None:
    """A zero budget is a programming error."""

    async def run() -> None:
        async def src() -> AsyncIterator[bytes]:
            yield b""

        with pytest.raises(ValueError):
            await anext(prefetch(src(), 0))

    asyncio.run(run())


async def test_read_ahead_bounds_items_and_keeps_order() -> None:
    """read_ahead() runs a source ahead of its consumer by at most max_items, in order."""
    from dfms.chunking.prefetch import read_ahead

    produced = 0

    async def src() -> AsyncIterator[int]:
        nonlocal produced
        for i in range(30):
            produced += 1
            yield i

    gen = read_ahead(src(), 3)
    assert await anext(gen) == 0
    last = -1
    for _ in range(1000):
        if produced == last:
            break
        last = produced
        await asyncio.sleep(0)
    assert produced <= 1 + 3 + 1
    assert [x async for x in gen] == list(range(1, 30))
    with pytest.raises(ValueError):
        await anext(read_ahead(src(), 0))
