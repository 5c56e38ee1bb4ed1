"""The streaming core and the sync file front-end: boundaries independent of block splits,
size bounds, bounded buffering, dedup stability."""

from __future__ import annotations

import hashlib
import io
from itertools import cycle

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dfms.chunking import (
    Chunk,
    ChunkParams,
    Span,
    cut_buffer,
    iter_file_chunks,
    make_chunker,
)
from dfms.chunking.core import make_cutter

from ._data import ALGORITHMS, SMALL, TINY, boundaries, random_bytes

SMALL_PARAMS = {alg: ChunkParams(alg, **SMALL) for alg in ALGORITHMS}  # type: ignore[arg-type]
TINY_PARAMS = {alg: ChunkParams(alg, **TINY) for alg in ALGORITHMS}  # type: ignore[arg-type]
BLOCK_DATA = random_bytes(150_000, 11)


def feed_in_blocks(data: bytes, params: ChunkParams, sizes: list[int]) -> list[Chunk]:
    chunker = make_chunker(params)
    view = memoryview(data)
    chunks: list[Chunk] = []
    pos = 0
    for size in cycle(sizes):
        if pos >= len(data):
            break
        chunks.extend(chunker.feed(view[pos : pos + size]))
        pos += size
    chunks.extend(chunker.finish())
    return chunks


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@given(
    sizes=st.lists(
        st.one_of(st.just(1), st.integers(1, 100), st.integers(1, 70_000)),
        min_size=1,
        max_size=40,
    ).filter(lambda s: sum(s) >= 200)
)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_boundaries_do_not_depend_on_block_sizes(algorithm: str, sizes: list[int]) -> None:
    """Feeding the same bytes in any block sizes (1 byte included) gives the same chunks as
    cutting the whole buffer at once."""
    params = TINY_PARAMS[algorithm] if sum(sizes) < 2000 else SMALL_PARAMS[algorithm]
    expected = boundaries(BLOCK_DATA, params)
    got = [(c.offset, c.length, c.sha256) for c in feed_in_blocks(BLOCK_DATA, params, sizes)]
    assert got == expected


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_one_byte_blocks_give_the_same_chunks(algorithm: str) -> None:
    """The extreme split, one byte per block, still gives identical chunks."""
    params = TINY_PARAMS[algorithm]
    data = BLOCK_DATA[:20_000]
    assert [(c.offset, c.length, c.sha256) for c in feed_in_blocks(data, params, [1])] == (
        boundaries(data, params)
    )


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_chunks_tile_the_stream_and_hash_their_bytes(algorithm: str) -> None:
    """Chunks are consecutive, cover every byte once, and sha256/data match the input."""
    data = random_bytes(400_000, 12)
    chunks = cut_buffer(data, SMALL_PARAMS[algorithm])
    offset = 0
    for chunk in chunks:
        assert chunk.offset == offset
        assert chunk.length == len(chunk.data)
        assert bytes(chunk.data) == data[offset : offset + chunk.length]
        assert chunk.sha256 == hashlib.sha256(data[offset : offset + chunk.length]).hexdigest()
        offset += chunk.length
    assert offset == len(data)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize(
    "data",
    [random_bytes(3 << 20, 13), bytes(1 << 20), bytes(range(256)) * 4096],
    ids=["random", "zeros", "pattern"],
)
def test_all_chunks_but_the_last_are_within_min_and_max(algorithm: str, data: bytes) -> None:
    """Every chunk except the last is between min_size and max_size; the last is at most max."""
    params = SMALL_PARAMS[algorithm]
    lengths = [c.length for c in cut_buffer(data, params)]
    assert len(lengths) > 10
    assert all(params.min_size <= n <= params.max_size for n in lengths[:-1])
    assert 0 < lengths[-1] <= params.max_size


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_default_params_average_about_min_plus_avg(algorithm: str) -> None:
    """With default params, random data gives chunks of roughly min + avg bytes on average."""
    params = ChunkParams(algorithm)  # type: ignore[arg-type]
    data = random_bytes(48 << 20, 14)
    lengths = [c.length for c in cut_buffer(data, params)]
    mean = sum(lengths) / len(lengths)
    assert 0.7 * (1 << 20) < mean < 2 * (1 << 20)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_empty_input_gives_no_chunks(algorithm: str) -> None:
    """An empty stream has zero chunks, whichever front-end is used."""
    params = ChunkParams(algorithm)  # type: ignore[arg-type]
    assert make_chunker(params).finish() == []
    assert list(iter_file_chunks(io.BytesIO(b""), params)) == []
    chunker = make_chunker(params)
    assert chunker.feed(b"") == []
    assert chunker.finish() == []


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_input_shorter_than_min_is_one_chunk(algorithm: str) -> None:
    """Input shorter than min_size (even a single byte) becomes exactly one chunk."""
    params = ChunkParams(algorithm)  # type: ignore[arg-type]
    for data in (b"x", random_bytes(params.min_size - 1, 15)):
        chunks = list(iter_file_chunks(io.BytesIO(data), params, block_size=4096))
        assert [(c.offset, c.length) for c in chunks] == [(0, len(data))]
        assert chunks[0].sha256 == hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize(
    ("sizes", "block", "length"),
    [
        ((64, 256, 1024), 1, 30_000),
        ((2048, 8192, 32768), 1000, 1 << 20),
        ((64 << 10, 256 << 10, 1 << 20), 64 << 10, 12 << 20),
        ((64 << 10, 256 << 10, 1 << 20), 1 << 20, 12 << 20),
        ((64 << 10, 256 << 10, 1 << 20), 5 << 20, 12 << 20),
    ],
)
def test_peak_buffered_is_at_most_max_plus_one_block(
    algorithm: str, sizes: tuple[int, int, int], block: int, length: int
) -> None:
    """However the stream is split, the chunker never holds more than max_size + one block."""
    params = ChunkParams(algorithm, *sizes)  # type: ignore[arg-type]
    data = random_bytes(length, 16)
    chunker = make_chunker(params)
    view = memoryview(data)
    total = 0
    for pos in range(0, len(data), block):
        total += sum(c.length for c in chunker.feed(view[pos : pos + block]))
        assert chunker.buffered <= params.max_size
    total += sum(c.length for c in chunker.finish())
    assert total == len(data)
    assert params.max_size < chunker.peak_buffered <= params.max_size + block


