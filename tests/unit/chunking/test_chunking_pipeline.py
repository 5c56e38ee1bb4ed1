"""The async ChunkPipeline: same chunks as the sync core, whole-stream hash and size, bounded
memory, and clean cancellation (no thread left running, nothing logged)."""

from __future__ import annotations

import asyncio
import gc
import hashlib
import logging
import threading
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import aclosing
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dfms.chunking import Chunk, ChunkParams, ChunkPipeline, pipeline
from dfms.chunking.pipeline import THREAD_NAME_PREFIX

from ._data import ALGORITHMS, SMALL, TINY, boundaries, random_bytes

SMALL_PARAMS = {alg: ChunkParams(alg, **SMALL) for alg in ALGORITHMS}  # type: ignore[arg-type]
TINY_PARAMS = {alg: ChunkParams(alg, **TINY) for alg in ALGORITHMS}  # type: ignore[arg-type]
DATA = random_bytes(1 << 20, 31)
THREAD_DEADLINE_S = 10.0


async def pieces(data: bytes, size: int, kind: str = "bytes") -> AsyncIterator[Any]:
    view = memoryview(data)
    for pos in range(0, len(data), size):
        if kind == "bytes":
            yield data[pos : pos + size]
        elif kind == "memoryview":
            yield view[pos : pos + size]
        else:
            yield bytearray(view[pos : pos + size])


def triples(chunks: list[Chunk]) -> list[tuple[int, int, str]]:
    return [(c.offset, c.length, c.sha256) for c in chunks]


def our_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith(THREAD_NAME_PREFIX)]


def assert_no_threads_left() -> None:
    """Every private pool thread exits within the deadline (join, no sleeping)."""
    for thread in our_threads():
        thread.join(THREAD_DEADLINE_S)
    assert [t.name for t in our_threads() if t.is_alive()] == []


@pytest.fixture
async def loop_errors() -> AsyncIterator[list[dict[str, Any]]]:
    """Errors the event loop would log (exception handler calls)."""
    errors: list[dict[str, Any]] = []
    loop = asyncio.get_running_loop()
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: errors.append(context))
    yield errors
    loop.set_exception_handler(previous)


async def settle_loop() -> None:
    """Let callbacks and async-generator finalizers scheduled on the loop run."""
    for _ in range(20):
        await asyncio.sleep(0)


async def collect(p: ChunkPipeline, source: AsyncIterator[Any]) -> list[Chunk]:
    return [c async for c in p.chunks(source)]


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize(
    ("size", "kind"), [(65536, "bytes"), (1000, "memoryview"), (100_000, "bytearray")]
)
async def test_pipeline_output_equals_sync_output(algorithm: str, size: int, kind: str) -> None:
    """The pipeline yields exactly the sync chunker's chunks, in order, and sets size and the
    whole-stream sha256."""
    params = SMALL_PARAMS[algorithm]
    p = ChunkPipeline(params)
    chunks = await collect(p, pieces(DATA, size, kind))
    assert triples(chunks) == boundaries(DATA, params)
    assert b"".join(bytes(c.data) for c in chunks) == DATA
    assert p.size == len(DATA)
    assert p.sha256 == hashlib.sha256(DATA).hexdigest()
    assert_no_threads_left()


@pytest.mark.parametrize("algorithm", ALGORITHMS)
async def test_pipeline_with_default_params_on_a_large_stream(algorithm: str) -> None:
    """With default params, a 24 MiB stream in 64 KiB pieces matches the sync result."""
    params = ChunkParams(algorithm)  # type: ignore[arg-type]
    data = random_bytes(24 << 20, 32)
    p = ChunkPipeline(params)
    chunks = await collect(p, pieces(data, 65536, "memoryview"))
    assert triples(chunks) == boundaries(data, params)
    assert (p.size, p.sha256) == (len(data), hashlib.sha256(data).hexdigest())


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@given(
    sizes=st.lists(
        st.one_of(st.just(1), st.integers(1, 300), st.integers(1, 40_000)), min_size=1
    ).filter(lambda s: sum(s) >= 500),
    max_inflight=st.integers(1, 6),
)
@settings(max_examples=25, deadline=None)
def test_pipeline_boundaries_do_not_depend_on_piece_sizes(
    algorithm: str, sizes: list[int], max_inflight: int
) -> None:
    """Any split of the stream into pieces, and any max_inflight, give the sync chunks."""
    params = TINY_PARAMS[algorithm] if sum(sizes) < 3000 else SMALL_PARAMS[algorithm]
    data = DATA[:200_000]

    async def source() -> AsyncIterator[bytes]:
        pos = 0
        i = 0
        while pos < len(data):
            size = sizes[i % len(sizes)]
            yield data[pos : pos + size]
            pos += size
            i += 1

    async def run() -> tuple[list[Chunk], ChunkPipeline]:
        p = ChunkPipeline(params, max_inflight=max_inflight)
        return await collect(p, source()), p

    chunks, p = asyncio.run(run())
    assert triples(chunks) == boundaries(data, params)
    assert p.sha256 == hashlib.sha256(data).hexdigest()


