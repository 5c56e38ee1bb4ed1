"""The chunk store seam: one protocol, several implementations (memory, local directory, later
remote node and S3). Chunks are addressed by the lowercase hex SHA-256 of their bytes.

Errors raised (all from :mod:`dfms.errors`): ``ChunkNotFound`` (absent), ``ChunkCorrupt`` (present
but bytes do not hash to the id), ``ChunkHashMismatch`` (``put`` given bytes that do not match),
``StoreUnavailable`` (the store cannot be reached or failed with an I/O error).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

Buffer = bytes | bytearray | memoryview


@dataclass(frozen=True, slots=True)
class ChunkInfo:
    """One stored chunk as seen by ``iterate``."""

    hash: str
    size: int
    mtime: float


@dataclass(frozen=True, slots=True)
class StoreStat:
    """Capacity figures of one store, in bytes."""

    capacity: int
    free: int
    used: int
    chunk_count: int


@runtime_checkable
class ChunkStore(Protocol):
    """A content-addressed chunk store. Every method is safe to call concurrently."""

    name: str
    #: True when ``get`` verifies the returned bytes in this process (so a caller in the same
    #: process need not hash them again). False for anything that may hand back unverified bytes.
    verifies_reads: bool

    async def put(self, chunk_hash: str, data: Buffer, *, trusted: bool = False) -> None:
        """Store ``data`` under ``chunk_hash`` after verifying it; idempotent.

        ``trusted=True`` says the caller computed ``chunk_hash`` from these very bytes in this
        process, so an in-process store may skip re-hashing them. A store that receives the bytes
        over a network (a remote node) always verifies on its side of the wire.
        """
        ...

    async def get(self, chunk_hash: str) -> bytes:
        """Return the verified bytes of the chunk."""
        ...

    async def has(self, hashes: Sequence[str]) -> set[str]:
        """Return the subset of ``hashes`` that are stored here."""
        ...

    async def delete(self, hashes: Sequence[str]) -> int:
        """Delete the given chunks (absent ones are ignored); return how many were removed."""
        ...

    def iterate(self) -> AsyncIterator[ChunkInfo]:
        """Yield every stored chunk (hash, size, mtime) with bounded memory."""
        ...

    async def stat(self) -> StoreStat:
        """Capacity, free bytes, used bytes and chunk count."""
        ...

    async def sync(self) -> None:
        """Make every chunk written so far durable (no-op for stores that are durable per put)."""
        ...

    async def close(self) -> None:
        """Release resources."""
        ...
