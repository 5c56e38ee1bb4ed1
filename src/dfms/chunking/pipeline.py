"""The async chunking pipeline of the upload path: bytes in, hashed chunks out, off the event loop.

Threading model (two cores are used; pyfastcdc's cut loop, the Rabin extension and hashlib all
release the GIL on large buffers)::

    event loop   reads pieces -> collects a window -> submits jobs, yields chunks in order
    cut lane     join + cut window k+1           (one job at a time: windows are sequential)
    hash jobs    SHA-256 of the chunks of window k (many at once; small chunks in batches)
    file lane    whole-stream SHA-256, in order  (one job at a time, in submission order)

The event loop only does bookkeeping; joining, cutting and hashing run in ``executor`` threads (a
private pool of ``DEFAULT_WORKERS`` threads when none is given). A finished cut is followed at
once by the next one, submitted before the hash jobs of the window just cut, so the one
sequential lane everything depends on never queues behind hashing.

Windows: a window is cut once more than ``window_size = max(max_size, MIN_WINDOW)`` bytes are
buffered (so small chunk sizes still make big, cheap jobs); while a cut runs, at most one more
window is read ahead.

Bounds (DESIGN.md invariant 8): a new window is cut only while the chunks cut but not yet yielded
are at most ``max_inflight`` chunks or at most one window of bytes, and the file lane has at most
one window queued besides the one it is hashing. Memory is therefore a small multiple of
``window_size``, independent of the stream's length; ``peak_held_bytes`` and ``peak_pending``
report what was actually held.

Cancellation: if the consumer stops iterating, or its task is cancelled, queued jobs are
cancelled, running jobs (each bounded: one window cut or one batch hashed) finish on their own and
their results are dropped, and a private pool's threads then exit. Nothing is logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterable, Callable
from concurrent.futures import Executor, ThreadPoolExecutor
from concurrent.futures import Future as ConcurrentFuture
from typing import Any, Final, TypeVar

from dfms.chunking.core import BytesLike, Chunk, Span, make_chunker, sha256_hex
from dfms.chunking.params import ChunkParams

T = TypeVar("T")

#: threads of the private pool: the cut lane, the file lane and one chunk hasher may all run
DEFAULT_WORKERS: Final = 3
#: name prefix of the private pool's threads (tests look for leftovers by it)
THREAD_NAME_PREFIX: Final = "dfms-chunking"
#: most windows queued in the file lane besides the one it is hashing
_FILE_LANE_BACKLOG: Final = 1
#: smallest window the pipeline cuts at once (bigger than max_size for small chunk sizes)
MIN_WINDOW: Final = 2 << 20
#: consecutive chunks are hashed in one job until it covers this many bytes
HASH_BATCH_BYTES: Final = 512 << 10


class _Jobs:
    """Runs callables on an executor, mirrored as asyncio futures of the loop.

    Unlike ``loop.run_in_executor``, a job that finishes after the loop closed is dropped quietly,
    and ``cancel_all`` cancels every job not yet started.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, executor: Executor) -> None:
        self._loop = loop
        self._executor = executor
        self._live: set[ConcurrentFuture[Any]] = set()

    def submit(self, fn: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        waiter: asyncio.Future[T] = self._loop.create_future()
        job = self._executor.submit(fn, *args)
        self._live.add(job)

        def done(job: ConcurrentFuture[T]) -> None:  # runs in the worker thread (or here)
            # a closed loop raises RuntimeError: nobody waits for this result any more
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._settle, job, waiter)

        job.add_done_callback(done)
        return waiter

    def _settle(self, job: ConcurrentFuture[T], waiter: asyncio.Future[T]) -> None:
        self._live.discard(job)
        if waiter.done():  # cancelled by us
            return
        if job.cancelled():
            waiter.cancel()
            return
        exc = job.exception()
        if exc is not None:
            waiter.set_exception(exc)
        else:
            waiter.set_result(job.result())

    def cancel_all(self) -> None:
        for job in list(self._live):
            job.cancel()


def _hash_batch(views: list[memoryview]) -> list[str]:
    return [sha256_hex(view) for view in views]


def _update_file_hash(hasher: Any, spans: list[Span]) -> None:
    for span in spans:
        hasher.update(span.data)


