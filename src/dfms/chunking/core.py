"""The streaming chunker core: one push-based, synchronous chunker behind ``make_chunker``.

The core only buffers and cuts; hashing is done by whoever consumes the spans (so that the async
pipeline can hash in other threads while the next window is being cut). ``Chunker.feed`` and
``Chunker.finish`` are the convenient hashed form for synchronous callers.

How a stream is cut (the same for every algorithm):

1. Incoming blocks are collected in a list, not copied.
2. Once more than ``max_size`` bytes are buffered, the buffered pieces are joined ONCE into an
   immutable ``bytes`` window and the algorithm cuts it. Every chunk except the last one is final:
   its end was found (or forced at ``max_size``) by looking only at bytes inside the window, so a
   longer window would find the same cut. The last one may have been truncated by the window end;
   its bytes (at most ``max_size``) are copied out and kept as the start of the next window.
3. ``finish`` cuts what is left with the trailing bytes forming the last chunk.

So chunk boundaries depend only on the bytes and the parameters, never on how the input was split
into blocks (DESIGN.md invariant 5), and at most ``max_size + one block`` bytes are buffered
(invariant 8). Emitted chunk data are zero-copy ``memoryview`` slices of the window.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Protocol, TypeAlias

from dfms.chunking.params import ChunkParams

#: What the chunker accepts as input: any contiguous bytes-like object.
BytesLike: TypeAlias = bytes | bytearray | memoryview


@dataclass(frozen=True, slots=True)
class Span:
    """A cut but not yet hashed chunk: ``data`` is ``length`` bytes at stream ``offset``."""

    offset: int
    length: int
    data: memoryview = field(repr=False, compare=False)


@dataclass(frozen=True, slots=True)
class Chunk:
    """A content-defined chunk of a stream.

    ``sha256`` is the lowercase hex SHA-256 of ``data``; ``data`` is a read-only, zero-copy view of
    the chunker's window (keep it only as long as needed: it keeps the window alive).
    """

    offset: int
    length: int
    sha256: str
    data: memoryview = field(repr=False, compare=False)


def sha256_hex(data: BytesLike) -> str:
    """Lowercase hex SHA-256 of ``data`` (hashlib releases the GIL for large buffers)."""
    return hashlib.sha256(data).hexdigest()


def hash_span(span: Span) -> Chunk:
    """Hash a cut span into a :class:`Chunk`."""
    return Chunk(span.offset, span.length, sha256_hex(span.data), span.data)


def _nbytes(block: BytesLike) -> int:
    return block.nbytes if isinstance(block, memoryview) else len(block)


class Cutter(Protocol):
    """One content-defined chunking algorithm, applied to a whole window."""

    def cut(self, window: BytesLike, final: bool) -> list[int]:
        """Lengths of the consecutive chunks starting at ``window[0]``.

        With ``final`` false, a trailing chunk whose end might move if more bytes followed is
        left out (it may be left out even if its end is already certain); with ``final`` true
        the trailing bytes form the last chunk, so the lengths add up to ``len(window)``.
        """
        ...


def make_cutter(params: ChunkParams) -> Cutter:
    """The cutter for ``params.algorithm``."""
    if params.algorithm == "rabin":
        from dfms.chunking.rabin import RabinCutter

        return RabinCutter(params)
    from dfms.chunking.fastcdc import FastCDCCutter

    return FastCDCCutter(params)


class Chunker:
    """Push-based streaming chunker; see the module docstring. Not thread-safe: use it from one
    thread at a time (the async pipeline hands it from thread to thread, one call at a time)."""

    __slots__ = (
        "_carried",
        "_cutter",
        "_pieces",
        "buffered",
        "finished",
        "offset",
        "params",
        "peak_buffered",
    )

    def __init__(self, params: ChunkParams, cutter: Cutter | None = None) -> None:
        self.params = params
        self._cutter = cutter if cutter is not None else make_cutter(params)
        self._pieces: list[BytesLike] = []
        #: bytes at the start of ``_pieces`` carried over from the previous window
        self._carried = 0
        #: bytes held right now (the undecided tail plus blocks not cut yet)
        self.buffered = 0
        #: the most bytes ever held at once; at most ``max_size`` plus the largest block
        self.peak_buffered = 0
        #: stream offset of the first byte not yet emitted in a chunk
        self.offset = 0
        self.finished = False

    def cut(
        self,
        blocks: Iterable[BytesLike],
        on_window: Callable[[memoryview], None] | None = None,
    ) -> list[Span]:
        """Append ``blocks`` and return the spans that became final (possibly none).

        ``on_window``, if given, is called with each joined window's bytes that no earlier call
        saw (a read-only view), so that every byte of the stream is passed exactly once, in
        order (the pipeline's whole-stream hash reads the joined window instead of the pieces).

        ``bytes`` and read-only ``memoryview`` blocks are kept by reference until cut: do not
        change their underlying memory (``memoryview(bytearray).toreadonly()`` would allow it).
        Writable buffers (``bytearray``, writable views) are copied, so they can be reused.
        """
        if self.finished:
            raise RuntimeError("chunker already finished")
        for block in blocks:
            size = _nbytes(block)
            if size:
                # bytes and read-only views are kept as they are (zero-copy); a writable buffer
                # may be reused by the caller, so it is copied now
                if not isinstance(block, bytes) and not (
                    isinstance(block, memoryview) and block.readonly
                ):
                    block = bytes(block)
                self._pieces.append(block)
                self.buffered += size
        self.peak_buffered = max(self.peak_buffered, self.buffered)
        if self.buffered <= self.params.max_size:
            return []
        return self._cut_window(final=False, on_window=on_window)

    def cut_final(
        self,
        blocks: Iterable[BytesLike] = (),
        on_window: Callable[[memoryview], None] | None = None,
    ) -> list[Span]:
        """Append ``blocks`` (if any), then cut everything left; the chunker is then finished."""
        spans = self.cut(blocks, on_window)
        spans.extend(self._cut_window(final=True, on_window=on_window))
        self.finished = True
        return spans

    def feed(self, block: BytesLike) -> list[Chunk]:
        """Append one block; return the chunks that became final, hashed."""
        return [hash_span(span) for span in self.cut((block,))]

    def finish(self) -> list[Chunk]:
        """End of input: return the remaining chunks, hashed (none for an empty stream)."""
        return [hash_span(span) for span in self.cut_final()]

    def _cut_window(
        self, final: bool, on_window: Callable[[memoryview], None] | None = None
    ) -> list[Span]:
        pieces = self._pieces
        if not pieces:
            return []
        # bytes is immutable, so a single bytes block can be cut in place; anything else (several
        # pieces, or a view) is copied exactly once here
        window = pieces[0] if len(pieces) == 1 and type(pieces[0]) is bytes else b"".join(pieces)
        view = memoryview(window)
        if on_window is not None and len(window) > self._carried:
            on_window(view[self._carried :])
        lengths = self._cutter.cut(window, final)
        spans: list[Span] = []
        start = 0
        base = self.offset
        for length in lengths:
            end = start + length
            spans.append(Span(base + start, length, view[start:end]))
            start = end
        self.offset = base + start
        rest = len(window) - start
        # copy the undecided tail out, so the window is freed as soon as its chunks are
        self._pieces = [window[start:]] if rest else []
        self._carried = rest
        self.buffered = rest
        return spans


def make_chunker(params: ChunkParams | None = None) -> Chunker:
    """The streaming chunker for ``params`` (default :class:`ChunkParams`)."""
    return Chunker(params if params is not None else ChunkParams())


def cut_buffer(data: BytesLike, params: ChunkParams | None = None) -> list[Chunk]:
    """Chunk a whole in-memory buffer (the same boundaries as streaming it)."""
    chunker = make_chunker(params)
    return [hash_span(span) for span in chunker.cut_final((data,))]
