"""In-memory chunk store: for tests and throwaway setups. Same contract as every other store."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Sequence

from dfms.errors import ChunkCorrupt, ChunkHashMismatch, ChunkNotFound, StoreUnavailable
from dfms.storage.base import Buffer, ChunkInfo, StoreStat
from dfms.storage.hashing import check_hash, check_hashes, sha256_hex_async

__all__ = ["MemoryStore"]

#: Nominal capacity reported by ``stat`` when none is given (1 TiB).
DEFAULT_CAPACITY = 1 << 40


class MemoryStore:
    """A dict of chunk id -> bytes. Verifies on ``put`` and again on ``get``.

    ``corrupt`` damages a stored chunk in place so tests can exercise the corrupt-replica paths.
    """

    verifies_reads = True

    def __init__(self, name: str = "memory", *, capacity: int = DEFAULT_CAPACITY) -> None:
        self.name = name
        self._capacity = capacity
        self._chunks: dict[str, bytes] = {}
        self._mtimes: dict[str, float] = {}
        self._used = 0
        self._closed = False

    def _check_open(self) -> None:
        if self._closed:
            raise StoreUnavailable(f"store {self.name!r} is closed", store=self.name)

    async def put(self, chunk_hash: str, data: Buffer, *, trusted: bool = False) -> None:
        self._check_open()
        check_hash(chunk_hash)
        payload = bytes(data)  # an immutable snapshot: the caller may reuse its buffer
        actual = chunk_hash if trusted else await sha256_hex_async(payload)
        if actual != chunk_hash:
            raise ChunkHashMismatch(
                f"bytes given for chunk {chunk_hash} hash to {actual}",
                store=self.name,
                chunk_hash=chunk_hash,
                actual=actual,
            )
        self._check_open()
        existing = self._chunks.get(chunk_hash)
        if existing == payload:
            # Idempotent: a valid copy is already there. Refresh its mtime like LocalDirStore does
            # (orphan sweeps use it as the age of bytes no table knows yet).
            self._mtimes[chunk_hash] = time.time()
            return
        self._used += len(payload) - (len(existing) if existing is not None else 0)
        self._chunks[chunk_hash] = payload
        self._mtimes[chunk_hash] = time.time()

    async def get(self, chunk_hash: str) -> bytes:
        self._check_open()
        check_hash(chunk_hash)
        data = self._chunks.get(chunk_hash)
        if data is None:
            raise ChunkNotFound(
                f"chunk {chunk_hash} not found on {self.name}",
                store=self.name,
                chunk_hash=chunk_hash,
            )
        if await sha256_hex_async(data) != chunk_hash:
            raise ChunkCorrupt(
                f"chunk {chunk_hash} on {self.name} fails verification",
                store=self.name,
                chunk_hash=chunk_hash,
            )
        return data

    async def has(self, hashes: Sequence[str]) -> set[str]:
        self._check_open()
        return {h for h in check_hashes(hashes) if h in self._chunks}

    async def delete(self, hashes: Sequence[str]) -> int:
        self._check_open()
        removed = 0
        for h in set(check_hashes(hashes)):
            data = self._chunks.pop(h, None)
            if data is not None:
                self._mtimes.pop(h, None)
                self._used -= len(data)
                removed += 1
        return removed

    async def iterate(self) -> AsyncIterator[ChunkInfo]:
        self._check_open()
        for h in list(self._chunks):
            data = self._chunks.get(h)
            if data is not None:
                yield ChunkInfo(hash=h, size=len(data), mtime=self._mtimes.get(h, 0.0))

    async def stat(self) -> StoreStat:
        self._check_open()
        return StoreStat(
            capacity=self._capacity,
            free=max(0, self._capacity - self._used),
            used=self._used,
            chunk_count=len(self._chunks),
        )

    async def sync(self) -> None:
        self._check_open()

    async def close(self) -> None:
        self._closed = True

    # -- test helpers ------------------------------------------------------------------------

    def corrupt(self, chunk_hash: str, offset: int = 0) -> None:
        """Flip the bits of one byte of a stored chunk (``KeyError`` if absent). Tests only."""
        data = bytearray(self._chunks[chunk_hash])
        if data:
            data[offset % len(data)] ^= 0xFF
        else:
            data.append(0)  # an empty chunk "corrupts" into a one-byte one
        self._used += len(data) - len(self._chunks[chunk_hash])
        self._chunks[chunk_hash] = bytes(data)

    def __len__(self) -> int:
        return len(self._chunks)
