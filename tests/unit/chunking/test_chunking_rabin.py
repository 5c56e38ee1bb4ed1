"""The native Rabin chunker: fixed polynomial, correct fingerprints, cuts equal to a slow
reference implementation of the documented rule."""

from __future__ import annotations

import array
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dfms.chunking import _rabin
from dfms.chunking.rabin import POLYNOMIAL, WINDOW_SIZE

from ._data import random_bytes


def _deg(x: int) -> int:
    return x.bit_length() - 1


def _pmod(x: int, p: int) -> int:
    """x mod p for polynomials over GF(2) encoded as ints."""
    dp = _deg(p)
    while _deg(x) >= dp:
        x ^= p << (_deg(x) - dp)
    return x


def _mulmod(a: int, b: int, p: int) -> int:
    result = 0
    a = _pmod(a, p)
    while b:
        if b & 1:
            result ^= a
        b >>= 1
        a = _pmod(a << 1, p)
    return result


def _gcd(a: int, b: int) -> int:
    while b:
        a, b = b, _pmod(a, b)
    return a


def _is_prime(n: int) -> bool:
    return n > 1 and all(n % d for d in range(2, int(n**0.5) + 1))


def _is_irreducible(p: int) -> bool:
    """Rabin's irreducibility test over GF(2)."""
    n = _deg(p)

    def x_pow_2k(k: int) -> int:  # x^(2^k) mod p
        value = 2
        for _ in range(k):
            value = _mulmod(value, value, p)
        return value

    if x_pow_2k(n) != 2:
        return False
    for q in (q for q in range(2, n + 1) if n % q == 0 and _is_prime(q)):
        if _gcd(p, x_pow_2k(n // q) ^ 2) != 1:
            return False
    return True


def reference_cuts(
    buf: bytes, min_size: int, avg_size: int, max_size: int, final: bool
) -> list[int]:
    """The documented rule, slowly: skip min_size - 64, cut at the first chunk length n >= min_size
    whose 64-byte window fingerprint has its low floor(log2(avg)) bits zero, else at max_size."""
    mask = (1 << (avg_size.bit_length() - 1)) - 1
    lengths: list[int] = []
    start = 0
    while len(buf) - start >= min_size:
        limit = min(len(buf) - start, max_size)
        cut = None
        for n in range(min_size, limit + 1):
            end = start + n
            if _rabin.fingerprint(buf[end - WINDOW_SIZE : end]) & mask == 0:
                cut = n
                break
        if cut is None:
            if limit < max_size:
                break
            cut = max_size
        lengths.append(cut)
        start += cut
    if final and start < len(buf):
        lengths.append(len(buf) - start)
    return lengths


def test_polynomial_is_the_documented_irreducible_degree_53_constant() -> None:
    """The one fixed polynomial is 0x3DA3358B4DC173, of degree 53, and irreducible over GF(2)."""
    assert POLYNOMIAL == 0x3DA3358B4DC173
    assert _rabin.POLYNOMIAL_DEGREE == _deg(POLYNOMIAL) == 53
    assert WINDOW_SIZE == 64
    assert _is_irreducible(POLYNOMIAL)


def test_irreducibility_check_rejects_a_reducible_polynomial() -> None:
    """The irreducibility check itself works: (x^2+x+1)^2 and x^53+x are rejected."""
    assert _is_irreducible(0b111)
    assert not _is_irreducible(_mulmod(0b111, 0b111, 1 << 10))
    assert not _is_irreducible((1 << 53) | 2)


@given(st.binary(max_size=200))
@settings(max_examples=200, deadline=None)
def test_fingerprint_is_the_bytes_as_a_polynomial_mod_p(data: bytes) -> None:
    """fingerprint(b) == int(b, big-endian) mod P, computed independently with plain ints."""
    assert _rabin.fingerprint(data) == _pmod(int.from_bytes(data, "big"), POLYNOMIAL)


@pytest.mark.parametrize(
    ("name", "data", "params"),
    [
        ("random tiny params", random_bytes(60_000, 1), (64, 256, 1024)),
        ("random min>window", random_bytes(60_000, 2), (100, 512, 4096)),
        # avg 8 KiB: hits land in all four scan lanes, often beyond lane 0
        ("random lanes, frequent hits", random_bytes(300_000, 3), (64, 8192, 65536)),
        # avg 64 KiB: many whole 16 KiB lane groups without a hit, forced cuts too
        ("random lanes, rare hits", random_bytes(300_000, 4), (1024, 65536, 100_000)),
        ("zeros", bytes(20_000), (64, 256, 1024)),
        ("repeating pattern", bytes(range(256)) * 300, (64, 1024, 4096)),
    ],
)
@pytest.mark.parametrize("final", [True, False])
def test_find_cuts_matches_the_slow_reference(
    name: str, data: bytes, params: tuple[int, int, int], final: bool
) -> None:
    """The fast multi-lane scan cuts exactly where the straightforward definition does."""
    expected = reference_cuts(data, *params, final)
    assert _rabin.find_cuts(data, *params, final) == expected, name
    if final:
        assert sum(expected) == len(data)


def test_find_cuts_accepts_any_buffer_and_keywords() -> None:
    """bytes, bytearray, memoryview and array buffers all cut the same; keywords work."""
    data = random_bytes(50_000, 5)
    expected = _rabin.find_cuts(data, 64, 1024, 4096, True)
    for buf in (bytearray(data), memoryview(data), array.array("B", data)):
        assert _rabin.find_cuts(buf, 64, 1024, 4096, True) == expected
    assert (
        _rabin.find_cuts(buf=data, min_size=64, avg_size=1024, max_size=4096, final=True)
        == expected
    )


def test_find_cuts_without_final_keeps_the_undecided_tail() -> None:
    """Without final, the trailing undecided bytes are not returned; with it they are."""
    data = random_bytes(10_000, 6)
    decided = _rabin.find_cuts(data, 64, 4096, 8192, False)
    everything = _rabin.find_cuts(data, 64, 4096, 8192, True)
    assert everything[: len(decided)] == decided
    assert sum(everything) == len(data)
    assert sum(decided) < len(data)
    assert _rabin.find_cuts(b"", 64, 256, 1024, True) == []
    assert _rabin.find_cuts(b"x" * 10, 64, 256, 1024, False) == []
    assert _rabin.find_cuts(b"x" * 10, 64, 256, 1024, True) == [10]


@pytest.mark.parametrize(
    "params", [(63, 256, 1024), (256, 256, 1024), (64, 1024, 1024), (64, 2048, 1024)]
)
def test_find_cuts_rejects_inconsistent_sizes(params: tuple[int, int, int]) -> None:
    """min < 64, or not min < avg < max, is a ValueError, not a crash."""
    with pytest.raises(ValueError, match="min_size"):
        _rabin.find_cuts(b"abc", *params, True)


def test_find_cuts_rejects_non_buffers() -> None:
    """A str is not bytes: TypeError."""
    with pytest.raises(TypeError):
        _rabin.find_cuts("text", 64, 256, 1024, True)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        _rabin.fingerprint("text")  # type: ignore[arg-type]


def test_cut_points_depend_only_on_local_content() -> None:
    """Rabin cut points re-synchronise after an edit: the chunks after it are shared."""
    rng = random.Random(7)
    data = bytearray(random_bytes(400_000, 7))
    edited = bytearray(data)
    edited[1000:1000] = bytes(rng.randrange(256) for _ in range(3))
    a = _rabin.find_cuts(bytes(data), 64, 4096, 16384, True)
    b = _rabin.find_cuts(bytes(edited), 64, 4096, 16384, True)
    ends_a = {sum(a[: i + 1]) for i in range(len(a))}
    ends_b = {sum(b[: i + 1]) - 3 for i in range(len(b))}
    assert len(ends_a & ends_b) >= 0.9 * len(ends_a)
