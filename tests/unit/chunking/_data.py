"""Test data for the chunking tests: deterministic forever, independent of Python's ``random``."""

from __future__ import annotations

import hashlib
import random
from functools import lru_cache

from dfms.chunking import ChunkParams, cut_buffer

GOLDEN_SEED = b"dfms-chunking-golden-v1"

SMALL = {"min_size": 2048, "avg_size": 8192, "max_size": 32768}
TINY = {"min_size": 64, "avg_size": 256, "max_size": 1024}
ALGORITHMS = ("fastcdc", "rabin")


@lru_cache(maxsize=4)
def counter_bytes(seed: bytes, size: int) -> bytes:
    """``sha256(seed || i as 8-byte big-endian) for i = 0, 1, ...`` concatenated, cut to ``size``.

    Golden inputs come from here: SHA-256 never changes, so neither do they.
    """
    blocks = (size + 31) // 32
    sha = hashlib.sha256
    return b"".join([sha(seed + i.to_bytes(8, "big")).digest() for i in range(blocks)])[:size]


def random_bytes(size: int, seed: int) -> bytes:
    """Fast pseudo-random bytes for non-golden tests (reproducible within a Python version)."""
    return random.Random(seed).randbytes(size)


def boundaries(data: bytes, params: ChunkParams) -> list[tuple[int, int, str]]:
    """(offset, length, sha256) of every chunk of ``data`` cut in one piece."""
    return [(c.offset, c.length, c.sha256) for c in cut_buffer(data, params)]
