"""Golden tests: chunk boundaries pinned forever (DESIGN.md invariant 5).

Future optimisations must not change this: the expected values in ``golden/chunks.json`` are the
cut points (offset, length, sha256) of fixed inputs. If one of these tests fails, the change made
new uploads stop deduplicating against everything already stored: revert it, do not regenerate.
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path
from typing import Any

import pytest
from pyfastcdc import FastCDC

from dfms.chunking import ChunkParams, iter_file_chunks

from ._data import GOLDEN_SEED, counter_bytes

GOLDEN = json.loads((Path(__file__).parent / "golden" / "chunks.json").read_text())
CASES: list[dict[str, Any]] = GOLDEN["cases"]


def _input(case: dict[str, Any]) -> bytes:
    spec = case["input"]
    if spec["generator"] == "zeros":
        return bytes(spec["size"])
    assert spec["seed"] == GOLDEN_SEED.decode()
    return counter_bytes(GOLDEN_SEED, spec["size"])


def test_golden_inputs_are_the_pinned_bytes() -> None:
    """The SHA-256 counter-mode generator still produces exactly the pinned inputs."""
    for case in CASES:
        assert hashlib.sha256(_input(case)).hexdigest() == case["input"]["sha256"], case["name"]


def test_golden_covers_both_algorithms_with_default_and_small_params() -> None:
    """The golden set pins both algorithms, with default params on ~24 MiB and with small params."""
    seen = {(c["params"]["algorithm"], c["input"]["size"]) for c in CASES}
    for algorithm in ("fastcdc", "rabin"):
        assert (algorithm, 24 << 20) in seen
        assert any(alg == algorithm and size < (1 << 20) for alg, size in seen)
    defaults = ChunkParams()
    for case in CASES:
        if case["input"]["size"] == 24 << 20:
            assert case["params"]["min_size"] == defaults.min_size
            assert case["params"]["avg_size"] == defaults.avg_size
            assert case["params"]["max_size"] == defaults.max_size


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_chunk_boundaries_match_the_golden_list(case: dict[str, Any]) -> None:
    """Streaming the pinned input gives exactly the pinned (offset, length, sha256) list."""
    params = ChunkParams(**case["params"])
    data = _input(case)
    got = [[c.offset, c.length, c.sha256] for c in iter_file_chunks(io.BytesIO(data), params)]
    assert got == case["chunks"]


@pytest.mark.parametrize(
    "case",
    [c for c in CASES if c["params"]["algorithm"] == "fastcdc"],
    ids=lambda c: c["name"],
)
def test_fastcdc_golden_equals_plain_pyfastcdc_on_the_whole_buffer(case: dict[str, Any]) -> None:
    """FastCDC boundaries are pyfastcdc's own (NC 1, seed 0) on the whole buffer at once."""
    p = case["params"]
    cdc = FastCDC(
        p["avg_size"],
        min_size=p["min_size"],
        max_size=p["max_size"],
        normalized_chunking=1,
        seed=0,
    )
    expected = [[c.offset, c.length] for c in cdc.cut_buf(_input(case))]
    assert [chunk[:2] for chunk in case["chunks"]] == expected


#: SHA-256 of pyfastcdc's default (seed 0) gear table, 256 little-endian uint64 values, the table
#: of the FastCDC paper's reference implementation. Future optimisations must not change this.
GEAR_TABLE_SHA256 = "91a3061015ae351cd3701852712bcd6aa4a1ce26c8a231d3969432b00f028f88"


def test_fastcdc_gear_table_is_the_pinned_reference_table() -> None:
    """The gear table FastCDC uses (seed 0) is byte-for-byte the pinned one, and the compiled
    chunker cuts exactly like pyfastcdc's pure-Python one that exposes that table."""
    import struct

    from pyfastcdc.py import FastCDC as PyFastCDC
    from pyfastcdc.py.constants import GEAR

    assert hashlib.sha256(struct.pack("<256Q", *GEAR)).hexdigest() == GEAR_TABLE_SHA256
    assert GEAR[0] == 0x3B5D3C7D207E37DC
    data = counter_bytes(GOLDEN_SEED, 96 << 10)
    kwargs: dict[str, Any] = {"min_size": 512, "max_size": 8192, "normalized_chunking": 1}
    compiled = [c.length for c in FastCDC(2048, seed=0, **kwargs).cut_buf(data)]
    reference = [c.length for c in PyFastCDC(2048, seed=0, **kwargs).cut_buf(data)]
    assert compiled == reference
    assert len(compiled) > 20
