"""Synchronous front-end: chunk a binary file object."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

from dfms.chunking.core import Chunk, make_chunker
from dfms.chunking.params import ChunkParams

DEFAULT_BLOCK_SIZE = 1 << 20


class BinaryReader(Protocol):
    """Anything with ``read(n) -> bytes`` (an ``open(..., "rb")`` file, ``io.BytesIO``, ...)."""

    def read(self, size: int = ..., /) -> bytes: ...


def iter_file_chunks(
    fileobj: BinaryReader,
    params: ChunkParams | None = None,
    block_size: int = DEFAULT_BLOCK_SIZE,
) -> Iterator[Chunk]:
    """Read ``fileobj`` to its end in ``block_size`` reads and yield its hashed chunks in order.

    Holds at most ``params.max_size + block_size`` bytes of input at once (plus the chunks the
    caller still references).
    """
    if block_size <= 0:
        raise ValueError(f"block_size={block_size} must be positive")
    chunker = make_chunker(params)
    while True:
        block = fileobj.read(block_size)
        if not block:
            break
        yield from chunker.feed(block)
    yield from chunker.finish()
