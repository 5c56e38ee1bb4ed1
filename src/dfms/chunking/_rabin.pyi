"""Typing stub of the native Rabin chunker (``_rabin.c``)."""

from typing_extensions import Buffer as _Buffer

POLYNOMIAL: int
POLYNOMIAL_DEGREE: int
WINDOW_SIZE: int
MIN_SIZE_LOWER_BOUND: int

def find_cuts(
    buf: _Buffer, min_size: int, avg_size: int, max_size: int, final: bool = False
) -> list[int]:
    """Lengths of the consecutive content-defined chunks starting at ``buf[0]``."""

def fingerprint(buf: _Buffer) -> int:
    """Rabin fingerprint of all of ``buf`` modulo ``POLYNOMIAL``."""