class _FileLane:
    """The whole-stream SHA-256: updated window by window, strictly in order, one job at a time."""

    def __init__(self, jobs: _Jobs) -> None:
        self._jobs = jobs
        self._hasher = hashlib.sha256()
        self._queue: deque[list[Span]] = deque()
        self._running: asyncio.Future[None] | None = None
        self._running_spans: list[Span] = []
        self._error: BaseException | None = None

    @property
    def backlog(self) -> int:
        """Windows queued or being hashed."""
        return len(self._queue) + (self._running is not None)

    def held_windows(self) -> list[list[Span]]:
        return [self._running_spans, *self._queue]

    def submit(self, spans: list[Span]) -> None:
        if spans:
            self._queue.append(spans)
            self._pump()

    def _pump(self) -> None:
        if self._running is None and self._queue and self._error is None:
            self._running_spans = self._queue.popleft()
            self._running = self._jobs.submit(_update_file_hash, self._hasher, self._running_spans)
            self._running.add_done_callback(self._on_done)

    def _on_done(self, job: asyncio.Future[None]) -> None:
        if job is not self._running:
            return
        self._running = None
        self._running_spans = []
        if job.cancelled():
            return
        exc = job.exception()
        if exc is not None:
            self._error = exc
            self._queue.clear()
            return
        self._pump()

    async def drain(self, limit: int) -> None:
        """Wait until at most ``limit`` windows are queued or being hashed."""
        while self._running is not None and self.backlog > limit:
            # _on_done was registered first, so it has run when this wait returns
            await asyncio.wait((self._running,))
        if self._error is not None:
            raise self._error

    async def hexdigest(self) -> str:
        await self.drain(0)
        return self._hasher.hexdigest()

    def cancel(self) -> None:
        self._queue.clear()
        if self._running is not None:
            self._running.cancel()


def _window_bytes(spans: list[Span], seen: dict[int, int]) -> None:
    """Record the size of each distinct window (the bytes object a span's view slices)."""
    for span in spans:
        window = span.data.obj
        seen[id(window)] = len(window) if isinstance(window, bytes) else span.data.nbytes