async def test_empty_stream_gives_no_chunks_and_the_empty_hash() -> None:
    """An empty source (or only empty pieces) yields nothing; size 0, sha256 of b''."""

    async def empties() -> AsyncIterator[bytes]:
        yield b""
        yield b""

    for source in (pieces(b"", 10), empties()):
        p = ChunkPipeline(ChunkParams())
        assert await collect(p, source) == []
        assert (p.size, p.sha256) == (0, hashlib.sha256(b"").hexdigest())


async def test_short_stream_is_one_chunk() -> None:
    """A stream shorter than min_size is one chunk."""
    p = ChunkPipeline(ChunkParams("rabin"))
    chunks = await collect(p, pieces(b"hello world", 3))
    assert triples(chunks) == [(0, 11, hashlib.sha256(b"hello world").hexdigest())]


async def test_without_file_hash_sha256_stays_empty() -> None:
    """file_hash=False skips the whole-stream hash: chunks and size are still right."""
    params = SMALL_PARAMS["fastcdc"]
    p = ChunkPipeline(params, file_hash=False)
    chunks = await collect(p, pieces(DATA, 50_000))
    assert triples(chunks) == boundaries(DATA, params)
    assert (p.size, p.sha256) == (len(DATA), "")


@pytest.mark.parametrize("workers", [1, 2])
async def test_a_caller_executor_is_used_and_left_running(workers: int) -> None:
    """With a caller's executor (even a single worker) the pipeline completes and leaves the
    executor usable; it starts no private threads."""
    params = SMALL_PARAMS["rabin"]
    with ThreadPoolExecutor(workers, thread_name_prefix="caller-pool") as pool:
        p = ChunkPipeline(params, executor=pool, max_inflight=1)
        chunks = await collect(p, pieces(DATA, 30_000))
        assert our_threads() == []
        assert triples(chunks) == boundaries(DATA, params)
        assert pool.submit(lambda: 42).result(THREAD_DEADLINE_S) == 42


async def test_memory_is_bounded_by_configuration_not_stream_length() -> None:
    """On streams far longer than a window, the bytes held at once and the chunks pending stay
    within bounds computed from the configuration alone (not from the stream's length):
    ``max_inflight`` windows plus the undecided tail, and the chunks of those windows."""
    params = ChunkParams("fastcdc", 16 << 10, 64 << 10, 256 << 10)
    piece = 16 << 10
    window = 1 << 20
    inflight = 3
    bound = inflight * (window + piece) + params.max_size
    for length in (16 << 20, 48 << 20):
        data = random_bytes(length, 33)
        p = ChunkPipeline(params, max_inflight=inflight, window_size=window)
        chunks = await collect(p, pieces(data, piece, "memoryview"))
        assert sum(c.length for c in chunks) == len(data)
        assert window < p.peak_held_bytes <= bound
        assert 0 < p.peak_pending <= inflight * (window + params.max_size) // (params.min_size - 1)
    assert bound < (16 << 20) // 4


def test_window_smaller_than_max_size_is_refused() -> None:
    """A window must hold at least one whole chunk."""
    with pytest.raises(ValueError, match="window_size"):
        ChunkPipeline(ChunkParams(), window_size=1 << 20)


async def test_consumer_breaking_early_leaves_no_thread_and_logs_nothing(
    loop_errors: list[dict[str, Any]], caplog: pytest.LogCaptureFixture
) -> None:
    """Stopping iteration after a few chunks (closing the generator) cancels the rest: the
    private threads exit and no error reaches the loop's handler or the logs."""
    caplog.set_level(logging.WARNING)
    data = random_bytes(32 << 20, 34)
    p = ChunkPipeline(ChunkParams())
    async with aclosing(p.chunks(pieces(data, 65536))) as chunks:
        seen = 0
        async for _ in chunks:
            seen += 1
            if seen == 2:
                break
    assert_no_threads_left()
    gc.collect()
    await settle_loop()
    assert loop_errors == []
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []
    assert p.sha256 == ""


async def test_break_without_aclose_is_finalized_cleanly(
    loop_errors: list[dict[str, Any]], caplog: pytest.LogCaptureFixture
) -> None:
    """A plain `break` (the generator finalized by the loop later) also cleans up quietly."""
    caplog.set_level(logging.WARNING)
    data = random_bytes(16 << 20, 35)
    p = ChunkPipeline(ChunkParams("rabin"))
    async for _ in p.chunks(pieces(data, 65536)):
        break
    gc.collect()
    await settle_loop()
    assert_no_threads_left()
    gc.collect()
    await settle_loop()
    assert loop_errors == []
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []


