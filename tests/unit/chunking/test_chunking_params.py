"""ChunkParams validation: every bad value is a ValidationFailed naming the field and value."""

from __future__ import annotations

from typing import Any

import pytest

from dfms.chunking import ChunkParams
from dfms.errors import ValidationFailed


def test_defaults_are_fastcdc_256k_1m_4m() -> None:
    """The default parameters are FastCDC with 256 KiB / 1 MiB / 4 MiB."""
    p = ChunkParams()
    assert (p.algorithm, p.min_size, p.avg_size, p.max_size) == (
        "fastcdc",
        256 * 1024,
        1024 * 1024,
        4 * 1024 * 1024,
    )


def test_params_are_immutable_and_hashable() -> None:
    """ChunkParams is a frozen value: equal params compare and hash equal."""
    assert ChunkParams("rabin", 64, 256, 1024) == ChunkParams("rabin", 64, 256, 1024)
    assert len({ChunkParams(), ChunkParams()}) == 1
    with pytest.raises(AttributeError):
        ChunkParams().min_size = 1  # type: ignore[misc]


@pytest.mark.parametrize(
    ("kwargs", "field", "fragment"),
    [
        ({"algorithm": "buzhash"}, "algorithm", "algorithm='buzhash'"),
        ({"algorithm": 3}, "algorithm", "algorithm=3"),
        ({"min_size": 63}, "min_size", "min_size=63"),
        ({"min_size": 2_000_000}, "min_size", "min_size=2000000"),
        ({"avg_size": 255, "min_size": 64}, "avg_size", "avg_size=255"),
        ({"avg_size": 5 << 20, "max_size": 16 << 20}, "avg_size", "avg_size=5242880"),
        ({"avg_size": 5 << 20}, "max_size", "max_size=4194304 must be larger"),
        ({"max_size": 1023, "min_size": 64, "avg_size": 256}, "max_size", "max_size=1023"),
        ({"max_size": 17 << 20}, "max_size", "max_size=17825792"),
        ({"min_size": 1 << 20}, "min_size", "min_size=1048576 must be smaller than avg_size"),
        ({"avg_size": 4 << 20}, "max_size", "max_size=4194304 must be larger than avg_size"),
        ({"min_size": "256K"}, "min_size", "min_size='256K' must be an integer"),
        ({"avg_size": 1.5e6}, "avg_size", "avg_size=1500000.0 must be an integer"),
        ({"max_size": True}, "max_size", "max_size=True must be an integer"),
    ],
)
def test_invalid_params_raise_validation_failed_naming_field_and_value(
    kwargs: dict[str, Any], field: str, fragment: str
) -> None:
    """Unknown algorithm, non-integers, out-of-range sizes and min<avg<max violations are
    ValidationFailed (HTTP 400) with a message naming the field and the bad value."""
    with pytest.raises(ValidationFailed) as info:
        ChunkParams(**kwargs)
    assert fragment in info.value.message
    assert field in info.value.message
    assert info.value.details["field"] == field
    assert info.value.code == "VALIDATION_FAILED"
    assert info.value.status == 400


def test_example_message_from_the_spec() -> None:
    """min_size above avg_size reads 'chunking min_size=... must be smaller than avg_size=...';
    an out-of-range value names its bounds."""
    with pytest.raises(
        ValidationFailed,
        match=r"^chunking min_size=2000000 must be smaller than avg_size=1048576$",
    ):
        ChunkParams(min_size=2_000_000)
    with pytest.raises(
        ValidationFailed, match=r"^chunking min_size=2000000 must be within \[64, 1048576\]$"
    ):
        ChunkParams(min_size=2_000_000, avg_size=4_000_000, max_size=8_000_000)


def test_bounds_accept_the_extremes_for_both_algorithms() -> None:
    """The extreme accepted values construct, and both algorithms can chunk with them."""
    from dfms.chunking import cut_buffer

    for algorithm in ("fastcdc", "rabin"):
        low = ChunkParams(algorithm, 64, 256, 1024)  # type: ignore[arg-type]
        high = ChunkParams(algorithm, 1 << 20, 4 << 20, 16 << 20)  # type: ignore[arg-type]
        for params in (low, high):
            chunks = cut_buffer(bytes(range(256)) * 40, params)
            assert sum(c.length for c in chunks) == 10240
