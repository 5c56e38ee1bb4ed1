"""Chunk id helpers shared by every store: id validation and SHA-256 verification."""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections.abc import Iterable

from dfms.errors import ValidationFailed
from dfms.storage.base import Buffer

__all__ = [
    "INLINE_HASH_LIMIT",
    "buffer_size",
    "check_hash",
    "check_hashes",
    "frozen",
    "is_chunk_hash",
    "sha256_hex",
    "sha256_hex_async",
]

_CHUNK_HASH = re.compile(r"[0-9a-f]{64}")

#: Buffers up to this size are hashed on the event loop (a few microseconds); larger ones in a
#: worker thread (hashlib releases the GIL, so the loop keeps serving other requests).
INLINE_HASH_LIMIT = 64 * 1024


def is_chunk_hash(value: object) -> bool:
    """True for a chunk id: exactly 64 lowercase hex digits."""
    return isinstance(value, str) and len(value) == 64 and _CHUNK_HASH.fullmatch(value) is not None


def check_hash(chunk_hash: str) -> str:
    """Return ``chunk_hash`` if it is a valid chunk id, else raise ``ValidationFailed``."""
    if not is_chunk_hash(chunk_hash):
        raise ValidationFailed(
            "chunk id must be 64 lowercase hex digits", chunk_hash=str(chunk_hash)[:80]
        )
    return chunk_hash


def check_hashes(hashes: Iterable[str]) -> list[str]:
    """Validate every id (``ValidationFailed`` on the first bad one); return them as a list."""
    return [check_hash(h) for h in hashes]


def sha256_hex(data: Buffer) -> str:
    """Lowercase hex SHA-256 of ``data`` (blocking; call from a thread for large buffers)."""
    return hashlib.sha256(data).hexdigest()


def buffer_size(data: Buffer) -> int:
    """Size of ``data`` in bytes (``len`` of a memoryview counts items, not bytes)."""
    return data.nbytes if isinstance(data, memoryview) else len(data)


async def sha256_hex_async(data: Buffer) -> str:
    """SHA-256 of ``data`` without stalling the event loop on large buffers."""
    if buffer_size(data) <= INLINE_HASH_LIMIT:
        return sha256_hex(data)
    return await asyncio.to_thread(sha256_hex, data)


def frozen(data: Buffer) -> bytes | memoryview:
    """``data`` itself when it cannot change (bytes, a read-only view), else an immutable copy.

    The upload pipeline hands out read-only views of immutable windows: writing them needs no
    copy. A caller's bytearray could change under a write in progress, so that one is copied.
    """
    if isinstance(data, bytes):
        return data
    if isinstance(data, memoryview) and data.readonly and data.c_contiguous:
        return data.cast("B") if data.format != "B" else data
    return bytes(data)
