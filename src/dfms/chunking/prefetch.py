"""Read an async byte stream ahead of its consumer, within a byte budget.

The chunking pipeline is pulled by its consumer; while the consumer awaits something else (a
dedup lookup, a store write, a cut finishing in a thread) nobody would read the request body, and
the server would stop receiving. :func:`prefetch` runs the reading in its own task so receiving,
cutting and hashing overlap, holding at most about ``max_bytes`` of unread pieces.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterable, Callable
from typing import Final, TypeVar

B = TypeVar("B", bytes, bytearray, memoryview)
T = TypeVar("T")

_END: Final = object()


def _size(item: bytes | bytearray | memoryview) -> int:
    return item.nbytes if isinstance(item, memoryview) else len(item)


async def prefetch(source: AsyncIterable[B], max_bytes: int = 8 << 20) -> AsyncGenerator[B]:
    """Yield ``source``'s byte pieces in order, read ahead by a background task while at most
    about ``max_bytes`` are waiting.

    An error raised by ``source`` is raised here, after the items read before it. Closing this
    generator (or cancelling its consumer) cancels the reader.
    """
    if max_bytes < 1:
        raise ValueError("max_bytes must be positive")
    async for item in _ahead(source, _size, max_bytes):
        yield item


async def read_ahead(source: AsyncIterable[T], max_items: int) -> AsyncGenerator[T]:
    """Like :func:`prefetch` for any items: at most ``max_items`` wait for the consumer.

    The upload path runs the chunking pipeline through this, so cutting and hashing go on while
    the consumer awaits a dedup lookup or a store write.
    """
    if max_items < 1:
        raise ValueError("max_items must be positive")
    async for item in _ahead(source, lambda _item: 1, max_items):
        yield item


async def _ahead(
    source: AsyncIterable[T], weight: Callable[[T], int], budget_total: int
) -> AsyncGenerator[T]:
    queue: asyncio.Queue[object] = asyncio.Queue()
    space = asyncio.Event()
    budget = [budget_total]  # weight the reader may still queue
    failure: list[BaseException] = []

    async def reader() -> None:
        try:
            async for item in source:
                size = weight(item)
                while budget[0] < size and queue.qsize() > 0:
                    space.clear()
                    await space.wait()
                budget[0] -= size
                queue.put_nowait(item)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, which re-raises it
            failure.append(exc)
        queue.put_nowait(_END)

    task = asyncio.create_task(reader())
    try:
        while True:
            item = await queue.get()
            if item is _END:
                if failure:
                    raise failure[0]
                return
            budget[0] += weight(item)  # type: ignore[arg-type]
            space.set()
            yield item  # type: ignore[misc]
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