async def test_cancelling_the_consumer_task_stops_everything(
    loop_errors: list[dict[str, Any]],
) -> None:
    """Cancelling the task that iterates (while the source is stalled) raises CancelledError in
    it, and the pipeline's threads exit; nothing is logged."""
    data = random_bytes(20 << 20, 36)
    reached = asyncio.Event()
    got: list[Chunk] = []

    async def stalling_source() -> AsyncIterator[bytes]:
        async for piece in pieces(data, 1 << 20):
            yield piece
        reached.set()
        await asyncio.Event().wait()  # a client that never sends the rest
        yield b"never"  # pragma: no cover

    async def consume() -> None:
        async for chunk in ChunkPipeline(ChunkParams()).chunks(stalling_source()):
            got.append(chunk)

    task = asyncio.create_task(consume())
    await reached.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert_no_threads_left()
    gc.collect()
    await settle_loop()
    assert loop_errors == []
    assert all(c.length > 0 for c in got)


async def test_cancelling_while_jobs_run_on_a_shared_executor_leaves_it_clean() -> None:
    """Cancelled mid-stream on a caller's executor, no queued job of ours is left behind."""
    data = random_bytes(40 << 20, 37)
    with ThreadPoolExecutor(2) as pool:
        p = ChunkPipeline(ChunkParams("rabin"), executor=pool, max_inflight=8)
        started = asyncio.Event()

        async def consume() -> None:
            async for _ in p.chunks(pieces(data, 4 << 20)):
                started.set()

        task = asyncio.create_task(consume())
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        # the pool drains what was already running and then runs new work at once
        assert pool.submit(lambda: "ok").result(THREAD_DEADLINE_S) == "ok"


async def test_a_failing_source_propagates_its_error_and_cleans_up() -> None:
    """An exception from the source (e.g. client disconnect) reaches the consumer as is."""

    class Disconnected(Exception):
        pass

    async def failing() -> AsyncIterator[bytes]:
        yield random_bytes(10 << 20, 38)
        raise Disconnected

    with pytest.raises(Disconnected):
        await collect(ChunkPipeline(ChunkParams()), failing())
    assert_no_threads_left()


async def test_a_failing_chunk_hash_job_propagates(
    monkeypatch: pytest.MonkeyPatch,
    loop_errors: list[dict[str, Any]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An exception inside a worker job (here: per-chunk hashing) is raised to the consumer;
    the other failed jobs are not logged as 'never retrieved'."""
    caplog.set_level(logging.WARNING)

    def broken(data: Any) -> str:
        raise MemoryError("no room")

    monkeypatch.setattr(pipeline, "sha256_hex", broken)
    with pytest.raises(MemoryError, match="no room"):
        await collect(ChunkPipeline(SMALL_PARAMS["fastcdc"]), pieces(DATA * 8, 65536))
    assert_no_threads_left()
    gc.collect()
    await settle_loop()
    assert loop_errors == []
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []


async def test_a_failing_whole_stream_hash_propagates(
    monkeypatch: pytest.MonkeyPatch, loop_errors: list[dict[str, Any]]
) -> None:
    """An exception in the whole-stream hash lane is raised too, not swallowed."""

    def broken(hasher: Any, spans: Any) -> None:
        raise MemoryError("file lane")

    monkeypatch.setattr(pipeline, "_update_file_hash", broken)
    with pytest.raises(MemoryError, match="file lane"):
        await collect(ChunkPipeline(SMALL_PARAMS["fastcdc"]), pieces(DATA * 8, 65536))
    assert_no_threads_left()
    gc.collect()
    await settle_loop()
    assert loop_errors == []


async def test_a_failing_cut_propagates(
    monkeypatch: pytest.MonkeyPatch, loop_errors: list[dict[str, Any]]
) -> None:
    """An exception from the cutter (a bug or a bad buffer) reaches the consumer."""
    from dfms.chunking.fastcdc import FastCDCCutter

    def broken(self: Any, window: bytes, final: bool) -> list[int]:
        raise ValueError("cutter failed")

    monkeypatch.setattr(FastCDCCutter, "cut", broken)
    with pytest.raises(ValueError, match="cutter failed"):
        await collect(ChunkPipeline(SMALL_PARAMS["fastcdc"]), pieces(DATA, 65536))
    assert_no_threads_left()
    gc.collect()
    await settle_loop()
    assert loop_errors == []


async def test_one_stream_at_a_time_per_pipeline() -> None:
    """A pipeline refuses a second concurrent stream but can be reused afterwards."""
    p = ChunkPipeline(SMALL_PARAMS["fastcdc"])
    first = p.chunks(pieces(DATA, 65536))
    await first.__anext__()
    with pytest.raises(RuntimeError, match="already"):
        await p.chunks(pieces(DATA, 65536)).__anext__()
    await first.aclose()
    again = await collect(p, pieces(b"abc", 1))
    assert triples(again) == [(0, 3, hashlib.sha256(b"abc").hexdigest())]
    assert p.size == 3


def test_max_inflight_must_be_positive() -> None:
    """max_inflight < 1 is a ValueError."""
    with pytest.raises(ValueError, match="max_inflight"):
        ChunkPipeline(ChunkParams(), max_inflight=0)
    assert ChunkPipeline().params == ChunkParams()
