"""Cut in one thread, hash in another: the synchronous fast path for whole buffers and files.

FastCDC's and Rabin's scans and hashlib's SHA-256 all release the GIL, so a producer thread can
cut chunk k+1 while the caller's thread hashes chunk k. On two cores the pair runs at about the
speed of the slower of the two, SHA-256 (``benchmarks/bench_chunking.py`` prints both).

- :func:`buffer_spans`: the spans of a whole in-memory buffer, cut window by window on zero-copy
  views of it (no join, no copy; only the undecided last chunk of each window is scanned again).
- :func:`reader_spans`: the spans of a file object read in blocks through the streaming
  :class:`~dfms.chunking.core.Chunker` (its usual memory bound).
- :func:`hashed_in_order`: runs a span producer in its own thread, at most ``lookahead`` spans
  ahead of the consumer, and yields the hashed :class:`~dfms.chunking.core.Chunk` s in order. An
  error of the producer is raised in the consumer; closing the generator early stops the producer
  (it checks between spans) and joins its thread.

Boundaries are exactly those of :func:`~dfms.chunking.core.make_chunker` for the same bytes and
params (the tests compare them on random inputs of many sizes).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Final

from dfms.chunking.core import BytesLike, Chunk, Span, hash_span, make_chunker, make_cutter
from dfms.chunking.params import ChunkParams

#: spans cut ahead of the hashing consumer, at most
SPAN_LOOKAHEAD: Final = 8
#: bytes cut per call of the cutter on a whole buffer (at least twice ``max_size``)
BUFFER_WINDOW: Final = 8 << 20
#: name of the producer threads (tests look for leftovers by it)
THREAD_NAME: Final = "dfms-cut"
#: how often a producer blocked on a full queue checks whether the consumer went away (seconds)
_POLL: Final = 0.05

_END: Final = object()


@dataclass(frozen=True, slots=True)
class _Failure:
    error: BaseException


def buffer_spans(data: BytesLike, params: ChunkParams | None = None) -> Iterator[Span]:
    """The spans of the whole buffer ``data``, in order; ``data`` must not change meanwhile."""
    params = params if params is not None else ChunkParams()
    view = memoryview(data)
    if view.ndim != 1 or view.itemsize != 1:
        view = view.cast("B")
    cutter = make_cutter(params)
    window = max(BUFFER_WINDOW, 2 * params.max_size)
    size = len(view)
    pos = 0
    while pos < size:
        end = min(pos + window, size)
        final = end == size
        lengths = cutter.cut(view[pos:end], final)
        if not lengths:  # a window of 2 * max_size always holds a decided chunk
            raise RuntimeError(f"cutter decided no chunk in {end - pos} bytes at offset {pos}")
        for length in lengths:
            yield Span(pos, length, view[pos : pos + length])
            pos += length


def reader_spans(
    read: Callable[[int], bytes], params: ChunkParams | None, block_size: int
) -> Iterator[Span]:
    """The spans of the stream that ``read(block_size)`` returns until it returns ``b""``."""
    if block_size <= 0:
        raise ValueError(f"block_size={block_size} must be positive")
    chunker = make_chunker(params)
    while block := read(block_size):
        yield from chunker.cut((block,))
    yield from chunker.cut_final()


def hashed_in_order(
    produce: Callable[[], Iterator[Span]], lookahead: int = SPAN_LOOKAHEAD
) -> Iterator[Chunk]:
    """Yield the hashed chunks of the spans ``produce()`` yields, cutting in a producer thread
    while this thread hashes; see the module docstring."""
    if lookahead < 1:
        raise ValueError(f"lookahead={lookahead} must be at least 1")
    spans: queue.Queue[object] = queue.Queue(maxsize=lookahead)
    stop = threading.Event()

    def offer(item: object) -> bool:
        while not stop.is_set():
            try:
                spans.put(item, timeout=_POLL)
            except queue.Full:
                continue
            return True
        return False

    def run() -> None:
        try:
            for span in produce():
                if not offer(span):
                    return
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, which re-raises it
            offer(_Failure(exc))
            return
        offer(_END)

    producer = threading.Thread(target=run, name=THREAD_NAME, daemon=True)
    producer.start()
    try:
        while True:
            item = spans.get()
            if item is _END:
                return
            if isinstance(item, _Failure):
                raise item.error
            assert isinstance(item, Span)
            yield hash_span(item)
    finally:
        stop.set()
        producer.join()


def iter_buffer_chunks(
    data: BytesLike, params: ChunkParams | None = None, *, lookahead: int = SPAN_LOOKAHEAD
) -> Iterator[Chunk]:
    """The hashed chunks of the whole buffer ``data``, cut and hashed on two threads."""
    return hashed_in_order(lambda: buffer_spans(data, params), lookahead)
