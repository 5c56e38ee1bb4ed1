"""The async chunking pipeline of the upload path: bytes in, hashed chunks out, off the event loop.

Threading model (two cores are used; pyfastcdc's cut loop, the Rabin extension and hashlib all
release the GIL on large buffers)::

    event loop   collects pieces into windows, submits each window once, yields chunks in order
    cut lane     join + cut window k, then submits the hash jobs of its chunks   (serial)
    file lane    whole-stream SHA-256 of window k's new bytes                    (serial)
    hash jobs    SHA-256 of the chunks of window k, in batches                   (parallel)

Lanes are serial queues of jobs run back to back by one thread of the executor at a time, so the
event loop touches each window once (submit) and each hash batch once (collect): the work itself
flows from thread to thread without waiting for the loop. The cut lane is the one sequential chain
everything depends on (each cut needs the undecided tail of the previous window); it is never
queued behind hashing because it hands hash work to the executor instead of doing it.

Windows: pieces are collected until at least ``window_size`` bytes (default ``MIN_WINDOW`` or
``max_size``, whichever is larger) are buffered, then handed to the lanes as one job. Bigger windows
mean fewer jobs and less re-scanning of the undecided tail; smaller ones, less memory.

Bounds (DESIGN.md invariant 8): at most ``max_inflight`` windows are submitted and not yet fully
yielded; the loop stops reading the source until the oldest is consumed. Memory is therefore about
``(max_inflight + 1) * window_size + max_size``, independent of the stream's length;
``peak_held_bytes`` and ``peak_pending`` report what was actually held.

Pieces are kept by reference until their window is cut and hashed: a source must not change a
buffer after yielding it.

Cancellation: if the consumer stops iterating, or its task is cancelled, queued jobs are
cancelled, running jobs (each bounded: one window cut or one batch hashed) finish on their own and
their results are dropped, and a private pool's threads then exit. Nothing is logged.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterable, Callable
from concurrent.futures import Executor, ThreadPoolExecutor
from concurrent.futures import Future as ConcurrentFuture
from dataclasses import dataclass, field
from typing import Any, Final, TypeVar

from dfms.chunking.core import BytesLike, Chunk, Chunker, Span, make_chunker, sha256_hex
from dfms.chunking.params import ChunkParams

T = TypeVar("T")

#: threads of the private pool: the cut lane, the file lane and one chunk hasher may all run
DEFAULT_WORKERS: Final = 3
#: name prefix of the private pool's threads (tests look for leftovers by it)
THREAD_NAME_PREFIX: Final = "dfms-chunking"
#: smallest window the pipeline cuts at once (bigger than max_size for small chunk sizes)
MIN_WINDOW: Final = 4 << 20
#: consecutive chunks are hashed in one job until it covers this many bytes
HASH_BATCH_BYTES: Final = 1 << 20


class _Lane:
    """A serial queue of jobs on a shared executor: jobs run one after another, in submission
    order, each lane occupying at most one executor thread at a time."""

    def __init__(self, executor: Executor) -> None:
        self._executor = executor
        self._lock = threading.Lock()
        self._queue: deque[tuple[Callable[..., Any], tuple[Any, ...], ConcurrentFuture[Any]]] = (
            deque()
        )
        self._running = False

    def submit(self, fn: Callable[..., T], *args: Any) -> ConcurrentFuture[T]:
        future: ConcurrentFuture[T] = ConcurrentFuture()
        with self._lock:
            self._queue.append((fn, args, future))
            if self._running:
                return future
            self._running = True
        try:
            self._executor.submit(self._drain)
        except RuntimeError:  # executor shut down: nothing will ever run
            with self._lock:
                self._running = False
            self.cancel()
        return future

    def _drain(self) -> None:
        while True:
            with self._lock:
                if not self._queue:
                    self._running = False
                    return
                fn, args, future = self._queue.popleft()
            if not future.set_running_or_notify_cancel():
                continue
            try:
                result = fn(*args)
            except BaseException as exc:  # noqa: BLE001 - handed to whoever awaits the job
                future.set_exception(exc)
            else:
                future.set_result(result)

    def cancel(self) -> None:
        """Cancel every job not started yet."""
        with self._lock:
            queued = list(self._queue)
            self._queue.clear()
        for _, _, future in queued:
            future.cancel()


def _hash_batch(views: list[memoryview]) -> list[str]:
    return [sha256_hex(view) for view in views]


def _update_file_hash(hasher: Any, pieces: list[BytesLike]) -> None:
    for piece in pieces:
        hasher.update(piece)


@dataclass(slots=True)
class _Batch:
    spans: list[Span]
    hashes: ConcurrentFuture[list[str]]


@dataclass(slots=True)
class _Cut:
    """What the cut lane made of one window: hash batches, and the whole-stream hash jobs of
    the bytes it joined."""

    batches: list[_Batch]
    file_jobs: list[ConcurrentFuture[None]]


@dataclass(slots=True)
class _Window:
    """One submitted window: its cut and how much of it was yielded."""

    nbytes: int
    cut: ConcurrentFuture[_Cut]
    batches: deque[_Batch] = field(default_factory=deque)
    cut_taken: bool = False


def _cut_and_dispatch(
    chunker: Chunker,
    executor: Executor,
    pieces: list[BytesLike],
    final: bool,
    file_lane: _Lane | None,
    hasher: Any,
) -> _Cut:
    """Cut lane job: cut one window and submit the hash jobs of its chunks and of the bytes it
    joined (never waits). The whole-stream hash reads the joined window, so the pieces can be
    freed at once; the file lane is serial and fed only from here, so it sees the stream in
    order."""
    file_jobs: list[ConcurrentFuture[None]] = []

    def on_window(new_bytes: memoryview) -> None:
        if file_lane is not None:
            file_jobs.append(file_lane.submit(_update_file_hash, hasher, [new_bytes]))

    spans = chunker.cut_final(pieces, on_window) if final else chunker.cut(pieces, on_window)
    pieces.clear()
    batches: list[_Batch] = []
    batch: list[Span] = []
    batch_bytes = 0
    for span in spans:
        batch.append(span)
        batch_bytes += span.length
        if batch_bytes >= HASH_BATCH_BYTES:
            batches.append(_Batch(batch, executor.submit(_hash_batch, [s.data for s in batch])))
            batch = []
            batch_bytes = 0
    if batch:
        batches.append(_Batch(batch, executor.submit(_hash_batch, [s.data for s in batch])))
    return _Cut(batches, file_jobs)


async def _result(future: ConcurrentFuture[T]) -> T:
    """The result of a thread job; no loop round trip when it is already done."""
    if future.done():
        return future.result()
    return await asyncio.wrap_future(future)


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
        window_size: int | None = None,
    ) -> None:
        if max_inflight < 1:
            raise ValueError(f"max_inflight={max_inflight} must be at least 1")
        self.params = params if params is not None else ChunkParams()
        if window_size is None:
            window_size = max(self.params.max_size, MIN_WINDOW)
        if window_size < self.params.max_size:
            raise ValueError(
                f"window_size={window_size} must be at least max_size={self.params.max_size}"
            )
        #: windows submitted and not yet fully yielded, at most
        self.max_inflight = max_inflight
        self.window_size = window_size
        self.file_hash = file_hash
        self._executor = executor
        self._busy = False
        #: bytes of the stream read so far (its length once iteration completed)
        self.size = 0
        #: hex SHA-256 of the whole stream once iteration completed ("" before, or without
        #: ``file_hash``)
        self.sha256 = ""
        #: largest number of bytes held at once (windows in flight + the one being collected)
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
        cut_lane = _Lane(executor)
        file_lane = _Lane(executor)
        hasher = hashlib.sha256()
        # whole-stream hash jobs not known to be finished: (window bytes, job)
        file_jobs: deque[tuple[int, ConcurrentFuture[None]]] = deque()
        chunker = make_chunker(self.params)
        window_size = self.window_size
        inflight: deque[_Window] = deque()
        new: list[BytesLike] = []
        new_bytes = 0
        completed = False

        def submit(final: bool) -> None:
            nonlocal new, new_bytes
            cut = cut_lane.submit(
                _cut_and_dispatch,
                chunker,
                executor,
                new,
                final,
                file_lane if self.file_hash else None,
                hasher,
            )
            inflight.append(_Window(new_bytes, cut))
            # both queues hold the newest windows, so the longer one holds all that are held
            held = max(sum(w.nbytes for w in inflight), sum(n for n, _ in file_jobs))
            self.peak_held_bytes = max(self.peak_held_bytes, held + self.params.max_size)
            new = []
            new_bytes = 0

        def ready() -> bool:
            """The next chunk in order can be yielded without waiting."""
            if not inflight:
                return False
            head = inflight[0]
            if not head.cut_taken:
                return head.cut.done()
            return not head.batches or head.batches[0].hashes.done()

        async def next_batch() -> list[Chunk]:
            """Wait for the oldest window's next hash batch (its cut first); drop finished
            windows."""
            head = inflight[0]
            if not head.cut_taken:
                cut: _Cut = await _result(head.cut)
                head.batches.extend(cut.batches)
                file_jobs.extend((head.nbytes, job) for job in cut.file_jobs)
                head.cut_taken = True
                pending = sum(len(b.spans) for w in inflight for b in w.batches)
                self.peak_pending = max(self.peak_pending, pending)
            if not head.batches:
                inflight.popleft()
                return []
            batch = head.batches[0]
            hashes = await _result(batch.hashes)
            head.batches.popleft()
            if not head.batches:
                inflight.popleft()
            return [
                Chunk(s.offset, s.length, h, s.data)
                for s, h in zip(batch.spans, hashes, strict=True)
            ]

        try:
            async for piece in source:
                size = piece.nbytes if isinstance(piece, memoryview) else len(piece)
                if not size:
                    continue
                self.size += size
                new.append(piece)
                new_bytes += size
                if new_bytes >= window_size:
                    # back-pressure: the oldest window is consumed before another is submitted
                    while len(inflight) >= self.max_inflight:
                        for chunk in await next_batch():
                            yield chunk
                    while file_jobs and file_jobs[0][1].done():
                        file_jobs.popleft()[1].result()  # raises the lane's error early
                    while len(file_jobs) >= self.max_inflight:
                        await _result(file_jobs.popleft()[1])
                    submit(final=False)
                while ready():
                    for chunk in await next_batch():
                        yield chunk
            submit(final=True)
            while inflight:
                for chunk in await next_batch():
                    yield chunk
            if self.file_hash:
                for _, job in file_jobs:
                    await _result(job)
                self.sha256 = hasher.hexdigest()
            completed = True
        finally:
            self._busy = False
            if not completed:
                cut_lane.cancel()
                file_lane.cancel()
                for window in inflight:
                    # cancel() also marks an already failed job's error as seen: only the first
                    # error, the one the consumer got, is reported; nothing is logged
                    window.cut.cancel()
                    cut = window.cut
                    taken = window.cut_taken or not cut.done() or cut.cancelled()
                    if not taken and cut.exception() is None:
                        window.batches.extend(cut.result().batches)
                        for job in cut.result().file_jobs:
                            job.cancel()
                    for batch in window.batches:
                        batch.hashes.cancel()
                for _, job in file_jobs:
                    job.cancel()
            if own_pool is not None:
                own_pool.shutdown(wait=False, cancel_futures=True)
