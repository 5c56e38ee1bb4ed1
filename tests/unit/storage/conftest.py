"""Store fixtures shared by the storage tests.

``STORE_FACTORIES`` lists every ``ChunkStore`` implementation the contract suite runs against.
A new implementation (remote node, S3) adds one ``StoreFactory`` entry: how to build a fresh,
empty store in a temporary directory, and how to damage one stored chunk behind its back.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from dfms.storage.base import ChunkStore
from dfms.storage.faults import FaultyStore
from dfms.storage.local import LocalDirStore
from dfms.storage.memory import MemoryStore


def chunk(i: int, size: int = 1000) -> tuple[str, bytes]:
    """Deterministic test chunk number ``i``: (hash, bytes)."""
    seed = hashlib.sha256(f"chunk-{i}".encode()).digest()
    data = (seed * (size // len(seed) + 1))[:size]
    return hashlib.sha256(data).hexdigest(), data


@dataclass(frozen=True)
class StoreFactory:
    """How the contract suite builds and damages one kind of store."""

    id: str
    make: Callable[[Path], Awaitable[ChunkStore]]
    #: Corrupt the stored bytes of a chunk so that the store's own verification catches it.
    corrupt: Callable[[ChunkStore, str], Awaitable[None]]


async def _make_memory(tmp: Path) -> ChunkStore:
    return MemoryStore("mem")


async def _corrupt_memory(store: ChunkStore, chunk_hash: str) -> None:
    assert isinstance(store, MemoryStore)
    store.corrupt(chunk_hash)


def _make_local(mode: str) -> Callable[[Path], Awaitable[ChunkStore]]:
    async def make(tmp: Path) -> ChunkStore:
        return await LocalDirStore.open(tmp / "store", name=f"local-{mode}", fsync=mode)  # type: ignore[arg-type]

    return make


def flip_byte_on_disk(path: Path, offset: int = 0) -> None:
    """Invert one byte of a file in place (bitrot)."""
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0xFF]))
        f.flush()
        os.fsync(f.fileno())


async def _corrupt_local(store: ChunkStore, chunk_hash: str) -> None:
    assert isinstance(store, LocalDirStore)
    flip_byte_on_disk(store.path_for(chunk_hash))


async def _make_faulty_memory(tmp: Path) -> ChunkStore:
    return FaultyStore(MemoryStore("inner"), name="faulty")


async def _corrupt_faulty_memory(store: ChunkStore, chunk_hash: str) -> None:
    assert isinstance(store, FaultyStore) and isinstance(store.inner, MemoryStore)
    store.inner.corrupt(chunk_hash)


STORE_FACTORIES: list[StoreFactory] = [
    StoreFactory("memory", _make_memory, _corrupt_memory),
    StoreFactory("local-always", _make_local("always"), _corrupt_local),
    StoreFactory("local-batch", _make_local("batch"), _corrupt_local),
    StoreFactory("local-never", _make_local("never"), _corrupt_local),
    # A FaultyStore with no fault injected must be indistinguishable from its inner store.
    StoreFactory("faulty-passthrough", _make_faulty_memory, _corrupt_faulty_memory),
]


@dataclass
class StoreCase:
    store: ChunkStore
    factory: StoreFactory

    async def corrupt(self, chunk_hash: str) -> None:
        await self.factory.corrupt(self.store, chunk_hash)


@pytest.fixture(params=STORE_FACTORIES, ids=lambda f: f.id)
async def store_case(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[StoreCase]:
    factory: StoreFactory = request.param
    store = await factory.make(tmp_path)
    yield StoreCase(store, factory)
    await store.close()


@pytest.fixture
async def store(store_case: StoreCase) -> ChunkStore:
    return store_case.store


MakeChunk = Callable[..., tuple[str, bytes]]


@pytest.fixture
def make_chunk() -> MakeChunk:
    """``make_chunk(i, size=1000) -> (hash, bytes)``: deterministic test chunks."""
    return chunk


@pytest.fixture
def flip_on_disk() -> Callable[[Path, int], None]:
    """``flip_on_disk(path, offset)``: invert one byte of a file in place."""
    return flip_byte_on_disk
