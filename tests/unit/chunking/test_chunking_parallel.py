"""Two-thread chunking (dfms.chunking.parallel): same chunks as the streaming core, errors and
early exits handled, no thread left behind."""

from __future__ import annotations

import io
import threading
from collections.abc import Iterator

import pytest

from dfms.chunking import ChunkParams, iter_buffer_chunks, iter_file_chunks
from dfms.chunking.core import Span
from dfms.chunking.parallel import (
    THREAD_NAME,
    buffer_spans,
    hashed_in_order,
    reader_spans,
)
from tests.unit.chunking._data import ALGORITHMS, SMALL, TINY, boundaries, random_bytes


def _producers_alive() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == THREAD_NAME and t.is_alive()]


def _triples(chunks: Iterator[object]) -> list[tuple[int, int, str]]:
    return [(c.offset, c.length, c.sha256) for c in chunks]  # type: ignore[attr-defined]


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize(
    "size", [0, 1, 63, 2047, 2048, 32767, 32768, 32769, 65536, 300_001, 1_000_000]
)
def test_buffer_chunks_equal_the_streaming_core(algorithm: str, size: int) -> None:
    """Whole-buffer two-thread chunking gives exactly the streaming core's chunks and hashes,
    around every size bound (window edges included: SMALL params use 8 MiB windows anyway)."""
    params = ChunkParams(algorithm, **SMALL)  # type: ignore[arg-type]
    data = random_bytes(size, seed=size)
    assert _triples(iter_buffer_chunks(data, params)) == boundaries(data, params)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_buffer_chunks_across_many_windows(algorithm: str) -> None:
    """Default params over 20 MiB: several 8 MiB windows, each ending in an undecided chunk
    that the next window scans again; the result still equals a one-piece cut."""
    params = ChunkParams(algorithm)  # type: ignore[arg-type]
    data = random_bytes(20 << 20, seed=7)
    got = _triples(iter_buffer_chunks(data, params))
    assert got == boundaries(data, params)
    assert sum(length for _, length, _ in got) == len(data)


def test_buffer_chunks_accept_memoryviews_of_any_format() -> None:
    """A memoryview (even a non-byte format) is chunked as its raw bytes."""
    params = ChunkParams(**TINY)
    data = random_bytes(40_000, seed=3)
    as_ints = memoryview(data).cast("I")
    assert _triples(iter_buffer_chunks(as_ints, params)) == boundaries(data, params)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_file_chunks_equal_the_streaming_core(algorithm: str) -> None:
    """iter_file_chunks (reader thread + hashing) matches a one-piece cut for odd block sizes."""
    params = ChunkParams(algorithm, **SMALL)  # type: ignore[arg-type]
    data = random_bytes(500_000, seed=11)
    for block in (1, 777, 65536, 1 << 20):
        got = _triples(iter_file_chunks(io.BytesIO(data), params, block_size=block))
        assert got == boundaries(data, params), block


def test_chunk_data_are_views_of_the_input_buffer() -> None:
    """Whole-buffer chunks are zero-copy views holding their own bytes."""
    data = random_bytes(100_000, seed=5)
    for chunk in iter_buffer_chunks(data, ChunkParams(**TINY)):
        assert isinstance(chunk.data, memoryview)
        assert chunk.data.obj is data
        assert bytes(chunk.data) == data[chunk.offset : chunk.offset + chunk.length]


def test_a_read_error_is_raised_in_the_consumer_after_earlier_chunks() -> None:
    """An OSError of the file is raised where the chunks are consumed, after the chunks that were
    complete before it, and the producer thread is gone."""
    data = random_bytes(200_000, seed=9)
    source = io.BytesIO(data)

    def read(n: int) -> bytes:
        if source.tell() >= 150_000:
            raise OSError(5, "Input/output error")
        return source.read(n)

    params = ChunkParams(**TINY)
    got: list[tuple[int, int, str]] = []
    with pytest.raises(OSError, match="Input/output"):
        for chunk in hashed_in_order(lambda: reader_spans(read, params, 10_000)):
            got.append((chunk.offset, chunk.length, chunk.sha256))
    assert got, "chunks cut before the error are delivered"
    assert got == boundaries(data, params)[: len(got)]
    assert sum(length for _, length, _ in got) <= 150_000
    assert not _producers_alive()


def test_closing_early_stops_and_joins_the_producer() -> None:
    """A consumer that stops after one chunk leaves no producer thread, even though the producer
    was blocked on a full queue with far more input left."""
    data = random_bytes(2_000_000, seed=13)
    chunks = iter_buffer_chunks(data, ChunkParams(**TINY), lookahead=2)
    first = next(chunks)
    assert first.offset == 0
    chunks.close()
    assert not _producers_alive()


def test_producer_stops_checking_between_spans_when_the_consumer_left() -> None:
    """The producer stops asking for spans once the consumer is gone (it does not cut the whole
    input in the background)."""
    produced = 0

    def spans() -> Iterator[Span]:
        nonlocal produced
        for i in range(10_000):
            produced += 1
            yield Span(i, 1, memoryview(b"x"))

    gen = hashed_in_order(spans, lookahead=4)
    next(gen)
    gen.close()
    assert not _producers_alive()
    assert produced < 100


def test_bad_lookahead_is_refused() -> None:
    """lookahead must be at least 1."""
    with pytest.raises(ValueError, match="lookahead"):
        next(hashed_in_order(lambda: iter(()), lookahead=0))


def test_reader_spans_rejects_a_non_positive_block_size() -> None:
    """block_size must be positive."""
    with pytest.raises(ValueError, match="block_size"):
        next(reader_spans(io.BytesIO(b"abc").read, ChunkParams(), 0))


def test_buffer_spans_tile_the_buffer() -> None:
    """Unhashed spans of a buffer cover it exactly, in order."""
    data = random_bytes(123_457, seed=1)
    pos = 0
    for span in buffer_spans(data, ChunkParams(**TINY)):
        assert span.offset == pos
        assert bytes(span.data) == data[pos : pos + span.length]
        pos += span.length
    assert pos == len(data)