class ChunkPipeline:
    """Chunk an async byte stream into hashed chunks, in order, with bounded memory.

    ``chunks(source)`` yields :class:`Chunk` s; once it has been iterated to the end, ``size`` is
    the stream's length and ``sha256`` the lowercase hex SHA-256 of the whole stream (``""``
    until then, and always with ``file_hash=False``). Boundaries are exactly those of
    :func:`make_chunker` for the same bytes and params. One stream at a time per instance.
    """

    def __init__(
        self,
        params: ChunkParams | None = None,
        *,
        executor: Executor | None = None,
        max_inflight: int = 4,
        file_hash: bool = True,
    ) -> None:
        if max_inflight < 1:
            raise ValueError(f"max_inflight={max_inflight} must be at least 1")
        self.params = params if params is not None else ChunkParams()
        self.max_inflight = max_inflight
        self.file_hash = file_hash
        self._executor = executor
        self._busy = False
        #: bytes of the stream read so far (its length once iteration completed)
        self.size = 0
        #: hex SHA-256 of the whole stream once iteration completed ("" before, or without
        #: ``file_hash``)
        self.sha256 = ""
        #: largest number of bytes held at once (windows referenced by pending work + read-ahead)
        self.peak_held_bytes = 0
        #: largest number of chunks cut but not yet yielded
        self.peak_pending = 0

    async def chunks(self, source: AsyncIterable[BytesLike]) -> AsyncGenerator[Chunk, None]:
        """Yield the hashed chunks of ``source`` in stream order."""
        if self._busy:
            raise RuntimeError("this ChunkPipeline is already chunking a stream")
        self._busy = True
        self.size = 0
        self.sha256 = ""
        self.peak_held_bytes = 0
        self.peak_pending = 0
        own_pool: ThreadPoolExecutor | None = None
        executor = self._executor
        if executor is None:
            own_pool = ThreadPoolExecutor(DEFAULT_WORKERS, thread_name_prefix=THREAD_NAME_PREFIX)
            executor = own_pool
        jobs = _Jobs(asyncio.get_running_loop(), executor)
        file_lane = _FileLane(jobs) if self.file_hash else None
        chunker = make_chunker(self.params)
        window = max(self.params.max_size, MIN_WINDOW)
        # chunks cut but not yet yielded: span, its batch's hash job, its index in the batch
        pending: deque[tuple[Span, asyncio.Future[list[str]], int]] = deque()
        pending_bytes = 0
        new: list[BytesLike] = []
        new_bytes = 0
        cutting: asyncio.Future[list[Span]] | None = None
        completed = False

        def dispatch(spans: list[Span]) -> None:
            nonlocal pending_bytes
            batch: list[Span] = []
            batch_bytes = 0
            for i, span in enumerate(spans):
                batch.append(span)
                batch_bytes += span.length
                if batch_bytes >= HASH_BATCH_BYTES or i == len(spans) - 1:
                    job = jobs.submit(_hash_batch, [s.data for s in batch])
                    pending.extend((s, job, j) for j, s in enumerate(batch))
                    pending_bytes += batch_bytes
                    batch = []
                    batch_bytes = 0
            if file_lane is not None:
                file_lane.submit(spans)
            self._account(chunker.buffered + new_bytes, pending, file_lane)

        def room_to_cut() -> bool:
            return len(pending) <= self.max_inflight or pending_bytes <= window

        def may_cut() -> bool:
            """A window is ready and the bounds allow cutting it now."""
            return (
                chunker.buffered + new_bytes > window
                and room_to_cut()
                and (file_lane is None or file_lane.backlog <= _FILE_LANE_BACKLOG)
            )

        def pop() -> Chunk:
            nonlocal pending_bytes
            span, job, index = pending.popleft()
            pending_bytes -= span.length
            return Chunk(span.offset, span.length, job.result()[index], span.data)

        try:
            async for piece in source:
                size = piece.nbytes if isinstance(piece, memoryview) else len(piece)
                if not size:
                    continue
                self.size += size
                new.append(piece)
                new_bytes += size
                if cutting is not None and (cutting.done() or new_bytes > window):
                    spans = await cutting
                    cutting = None
                    # the next cut goes to the executor first: cutting is the one lane that
                    # everything else waits for
                    if may_cut():
                        cutting = jobs.submit(chunker.cut, new)
                        new = []
                        new_bytes = 0
                    dispatch(spans)
                if cutting is None and chunker.buffered + new_bytes > window:
                    # back-pressure: let the consumer take chunks before cutting more
                    while not room_to_cut():
                        await pending[0][1]  # returns at once if done; raises its error
                        yield pop()
                    if file_lane is not None:
                        await file_lane.drain(_FILE_LANE_BACKLOG)
                    cutting = jobs.submit(chunker.cut, new)
                    new = []
                    new_bytes = 0
                while pending and pending[0][1].done():
                    yield pop()
            if cutting is not None:
                spans = await cutting
                cutting = None
                dispatch(spans)
            cutting = jobs.submit(chunker.cut_final, new)
            new = []
            new_bytes = 0
            spans = await cutting
            cutting = None
            dispatch(spans)
            while pending:
                await pending[0][1]  # returns at once if done; raises its error
                yield pop()
            if file_lane is not None:
                self.sha256 = await file_lane.hexdigest()
            completed = True
        finally:
            self._busy = False
            if not completed:
                jobs.cancel_all()
                # cancel() also marks an already failed job's error as seen: only the first
                # error, the one the consumer got, is reported; nothing is logged
                if cutting is not None:
                    cutting.cancel()
                for _, job, _ in pending:
                    job.cancel()
                if file_lane is not None:
                    file_lane.cancel()
            if own_pool is not None:
                own_pool.shutdown(wait=False, cancel_futures=True)

    def _account(
        self,
        buffered: int,
        pending: deque[tuple[Span, asyncio.Future[list[str]], int]],
        file_lane: _FileLane | None,
    ) -> None:
        seen: dict[int, int] = {}
        _window_bytes([span for span, _, _ in pending], seen)
        if file_lane is not None:
            for spans in file_lane.held_windows():
                _window_bytes(spans, seen)
        held = sum(seen.values()) + buffered
        self.peak_held_bytes = max(self.peak_held_bytes, held)
        self.peak_pending = max(self.peak_pending, len(pending))
