"""Chunking parameters: which content-defined chunker and its size bounds.

Chunk boundaries are a pure function of the bytes and these parameters (DESIGN.md invariant 5), so
a ``ChunkParams`` value is part of a deployment's identity: changing it stops new uploads from
deduplicating against chunks cut with the old one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

from dfms.errors import ValidationFailed

Algorithm = Literal["fastcdc", "rabin"]

ALGORITHMS: Final[tuple[str, ...]] = ("fastcdc", "rabin")

KIB: Final = 1024
MIB: Final = 1024 * 1024

#: Inclusive bounds per field. They are pyfastcdc's (FastCDC 2020) limits; the Rabin chunker uses
#: the same ones so either algorithm can be chosen with the same settings. ``min_size >= 64`` is
#: also the Rabin window.
BOUNDS: Final[dict[str, tuple[int, int]]] = {
    "min_size": (64, 1 * MIB),
    "avg_size": (256, 4 * MIB),
    "max_size": (1 * KIB, 16 * MIB),
}


@dataclass(frozen=True, slots=True)
class ChunkParams:
    """Content-defined chunking configuration; validated on construction.

    Raises :class:`dfms.errors.ValidationFailed` naming the bad field and value.
    """

    algorithm: Algorithm = "fastcdc"
    min_size: int = 256 * KIB
    avg_size: int = 1 * MIB
    max_size: int = 4 * MIB

    def __post_init__(self) -> None:
        if not isinstance(self.algorithm, str) or self.algorithm not in ALGORITHMS:
            raise ValidationFailed(
                f"chunking algorithm={self.algorithm!r} is unknown; expected one of "
                + ", ".join(ALGORITHMS),
                field="algorithm",
                value=self.algorithm,
            )
        for name in ("min_size", "avg_size", "max_size"):
            value = getattr(self, name)
            # bool is an int subclass, but True as a size is a bug, not a size
            if not isinstance(value, int) or isinstance(value, bool):
                raise ValidationFailed(
                    f"chunking {name}={value!r} must be an integer",
                    field=name,
                    value=value,
                )
        if self.min_size >= self.avg_size:
            raise ValidationFailed(
                f"chunking min_size={self.min_size} must be smaller than avg_size={self.avg_size}",
                field="min_size",
                value=self.min_size,
            )
        if self.avg_size >= self.max_size:
            raise ValidationFailed(
                f"chunking max_size={self.max_size} must be larger than avg_size={self.avg_size}",
                field="max_size",
                value=self.max_size,
            )
        for name in ("min_size", "avg_size", "max_size"):
            value = getattr(self, name)
            low, high = BOUNDS[name]
            if not low <= value <= high:
                raise ValidationFailed(
                    f"chunking {name}={value} must be within [{low}, {high}]",
                    field=name,
                    value=value,
                )
