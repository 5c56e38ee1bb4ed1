"""Read an async byte stream ahead of its consumer, within a byte budget.

The chunking pipeline is pulled by its consumer; while the consumer awaits something else (a
dedup lookup, a store write, a cut finishing in a thread) nobody would read the request body, and
the server would stop receiving. :func:`prefetch` runs the reading in its own task so receiving,
cutting and hashing overlap, holding at most about ``max_bytes`` of unread pieces.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterable
from typing import Final, TypeVar

B = TypeVar("B", bytes, bytearray, memoryview)

_END: Final = object()


def _size(item: bytes | bytearray | memoryview) -> int:
    return item.nbytes if isinstance(item, memoryview) else len(item)


async def prefetch(source: AsyncIterable[B], max_bytes: int = 8 << 20) -> AsyncGenerator[B]:
    """Yield ``source``'s items in order, read ahead by a background task.

    An error raised by ``source`` is raised here, after the items read before it. Closing this
    generator (or cancelling its consumer) cancels the reader.
    """
    if max_bytes < 1:
        raise ValueError("max_bytes must be positive")
    queue: asyncio.Queue[object] = asyncio.Queue()
    space = asyncio.Event()
    budget = [max_bytes]  # bytes the reader may still queue
    failure: list[BaseException] = []

    async def reader() -> None:
        try:
            async for item in source:
                size = _size(item)
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
            assert isinstance(item, (bytes, bytearray, memoryview))
            budget[0] += _size(item)
            space.set()
            yield item  # type: ignore[misc]
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
