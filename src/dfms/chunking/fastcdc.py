"""FastCDC (the 2020 paper's algorithm) through pyfastcdc's Cython implementation.

Fixed forever (DESIGN.md invariant 5): normalized chunking level 1 and ``seed=0``, i.e. pyfastcdc's
default gear table, the 256 64-bit constants of the paper's reference implementation (destor's
``fastcdc_chunking.c``), also used by fastcdc-rs. The masks come from ``round(log2(avg_size))``.

pyfastcdc detail worth knowing: a chunk cut by the gear hash ends at the matching position
itself, and scanning starts at ``min_size`` rounded down to even, so with an odd ``min_size`` a
chunk can be ``min_size - 1`` bytes long. The expected chunk size is about ``min_size + avg_size``
(cut-point skipping).
"""

from __future__ import annotations

from typing import Final, Literal

from pyfastcdc import FastCDC

from dfms.chunking.core import BytesLike
from dfms.chunking.params import ChunkParams

#: normalized chunking level used by every DFMS deployment; never change it
NORMALIZED_CHUNKING: Final[Literal[1]] = 1
#: gear table seed; 0 selects the reference gear table; never change it
GEAR_SEED: Final = 0


class FastCDCCutter:
    """Cuts windows with FastCDC 2020. pyfastcdc releases the GIL while it scans for a cut."""

    __slots__ = ("_cdc",)

    def __init__(self, params: ChunkParams) -> None:
        self._cdc = FastCDC(
            params.avg_size,
            min_size=params.min_size,
            max_size=params.max_size,
            normalized_chunking=NORMALIZED_CHUNKING,
            seed=GEAR_SEED,
        )

    def cut(self, window: BytesLike, final: bool) -> list[int]:
        """Chunk lengths from ``window[0]``; without ``final`` the last (maybe truncated) one is
        dropped. Every other chunk's end was found inside the window (pyfastcdc scans a chunk
        only up to ``min(max_size, bytes left)`` and takes the first match), so it is final."""
        lengths = [chunk.length for chunk in self._cdc.cut_buf(window)]
        if not final and lengths:
            lengths.pop()
        return lengths
