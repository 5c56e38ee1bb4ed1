"""Content-defined chunking: FastCDC and Rabin behind one factory, sync and async front-ends.

- :class:`ChunkParams`: algorithm and size bounds (validated).
- :func:`make_chunker`: the push-based streaming core (``feed``/``finish``, or ``cut``/``cut_final``
  for unhashed spans).
- :func:`iter_file_chunks`: chunk a binary file object (sync, cut and hashed on two threads).
- :func:`iter_buffer_chunks`: chunk a whole in-memory buffer (sync, cut and hashed on two threads).
- :class:`ChunkPipeline`: chunk an async byte stream with cutting and hashing in threads.

Boundaries are a pure function of the bytes and the params (DESIGN.md invariant 5); the golden
tests in ``tests/unit/chunking`` pin them. See ``docs/chunking.md``.
"""

from dfms.chunking.core import Chunk, Chunker, Span, cut_buffer, make_chunker
from dfms.chunking.files import iter_file_chunks
from dfms.chunking.parallel import iter_buffer_chunks
from dfms.chunking.params import ChunkParams
from dfms.chunking.pipeline import ChunkPipeline

__all__ = [
    "Chunk",
    "ChunkParams",
    "ChunkPipeline",
    "Chunker",
    "Span",
    "cut_buffer",
    "iter_buffer_chunks",
    "iter_file_chunks",
    "make_chunker",
]
