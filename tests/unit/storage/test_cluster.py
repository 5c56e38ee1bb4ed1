"""ReplicatedStore: quorum writes, verified reads with fallback, repair reports, fault injection.

Each scenario runs over FaultyStore-wrapped MemoryStores and LocalDirStores.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from dfms.errors import (
    ChunkHashMismatch,
    ChunkUnavailable,
    ConfigError,
    QuorumNotReached,
    StoreUnavailable,
    ValidationFailed,
)
from dfms.placement.ring import HashRing, NodeInfo, NodeState
from dfms.storage.base import Buffer, ChunkInfo, ChunkStore, StoreStat
from dfms.storage.cluster import RepairQueue, ReplicaProblem, ReplicatedStore
from dfms.storage.faults import Fault, FaultyStore
from dfms.storage.local import LocalDirStore
from dfms.storage.memory import MemoryStore

if TYPE_CHECKING:
    from conftest import MakeChunk

SHORT_TIMEOUT = 0.2  # hangs are cut off by this; no test waits on a clock otherwise


@dataclass
class Cluster:
    ring: HashRing
    nodes: dict[str, FaultyStore]
    repair: RepairQueue
    store: ReplicatedStore
    backend: str
    flip_on_disk: Callable[[Path, int], None]
    inners: dict[str, ChunkStore] = field(default_factory=dict)

    async def corrupt_at_rest(self, node: str, chunk_hash: str) -> None:
        inner = self.nodes[node].inner
        if isinstance(inner, MemoryStore):
            inner.corrupt(chunk_hash)
        else:
            assert isinstance(inner, LocalDirStore)
            self.flip_on_disk(inner.path_for(chunk_hash), 5)

    async def holders(self, chunk_hash: str) -> set[str]:
        return {n for n, s in self.nodes.items() if await s.inner.has([chunk_hash])}


MakeCluster = Callable[..., Awaitable[Cluster]]


@pytest.fixture(params=["memory", "local"])
async def make_cluster(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    flip_on_disk: Callable[[Path, int], None],
) -> AsyncIterator[MakeCluster]:
    backend: str = request.param
    made: list[Cluster] = []

    async def make(
        n_nodes: int = 5,
        *,
        replication: int = 3,
        write_quorum: int = 2,
        timeout: float = SHORT_TIMEOUT,
        zones: Sequence[str] | None = None,
    ) -> Cluster:
        ids = [f"n{i}" for i in range(n_nodes)]
        nodes: dict[str, FaultyStore] = {}
        for i in ids:
            inner: ChunkStore
            if backend == "memory":
                inner = MemoryStore(i)
            else:
                inner = await LocalDirStore.open(tmp_path / f"c{len(made)}" / i, name=i)
            nodes[i] = FaultyStore(inner)
        ring = HashRing(
            [
                NodeInfo(i, zone=zones[k % len(zones)] if zones else "default")
                for k, i in enumerate(ids)
            ]
        )
        repair = RepairQueue()
        store = ReplicatedStore(
            ring,
            nodes,
            replication=replication,
            write_quorum=write_quorum,
            timeout=timeout,
            repair=repair,
        )
        cluster = Cluster(ring, nodes, repair, store, backend, flip_on_disk)
        made.append(cluster)
        return cluster

    yield make
    for cluster in made:
        for node in cluster.nodes.values():
            node.release()
            await node.close()


# -- placement ----------------------------------------------------------------------------------


async def test_put_places_copies_on_the_ring_owners(
    make_cluster: MakeCluster, make_chunk: MakeChunk
) -> None:
    c = await make_cluster(6)
    for i in range(20):
        h, data = make_chunk(i)
        acked = await c.store.put(h, data)
        assert acked == c.ring.owners(h, 3) == c.store.owners(h)
        assert await c.holders(h) == set(acked)
        assert await c.store.get(h) == data
    assert len(c.repair) == 0


async def test_put_spreads_copies_over_zones(
    make_cluster: MakeCluster, make_chunk: MakeChunk
) -> None:
    c = await make_cluster(6, zones=["a", "b", "c"])
    zone = {n.id: n.zone for n in c.ring.nodes}
    for i in range(10):
        h, data = make_chunk(i)
        assert {zone[n] for n in await c.store.put(h, data)} == {"a", "b", "c"}


async def test_writes_skip_nodes_that_are_not_up(
    make_cluster: MakeCluster, make_chunk: MakeChunk
) -> None:
    c = await make_cluster(5)
    h, data = make_chunk(1)
    first = c.ring.owners(h, 3)[0]
    c.store.ring = c.ring.with_state(first, NodeState.DOWN)
    acked = await c.store.put(h, data)
    assert first not in acked and len(acked) == 3
    assert c.nodes[first].calls["put"] == 0


async def test_rf1_on_a_single_node(make_cluster: MakeCluster, make_chunk: MakeChunk) -> None:
    c = await make_cluster(1, replication=1, write_quorum=1)
    h, data = make_chunk(1)
    assert await c.store.put(h, data) == ["n0"]
    assert await c.store.get(h) == data
    assert len(c.repair) == 0


async def test_rf_above_node_count_uses_the_nodes_there_are(
    make_cluster: MakeCluster, make_chunk: MakeChunk
) -> None:
    c = await make_cluster(2, replication=3, write_quorum=2)
    h, data = make_chunk(1)
    assert sorted(await c.store.put(h, data)) == ["n0", "n1"]
    item = c.repair.get(h)
    assert item is not None and item.under_replicated and item.missing == set()


async def test_fewer_writable_nodes_than_quorum_fails_without_writing(
    make_cluster: MakeCluster, make_chunk: MakeChunk
) -> None:
    c = await make_cluster(3)
    c.store.ring = c.ring.with_state("n0", NodeState.DOWN).with_state("n1", NodeState.DRAINING)
    h, data = make_chunk(1)
    with pytest.raises(QuorumNotReached):
        await c.store.put(h, data)
    assert await c.holders(h) == set()


# -- one bad node never fails a write or a read --------------------------------------------------


@pytest.mark.parametrize("bad_index", [0, 1, 2])
@pytest.mark.parametrize("fault", [Fault.ERROR, Fault.HANG, Fault.DROP])
async def test_one_bad_owner_does_not_fail_a_write(
    make_cluster: MakeCluster, make_chunk: MakeChunk, fault: Fault, bad_index: int
) -> None:
    c = await make_cluster(5)
    h, data = make_chunk(bad_index)
    owners = c.ring.owners(h, 3)
    bad = owners[bad_index]
    c.nodes[bad].inject("put", fault)
    acked = await c.store.put(h, data)
    if fault is Fault.DROP:  # a lying node acknowledges; reads must cope with it
        assert acked == owners
    else:
        assert acked == [n for n in owners if n != bad]
        item = c.repair.get(h)
        assert item is not None and item.under_replicated and item.missing == {bad}
    assert await c.store.get(h) == data


@pytest.mark.parametrize("bad_index", [0, 1, 2])
@pytest.mark.parametrize("fault", [Fault.ERROR, Fault.HANG, Fault.CORRUPT, Fault.MISSING])
async def test_one_bad_replica_does_not_fail_a_read(
    make_cluster: MakeCluster, make_chunk: MakeChunk, fault: Fault, bad_index: int
) -> None:
    c = await make_cluster(5)
    h, data = make_chunk(10 + bad_index)
    owners = await c.store.put(h, data)
    bad = owners[bad_index]
    c.nodes[bad].inject("get", fault)
    for replicas in (None, owners):
        assert await c.store.get(h, replicas=replicas) == data
    if bad_index == 0:  # only the first node tried is reported: later ones are never reached
        expected = {
            Fault.ERROR: ReplicaProblem.UNAVAILABLE,
            Fault.HANG: ReplicaProblem.TIMEOUT,
            Fault.CORRUPT: ReplicaProblem.CORRUPT,
            Fault.MISSING: ReplicaProblem.MISSING,
        }[fault]
        item = c.repair.get(h)
        assert item is not None and item.bad == {bad: expected}


async def test_bitrot_on_one_replica_is_skipped_and_reported(
    make_cluster: MakeCluster, make_chunk: MakeChunk
) -> None:
    c = await make_cluster(4)
    h, data = make_chunk(1, size=50_000)
    owners = await c.store.put(h, data)
    await c.corrupt_at_rest(owners[0], h)
    assert await c.store.get(h) == data
    item = c.repair.get(h)
    assert item is not None and item.bad == {owners[0]: ReplicaProblem.CORRUPT}


# -- two bad nodes, all bad replicas -------------------------------------------------------------


@pytest.mark.parametrize("fault", [Fault.ERROR, Fault.HANG])
async def test_two_bad_owners_fail_the_write(
    make_cluster: MakeCluster, make_chunk: MakeChunk, fault: Fault
) -> None:
    c = await make_cluster(5)
    h, data = make_chunk(1)
    owners = c.ring.owners(h, 3)
    for bad in owners[:2]:
        c.nodes[bad].inject("put", fault)
    with pytest.raises(QuorumNotReached) as info:
        await c.store.put(h, data)
    message = str(info.value)
    for bad in owners[:2]:
        assert bad in message
    assert info.value.details["acked"] == [owners[2]]
    assert set(info.value.details["errors"]) == set(owners[:2])
    assert h not in c.repair  # a failed write is not a repair job (GC reclaims the stray copy)


async def test_all_replicas_corrupt_raises_chunk_unavailable(
    make_cluster: MakeCluster, make_chunk: MakeChunk
) -> None:
    c = await make_cluster(4)
    h, data = make_chunk(1)
    owners = await c.store.put(h, data)
    for node in owners:
        await c.corrupt_at_rest(node, h)
    with pytest.raises(ChunkUnavailable) as info:
        await c.store.get(h)
    assert set(owners) <= set(info.value.details["errors"])
    item = c.repair.get(h)
    assert item is not None
    assert item.bad == dict.fromkeys(owners, ReplicaProblem.CORRUPT)


async def test_corrupt_bytes_from_every_node_are_never_returned(
    make_cluster: MakeCluster, make_chunk: MakeChunk
) -> None:
    """The stores' own verification is bypassed: only the cluster's check stands."""
    c = await make_cluster(3)
    h, data = make_chunk(1)
    await c.store.put(h, data)
    for node in c.nodes.values():
        node.inject("get", Fault.CORRUPT)
    with pytest.raises(ChunkUnavailable):
        await c.store.get(h)


async def test_chunk_on_no_node_is_unavailable(
    make_cluster: MakeCluster, make_chunk: MakeChunk
) -> None:
    c = await make_cluster(3)
    h, _ = make_chunk(1)
    with pytest.raises(ChunkUnavailable):
        await c.store.get(h)
    item = c.repair.get(h)  # every owner should have had it
    assert item is not None and set(item.bad.values()) == {ReplicaProblem.MISSING}


# -- read order ---------------------------------------------------------------------------------


async def test_known_replicas_are_tried_first(
    make_cluster: MakeCluster, make_chunk: MakeChunk
) -> None:
    c = await make_cluster(6)
    h, data = make_chunk(1)
    holder = next(n for n in c.ring.preference_list(h)[3:])  # not an owner
    await c.nodes[holder].put(h, data)
    assert await c.store.get(h, replicas=[holder]) == data
    assert sum(s.calls["get"] for s in c.nodes.values()) == 1
    # owners did not have it but were not expected to: no reports
    assert await c.store.get(h) == data
    item = c.repair.get(h)
    assert item is not None
    assert set(item.bad) == set(c.ring.owners(h, 3))  # missing on every owner: repair them
    assert set(item.bad.values()) == {ReplicaProblem.MISSING}


async def test_read_falls_back_beyond_the_recorded_replicas(
    make_cluster: MakeCluster, make_chunk: MakeChunk
) -> None:
    c = await make_cluster(5)
    h, data = make_chunk(1)
    owners = await c.store.put(h, data)
    stale = next(n for n in c.nodes if n not in owners)
    assert await c.store.get(h, replicas=[stale]) == data
    item = c.repair.get(h)
    assert item is not None and item.bad == {stale: ReplicaProblem.MISSING}


async def test_read_uses_down_nodes_last(make_cluster: MakeCluster, make_chunk: MakeChunk) -> None:
    c = await make_cluster(4, replication=1, write_quorum=1)
    h, data = make_chunk(1)
    (owner,) = await c.store.put(h, data)
    c.store.ring = c.ring.with_state(owner, NodeState.DOWN)
    assert await c.store.get(h) == data  # the down node is still tried, after the others
    assert c.nodes[owner].calls["get"] == 1


async def test_node_without_a_store_is_skipped(
    make_cluster: MakeCluster, make_chunk: MakeChunk
) -> None:
    c = await make_cluster(4)
    h, data = make_chunk(1)
    owners = c.ring.owners(h, 3)
    c.store.stores.pop(owners[0])
    acked = await c.store.put(h, data)
    assert acked == owners[1:]
    assert await c.store.get(h) == data
    item = c.repair.get(h)
    assert item is not None and item.missing == {owners[0]}
    assert item.bad == {owners[0]: ReplicaProblem.UNAVAILABLE}


# -- input errors -------------------------------------------------------------------------------


async def test_hash_mismatch_of_the_data_raises_at_once_and_writes_nothing(
    make_cluster: MakeCluster, make_chunk: MakeChunk
) -> None:
    c = await make_cluster(3)
    h, data = make_chunk(1)
    with pytest.raises(ChunkHashMismatch):
        await c.store.put(h, data[:-1])
    assert sum(s.calls["put"] for s in c.nodes.values()) == 0


async def test_invalid_chunk_ids_are_rejected(make_cluster: MakeCluster) -> None:
    c = await make_cluster(3)
    with pytest.raises(ValidationFailed):
        await c.store.put("nope", b"")
    with pytest.raises(ValidationFailed):
        await c.store.get("nope")
    with pytest.raises(ValidationFailed):
        await c.store.has(["nope"])


async def test_memoryview_input(make_cluster: MakeCluster, make_chunk: MakeChunk) -> None:
    c = await make_cluster(3)
    h, data = make_chunk(1, size=200_000)
    await c.store.put(h, memoryview(data))
    assert await c.store.get(h) == data


# -- batch operations ---------------------------------------------------------------------------


async def test_has_reports_holders_and_omits_failed_nodes(
    make_cluster: MakeCluster, make_chunk: MakeChunk
) -> None:
    c = await make_cluster(5)
    (h1, d1), (h2, _) = make_chunk(1), make_chunk(2)
    owners = await c.store.put(h1, d1)
    assert await c.store.has([h1, h2]) == {h1: set(owners), h2: set()}
    c.nodes[owners[0]].inject("has", Fault.ERROR)
    c.nodes[owners[1]].inject("has", Fault.HANG)
    assert await c.store.has([h1]) == {h1: {owners[2]}}
    assert await c.store.has([]) == {}


async def test_delete_removes_every_copy(make_cluster: MakeCluster, make_chunk: MakeChunk) -> None:
    c = await make_cluster(5)
    (h1, d1), (h2, d2) = make_chunk(1), make_chunk(2)
    await c.store.put(h1, d1)
    await c.store.put(h2, d2)
    assert await c.store.delete([h1, h2]) == 6
    assert await c.store.delete([h1]) == 0
    assert await c.store.delete([]) == 0
    assert await c.holders(h1) == set()


async def test_delete_reports_failed_nodes(
    make_cluster: MakeCluster, make_chunk: MakeChunk
) -> None:
    c = await make_cluster(4)
    h, data = make_chunk(1)
    owners = await c.store.put(h, data)
    c.nodes[owners[0]].inject("delete", Fault.ERROR)
    with pytest.raises(StoreUnavailable) as info:
        await c.store.delete([h])
    assert info.value.details["removed"] == 2
    assert list(info.value.details["failed"]) == [owners[0]]
    c.nodes[owners[0]].clear()
    assert await c.store.delete([h]) == 1  # retrying is safe


async def test_sync_returns_the_failed_nodes(
    make_cluster: MakeCluster, make_chunk: MakeChunk
) -> None:
    c = await make_cluster(4)
    h, data = make_chunk(1)
    await c.store.put(h, data)
    assert await c.store.sync() == {}
    c.nodes["n1"].inject("sync", Fault.ERROR)
    c.nodes["n2"].inject("sync", Fault.HANG)
    failed = await c.store.sync()
    assert set(failed) == {"n1", "n2"}
    assert "timeout" in failed["n2"]
    assert all(s.calls["sync"] == 2 for s in c.nodes.values())


async def test_stat_per_node(make_cluster: MakeCluster, make_chunk: MakeChunk) -> None:
    c = await make_cluster(3)
    h, data = make_chunk(1)
    await c.store.put(h, data)
    c.nodes["n2"].inject("stat", Fault.ERROR)
    stats = await c.store.stat()
    assert stats["n2"] is None
    for node in ("n0", "n1"):
        st = stats[node]
        assert st is not None and st.chunk_count == 1 and st.used == len(data)


async def test_close_closes_every_store(make_cluster: MakeCluster) -> None:
    c = await make_cluster(2)
    await c.store.close()
    with pytest.raises(StoreUnavailable):
        await c.nodes["n0"].inner.stat()


# -- stores that misbehave in other ways ---------------------------------------------------------


class OddStore:
    """A store whose put/get/close raise a given exception."""

    verifies_reads = False

    def __init__(self, name: str, exc: BaseException) -> None:
        self.name = name
        self.exc = exc

    async def put(self, chunk_hash: str, data: Buffer, *, trusted: bool = False) -> None:
        raise self.exc

    async def get(self, chunk_hash: str) -> bytes:
        raise self.exc

    async def has(self, hashes: Sequence[str]) -> set[str]:
        return set()

    async def delete(self, hashes: Sequence[str]) -> int:
        return 0

    async def iterate(self) -> AsyncIterator[ChunkInfo]:
        return
        yield  # pragma: no cover

    async def stat(self) -> StoreStat:
        return StoreStat(0, 0, 0, 0)

    async def sync(self) -> None:
        return None

    async def close(self) -> None:
        raise self.exc


def _odd_cluster(exc: BaseException) -> tuple[ReplicatedStore, dict[str, Any]]:
    stores: dict[str, Any] = {"a": MemoryStore("a"), "b": MemoryStore("b"), "c": OddStore("c", exc)}
    ring = HashRing([NodeInfo(i) for i in stores])
    return ReplicatedStore(ring, stores, timeout=SHORT_TIMEOUT), stores


async def test_hash_mismatch_from_one_store_is_a_failed_copy(make_chunk: MakeChunk) -> None:
    """Bytes that arrive damaged at a node (bad transfer) count as that node's failure."""
    store, _ = _odd_cluster(ChunkHashMismatch("damaged in transit"))
    h, data = make_chunk(1)
    assert sorted(await store.put(h, data)) == ["a", "b"]