def test_leftover_is_copied_so_mutable_input_can_be_reused() -> None:
    """Blocks may be reused buffers: chunk data never aliases a caller's bytearray."""
    params = SMALL_PARAMS["fastcdc"]
    data = random_bytes(200_000, 17)
    buf = bytearray(10_000)
    chunker = make_chunker(params)
    chunks: list[Chunk] = []
    for pos in range(0, len(data), len(buf)):
        piece = data[pos : pos + len(buf)]
        buf[: len(piece)] = piece
        chunks.extend(chunker.feed(memoryview(buf)[: len(piece)]))
        buf[:] = bytes(len(buf))  # scribble over the reused buffer
    chunks.extend(chunker.finish())
    assert b"".join(bytes(c.data) for c in chunks) == data
    assert [(c.offset, c.length, c.sha256) for c in chunks] == boundaries(data, params)


def test_finished_chunker_refuses_more_input() -> None:
    """After finish() the chunker raises instead of silently starting a second stream."""
    chunker = make_chunker(SMALL_PARAMS["rabin"])
    chunker.feed(b"abc")
    assert [c.length for c in chunker.finish()] == [3]
    with pytest.raises(RuntimeError, match="finished"):
        chunker.feed(b"more")


def test_spans_from_cut_are_unhashed_views() -> None:
    """cut()/cut_final() return unhashed spans with the same boundaries as feed()/finish()."""
    params = SMALL_PARAMS["fastcdc"]
    data = random_bytes(100_000, 18)
    chunker = make_chunker(params)
    spans: list[Span] = chunker.cut([data[:50_000], data[50_000:70_000]])
    spans += chunker.cut_final([data[70_000:]])
    assert [(s.offset, s.length) for s in spans] == [(b[0], b[1]) for b in boundaries(data, params)]
    assert all(isinstance(s.data, memoryview) for s in spans)


def test_make_chunker_defaults_and_cutter_choice() -> None:
    """make_chunker() uses default params; the cutter follows params.algorithm."""
    assert make_chunker().params == ChunkParams()
    assert type(make_cutter(ChunkParams("rabin")).__class__.__name__) is str
    assert make_cutter(ChunkParams("rabin")).__class__.__name__ == "RabinCutter"
    assert make_cutter(ChunkParams("fastcdc")).__class__.__name__ == "FastCDCCutter"


def test_iter_file_chunks_rejects_a_non_positive_block_size() -> None:
    """block_size must be positive."""
    with pytest.raises(ValueError, match="block_size"):
        list(iter_file_chunks(io.BytesIO(b"abc"), ChunkParams(), block_size=0))


def test_iter_file_chunks_reads_a_real_file(tmp_path: object) -> None:
    """A file on disk chunks the same as the same bytes in memory."""
    from pathlib import Path

    path = Path(str(tmp_path)) / "f.bin"
    data = random_bytes(300_000, 19)
    path.write_bytes(data)
    params = SMALL_PARAMS["rabin"]
    with path.open("rb") as f:
        got = [(c.offset, c.length, c.sha256) for c in iter_file_chunks(f, params, 7000)]
    assert got == boundaries(data, params)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_inserting_one_byte_near_the_start_keeps_90_percent_shared(algorithm: str) -> None:
    """Content-defined chunking survives an insertion: after inserting one byte near the start
    of a 64 MiB input, at least 90% of the chunk bytes are still shared chunks."""
    params = ChunkParams(algorithm)  # type: ignore[arg-type]
    data = random_bytes(64 << 20, 20)
    edited = data[:1000] + b"\x5a" + data[1000:]
    before = {c.sha256 for c in cut_buffer(data, params)}
    after = cut_buffer(edited, params)
    shared = sum(c.length for c in after if c.sha256 in before)
    assert shared >= 0.9 * len(edited)
