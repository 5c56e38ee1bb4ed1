"""Synchronous front-end: chunk a binary file object (cut in one thread, hashed in the caller's)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

from dfms.chunking.core import Chunk
from dfms.chunking.parallel import hashed_in_order, reader_spans
from dfms.chunking.params import ChunkParams

DEFAULT_BLOCK_SIZE = 4 << 20


class BinaryReader(Protocol):
    """Anything with ``read(n) -> bytes`` (an ``open(..., "rb")`` file, ``io.BytesIO``, ...)."""

    def read(self, size: int = ..., /) -> bytes: ...


def iter_file_chunks(
    fileobj: BinaryReader,
    params: ChunkParams | None = None,
    block_size: int = DEFAULT_BLOCK_SIZE,
) -> Iterator[Chunk]:
    """Read ``fileobj`` to its end in ``block_size`` reads and yield its hashed chunks in order.

    A producer thread reads and cuts while this thread hashes (see :mod:`dfms.chunking.parallel`).
    Holds at most ``params.max_size + block_size`` bytes of input being cut, plus the chunks cut
    ahead of the hashing (``SPAN_LOOKAHEAD``) and those the caller still references.
    """
    if block_size <= 0:
        raise ValueError(f"block_size={block_size} must be positive")
    return hashed_in_order(lambda: reader_spans(fileobj.read, params, block_size))