async def test_unexpected_errors_are_not_swallowed(make_chunk: MakeChunk) -> None:
    store, _ = _odd_cluster(RuntimeError("bug"))
    h, data = make_chunk(1)
    with pytest.raises(RuntimeError):
        await store.put(h, data)
    with pytest.raises(RuntimeError):
        await store.close()
    assert isinstance(OddStore("x", RuntimeError()), ChunkStore)
    assert [i async for i in OddStore("x", RuntimeError()).iterate()] == []


async def test_close_reports_a_store_that_failed_to_close() -> None:
    store, _ = _odd_cluster(StoreUnavailable("disk gone"))
    with pytest.raises(StoreUnavailable):
        await store.close()


async def test_a_cancelled_put_cancels_its_attempts(make_chunk: MakeChunk) -> None:
    nodes = {i: FaultyStore(MemoryStore(i)) for i in ("a", "b", "c")}
    for node in nodes.values():
        node.inject("put", Fault.HANG)
    store = ReplicatedStore(HashRing([NodeInfo(i) for i in nodes]), nodes, timeout=60)
    h, data = make_chunk(1)
    task = asyncio.create_task(store.put(h, data))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


# -- configuration ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"replication": 0},
        {"replication": 3, "write_quorum": 0},
        {"replication": 3, "write_quorum": 4},
        {"timeout": 0},
    ],
)
def test_invalid_settings_are_rejected(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        ReplicatedStore(HashRing([]), {}, **kwargs)


def test_repr() -> None:
    store = ReplicatedStore(HashRing([NodeInfo("a")]), {"a": MemoryStore("a")})
    assert "replication=3" in repr(store)


# -- repair queue -------------------------------------------------------------------------------


def test_repair_queue_merges_reports_per_chunk() -> None:
    now = [100.0]
    q = RepairQueue(clock=lambda: now[0])
    q.under_replicated("h1", ["a"])
    now[0] = 101.0
    q.under_replicated("h1", ["b"])
    q.bad_replica("h1", "c", ReplicaProblem.CORRUPT)
    q.bad_replica("h2", "a", "missing")
    assert len(q) == 2 and "h1" in q and list(q) == ["h1", "h2"]
    item = q.get("h1")
    assert item is not None
    assert item.missing == {"a", "b"} and item.bad == {"c": "corrupt"}
    assert (item.first_seen, item.last_seen, item.reports) == (100.0, 101.0, 3)
    item.missing.add("zz")  # copies: the queue is not changed through them
    assert q.get("h1").missing == {"a", "b"}  # type: ignore[union-attr]
    assert [i.chunk_hash for i in q.items()] == ["h1", "h2"]
    assert q.get("nope") is None


def test_repair_queue_pops_oldest_first_and_is_bounded() -> None:
    q = RepairQueue(maxsize=2)
    q.bad_replica("h1", "a", "missing")
    q.bad_replica("h2", "a", "missing")
    q.bad_replica("h3", "a", "missing")  # full: dropped
    q.bad_replica("h1", "b", "timeout")  # known chunk: merged
    assert q.dropped == 1 and len(q) == 2
    assert [i.chunk_hash for i in q.pop(1)] == ["h1"]
    q.under_replicated("h3", [])
    assert [i.chunk_hash for i in q.pop()] == ["h2", "h3"]
    q.bad_replica("h4", "a", "missing")
    q.discard("h4")
    q.discard("h4")
    q.bad_replica("h5", "a", "missing")
    q.clear()
    assert len(q) == 0
    with pytest.raises(ConfigError):
        RepairQueue(maxsize=0)
