"""Rabin-fingerprint chunking through the native ``dfms.chunking._rabin`` extension.

Fixed forever (DESIGN.md invariant 5): the irreducible polynomial ``0x3DA3358B4DC173`` (degree 53)
over a 64-byte rolling window; the extension computes its tables from that constant at import.
A chunk starting at ``s`` skips its first ``min_size - 64`` bytes, then is cut after the first byte
``p`` (chunk length ``>= min_size``) whose window fingerprint has its low
``floor(log2(avg_size))`` bits all zero, or at ``max_size``. See ``_rabin.c`` for details.
"""

from __future__ import annotations

from dfms.chunking import _rabin
from dfms.chunking.core import BytesLike
from dfms.chunking.params import ChunkParams

POLYNOMIAL: int = _rabin.POLYNOMIAL
WINDOW_SIZE: int = _rabin.WINDOW_SIZE


class RabinCutter:
    """Cuts windows with the native Rabin chunker (which releases the GIL while scanning)."""

    __slots__ = ("_avg", "_max", "_min")

    def __init__(self, params: ChunkParams) -> None:
        self._min = params.min_size
        self._avg = params.avg_size
        self._max = params.max_size

    def cut(self, window: BytesLike, final: bool) -> list[int]:
        """Lengths of the decided chunks from ``window[0]`` (plus the tail when ``final``)."""
        return _rabin.find_cuts(window, self._min, self._avg, self._max, final)
