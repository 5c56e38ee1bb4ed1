"""Hashing once per chunk on the hot paths without weakening verification."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from dfms.errors import ChunkHashMismatch, ChunkUnavailable
from dfms.placement.ring import HashRing, NodeInfo
from dfms.storage import hashing, local
from dfms.storage.cluster import ReplicatedStore
from dfms.storage.faults import Fault, FaultyStore
from dfms.storage.local import LocalDirStore
from dfms.storage.memory import MemoryStore


def chunk() -> tuple[str, bytes]:
    data = os.urandom(100_000)
    return hashlib.sha256(data).hexdigest(), data


async def test_trusted_put_skips_rehash(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A trusted put through the cluster to a local store hashes nothing; an untrusted one does."""
    calls = []
    real = hashing.sha256_hex

    def counting(data: bytes) -> str:
        calls.append(len(data))
        return real(data)

    monkeypatch.setattr(local, "sha256_hex", counting)
    monkeypatch.setattr(hashing, "sha256_hex", counting)
    store = await LocalDirStore.open(tmp_path, name="n1", fsync="never")
    cluster = ReplicatedStore(
        HashRing([NodeInfo("n1")]), {"n1": store}, replication=1, write_quorum=1
    )
    h, data = chunk()
    assert await cluster.put(h, data, trusted=True) == ["n1"]
    assert calls == []
    h2, data2 = chunk()
    await cluster.put(h2, data2)
    assert calls, "an untrusted put must verify the bytes"


async def test_untrusted_mismatch_still_rejected(tmp_path: Path) -> None:
    """Without trusted, bytes that do not match their id are refused by every store."""
    h, data = chunk()
    for store in (MemoryStore(), await LocalDirStore.open(tmp_path, fsync="never")):
        with pytest.raises(ChunkHashMismatch):
            await store.put(h, data + b"x")
        assert await store.has([h]) == set()


async def test_reads_from_non_verifying_store_are_rechecked() -> None:
    """A store that does not verify in-process (fault injector) is re-hashed by the cluster, so
    flipped bytes are never returned even though the inner store verified its own copy."""
    h, data = chunk()
    inner = MemoryStore("a")
    await inner.put(h, data)
    bad = FaultyStore(inner)
    bad.inject("get", Fault.CORRUPT)
    assert bad.verifies_reads is False and inner.verifies_reads is True
    cluster = ReplicatedStore(HashRing([NodeInfo("a")]), {"a": bad}, replication=1, write_quorum=1)
    with pytest.raises(ChunkUnavailable):
        await cluster.get(h)
    bad.clear()
    assert await cluster.get(h) == data


def test_frozen_copies_only_mutable_buffers() -> None:
    """Read-only views and bytes pass through without a copy; bytearrays are snapshotted."""
    from dfms.storage.hashing import frozen

    raw = b"abcdef"
    view = memoryview(raw)[1:4]
    assert frozen(raw) is raw
    assert frozen(view) is view
    ba = bytearray(b"xyz")
    snap = frozen(ba)
    ba[0] = 0
    assert snap == b"xyz" and isinstance(snap, bytes)
    wide = memoryview(bytes(8)).cast("I")
    assert len(frozen(wide)) == 8


async def test_cluster_put_of_readonly_view(tmp_path: Path) -> None:
    """A read-only view slice (what the pipeline yields) is stored and read back exactly."""
    h, data = chunk()
    window = b"pre" + data + b"post"
    view = memoryview(window)[3 : 3 + len(data)]
    store = await LocalDirStore.open(tmp_path, name="n1", fsync="never")
    cluster = ReplicatedStore(
        HashRing([NodeInfo("n1")]), {"n1": store}, replication=1, write_quorum=1
    )
    await cluster.put(h, view, trusted=True)
    assert await cluster.get(h) == data
    await cluster.put(h, view)  # idempotent, and verified this time
