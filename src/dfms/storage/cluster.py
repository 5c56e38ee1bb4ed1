"""Replicated chunk I/O over the stores of a :class:`~dfms.placement.ring.HashRing`.

* ``put`` writes a chunk to its ``replication`` ring owners in parallel and succeeds once at least
  ``write_quorum`` of them acknowledged; copies that did not land go to the repair sink.
* ``get`` tries the known holders, then the ring preference list, one node at a time, verifies the
  SHA-256 of whatever comes back and returns the first copy that verifies. Bad copies are reported
  to the repair sink (read repair). A byte that does not verify is never returned.

See ``docs/replication.md`` for the rules and the durability argument.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol, TypeVar

from dfms.errors import (
    ChunkCorrupt,
    ChunkHashMismatch,
    ChunkNotFound,
    ChunkUnavailable,
    ConfigError,
    QuorumNotReached,
    StorageError,
    StoreUnavailable,
)
from dfms.placement.ring import HashRing
from dfms.storage.base import Buffer, ChunkStore, StoreStat
from dfms.storage.hashing import check_hash, check_hashes, frozen, sha256_hex_async

__all__ = [
    "RepairItem",
    "RepairQueue",
    "RepairSink",
    "ReplicaProblem",
    "ReplicatedStore",
]

log = logging.getLogger(__name__)

T = TypeVar("T")


class ReplicaProblem(StrEnum):
    """Why a replica could not be used (the ``reason`` given to :meth:`RepairSink.bad_replica`)."""

    MISSING = "missing"  # the node answered: not here
    CORRUPT = "corrupt"  # the bytes do not hash to the chunk id
    UNAVAILABLE = "unavailable"  # the node failed (I/O error, unreachable, no store configured)
    TIMEOUT = "timeout"  # the node did not answer in time


class RepairSink(Protocol):
    """Where replication problems are reported. Called on the I/O hot path: must not block or
    raise; a persistent implementation buffers and writes from its own task."""

    def under_replicated(self, chunk_hash: str, missing_node_ids: Sequence[str]) -> None:
        """A write landed on fewer nodes than the replication factor. ``missing_node_ids`` are the
        ring owners whose write failed; it is empty when the ring had too few writable nodes."""
        ...

    def bad_replica(self, chunk_hash: str, node_id: str, reason: str) -> None:
        """A node expected to hold the chunk could not serve a verified copy; ``reason`` is a
        :class:`ReplicaProblem` value."""
        ...


@dataclass(slots=True)
class RepairItem:
    """Everything reported about one chunk since it was queued."""

    chunk_hash: str
    first_seen: float
    last_seen: float
    #: Reported through ``under_replicated`` (a write landed on fewer than RF nodes).
    under_replicated: bool = False
    #: Owners whose write failed.
    missing: set[str] = field(default_factory=set)
    #: Nodes that failed to serve a verified copy, with the latest reason.
    bad: dict[str, str] = field(default_factory=dict)
    reports: int = 0

    def copy(self) -> RepairItem:
        return RepairItem(
            self.chunk_hash,
            self.first_seen,
            self.last_seen,
            self.under_replicated,
            set(self.missing),
            dict(self.bad),
            self.reports,
        )


class RepairQueue:
    """In-memory :class:`RepairSink`: one entry per chunk (reports are merged), FIFO by first
    report, bounded. When full, reports about new chunks are counted in ``dropped`` and discarded
    (the scrubber finds those chunks later); reports about queued chunks are always merged."""

    def __init__(self, maxsize: int = 100_000, *, clock: Callable[[], float] = time.time) -> None:
        if maxsize < 1:
            raise ConfigError("repair queue maxsize must be >= 1")
        self.maxsize = maxsize
        self._clock = clock
        self._items: dict[str, RepairItem] = {}
        #: Reports discarded because the queue was full.
        self.dropped = 0

    def _entry(self, chunk_hash: str) -> RepairItem | None:
        now = self._clock()
        item = self._items.get(chunk_hash)
        if item is None:
            if len(self._items) >= self.maxsize:
                self.dropped += 1
                return None
            item = self._items[chunk_hash] = RepairItem(chunk_hash, now, now)
        item.last_seen = now
        item.reports += 1
        return item

    def under_replicated(self, chunk_hash: str, missing_node_ids: Sequence[str]) -> None:
        item = self._entry(chunk_hash)
        if item is not None:
            item.under_replicated = True
            item.missing.update(missing_node_ids)

    def bad_replica(self, chunk_hash: str, node_id: str, reason: str) -> None:
        item = self._entry(chunk_hash)
        if item is not None:
            item.bad[node_id] = str(reason)

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, chunk_hash: object) -> bool:
        return chunk_hash in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._items))

    def get(self, chunk_hash: str) -> RepairItem | None:
        """A copy of the entry for ``chunk_hash``, if queued."""
        item = self._items.get(chunk_hash)
        return item.copy() if item is not None else None

    def items(self) -> list[RepairItem]:
        """Copies of all entries, oldest first (the queue is unchanged)."""
        return [item.copy() for item in self._items.values()]

    def pop(self, limit: int | None = None) -> list[RepairItem]:
        """Remove and return up to ``limit`` entries (all if ``None``), oldest first."""
        keys = list(self._items)[:limit] if limit is not None else list(self._items)
        return [self._items.pop(k) for k in keys]

    def discard(self, chunk_hash: str) -> None:
        self._items.pop(chunk_hash, None)

    def clear(self) -> None:
        self._items.clear()


class ReplicatedStore:
    """Quorum writes and verified, falling-back reads over one store per ring node.

    ``ring`` and ``stores`` are public and may be replaced (e.g. when the health monitor changes a
    node's state); each call reads them once at its start.
    """

    def __init__(
        self,
        ring: HashRing,
        stores: Mapping[str, ChunkStore],
        *,
        replication: int = 3,
        write_quorum: int = 2,
        timeout: float = 10.0,
        repair: RepairSink | None = None,
    ) -> None:
        if replication < 1:
            raise ConfigError(f"replication must be >= 1, not {replication}")
        if not 1 <= write_quorum <= replication:
            raise ConfigError(
                f"write_quorum must be in 1..{replication} (the replication), not {write_quorum}"
            )
        if not timeout > 0:
            raise ConfigError(f"timeout must be > 0, not {timeout}")
        self.ring = ring
        self.stores: dict[str, ChunkStore] = dict(stores)
        self.replication = replication
        self.write_quorum = write_quorum
        self.timeout = timeout
        self.repair = repair

    def __repr__(self) -> str:
        return (
            f"ReplicatedStore(nodes={sorted(self.stores)}, replication={self.replication}, "
            f"write_quorum={self.write_quorum}, timeout={self.timeout})"
        )

    def owners(self, chunk_hash: str) -> list[str]:
        """The nodes a new copy of ``chunk_hash`` goes to (at most ``replication``)."""
        return self.ring.owners(chunk_hash, self.replication)

    # -- fan-out -----------------------------------------------------------------------------

    async def _call(self, node: str, op: Callable[[ChunkStore], Awaitable[T]]) -> T:
        store = self.stores.get(node)
        if store is None:
            raise StoreUnavailable(f"no store configured for node {node}", node=node)
        async with asyncio.timeout(self.timeout):
            return await op(store)

    def _describe(self, exc: BaseException) -> str:
        if isinstance(exc, TimeoutError):
            return f"timeout after {self.timeout:g}s"
        return f"{type(exc).__name__}: {exc}"

    async def _fanout(
        self, nodes: Sequence[str], op: Callable[[ChunkStore], Awaitable[T]]
    ) -> tuple[dict[str, T], dict[str, BaseException]]:
        """Run ``op`` on every node in parallel (each with the timeout) and wait for all of them.

        Storage errors and timeouts are collected per node; anything else is a bug and re-raised.
        """
        results = await asyncio.gather(
            *(self._call(node, op) for node in nodes), return_exceptions=True
        )
        ok: dict[str, T] = {}
        failed: dict[str, BaseException] = {}
        for node, result in zip(nodes, results, strict=True):
            if isinstance(result, TimeoutError | StorageError):
                failed[node] = result
            elif isinstance(result, BaseException):
                raise result
            else:
                ok[node] = result
        return ok, failed

    # -- put ---------------------------------------------------------------------------------

    async def put(self, chunk_hash: str, data: Buffer, *, trusted: bool = False) -> list[str]:
        """Write the chunk to its ring owners; return the ids of the nodes that acknowledged.

        Raises ``ChunkHashMismatch`` at once (nothing written) if ``data`` does not hash to
        ``chunk_hash``, and ``QuorumNotReached`` if fewer than ``write_quorum`` nodes acknowledged.
        Every attempt finishes or times out before this returns, so the result is exact.
        ``trusted=True``: the caller hashed these bytes itself in this process (the upload
        pipeline), so neither this method nor in-process stores hash them again.
        """
        check_hash(chunk_hash)
        payload = frozen(data)
        actual = chunk_hash if trusted else await sha256_hex_async(payload)
        if actual != chunk_hash:
            raise ChunkHashMismatch(
                f"bytes given for chunk {chunk_hash} hash to {actual}",
                chunk_hash=chunk_hash,
                actual=actual,
            )
        owners = self.owners(chunk_hash)
        if len(owners) < self.write_quorum:
            raise QuorumNotReached(
                f"chunk {chunk_hash}: {len(owners)} writable node(s), write quorum is "
                f"{self.write_quorum}",
                chunk_hash=chunk_hash,
                acked=[],
                errors={},
            )
        acked_map, failed = await self._fanout(
            owners, lambda s: s.put(chunk_hash, payload, trusted=True)
        )
        acked = [node for node in owners if node in acked_map]
        errors = {node: self._describe(exc) for node, exc in failed.items()}
        if len(acked) < self.write_quorum:
            detail = "; ".join(f"{node}: {msg}" for node, msg in errors.items())
            raise QuorumNotReached(
                f"chunk {chunk_hash}: {len(acked)} of {len(owners)} node(s) acknowledged, "
                f"write quorum is {self.write_quorum} ({detail})",
                chunk_hash=chunk_hash,
                acked=acked,
                errors=errors,
            )
        if failed or len(owners) < self.replication:
            for node, msg in errors.items():
                log.warning("replica write failed: chunk=%s node=%s %s", chunk_hash, node, msg)
            if self.repair is not None:
                self.repair.under_replicated(chunk_hash, [n for n in owners if n in failed])
        return acked

    # -- get ---------------------------------------------------------------------------------

    async def get(self, chunk_hash: str, *, replicas: Sequence[str] | None = None) -> bytes:
        """Return the verified bytes of a chunk.

        Tries ``replicas`` (the holders recorded in metadata) first, then the ring preference
        list, one node at a time. A copy that is missing, corrupt, unreachable or too slow is
        reported to the repair sink and the next node is tried; ``ChunkUnavailable`` when none
        verifies. Missing-copy and failure reports are made for the nodes expected to hold the
        chunk (``replicas`` if given, else the ring owners); corrupt copies are reported wherever
        they are found.
        """
        check_hash(chunk_hash)
        ring = self.ring
        candidates = list(dict.fromkeys([*(replicas or ()), *ring.preference_list(chunk_hash)]))
        expected = set(replicas) if replicas is not None else set(self.owners(chunk_hash))
        errors: dict[str, str] = {}
        for node in candidates:
            try:
                data = await self._call(node, lambda s: s.get(chunk_hash))
            except TimeoutError as exc:
                problem, errors[node] = ReplicaProblem.TIMEOUT, self._describe(exc)
            except ChunkNotFound as exc:
                problem, errors[node] = ReplicaProblem.MISSING, self._describe(exc)
            except ChunkCorrupt as exc:
                problem, errors[node] = ReplicaProblem.CORRUPT, self._describe(exc)
            except StorageError as exc:
                problem, errors[node] = ReplicaProblem.UNAVAILABLE, self._describe(exc)
            else:
                # A store that verifies in this process already hashed these exact bytes; any
                # other (a fault injector, a future cache) is checked here: never trust a store.
                verified = getattr(self.stores.get(node), "verifies_reads", False)
                if verified or await sha256_hex_async(data) == chunk_hash:
                    return data
                problem, errors[node] = ReplicaProblem.CORRUPT, "returned bytes fail verification"
            if problem is not ReplicaProblem.MISSING or node in expected:
                log.warning("bad replica: chunk=%s node=%s %s", chunk_hash, node, errors[node])
            if self.repair is not None and (problem is ReplicaProblem.CORRUPT or node in expected):
                self.repair.bad_replica(chunk_hash, node, problem)
        detail = "; ".join(f"{node}: {msg}" for node, msg in errors.items()) or "no nodes"
        raise ChunkUnavailable(
            f"chunk {chunk_hash}: no replica could be read and verified ({detail})",
            chunk_hash=chunk_hash,
            errors=errors,
        )

    # -- batch operations over every store ---------------------------------------------------

    async def has(self, hashes: Sequence[str]) -> dict[str, set[str]]:
        """For each chunk id, the nodes that report holding it. Nodes that fail or time out are
        left out of the answer (logged), so a missing node id means "not confirmed"."""
        wanted = check_hashes(hashes)
        result: dict[str, set[str]] = {h: set() for h in wanted}
        if not wanted:
            return result
        ok, failed = await self._fanout(list(self.stores), lambda s: s.has(wanted))
        for node, found in ok.items():
            for h in found:
                if h in result:
                    result[h].add(node)
        for node, exc in failed.items():
            log.warning("has failed: node=%s %s", node, self._describe(exc))
        return result

    async def delete(self, hashes: Sequence[str]) -> int:
        """Delete the chunks from every store; return the number of copies removed.

        If any store fails, the deletions that succeeded stay done and ``StoreUnavailable`` is
        raised with ``details["removed"]`` and ``details["failed"]``; retrying is safe.
        """
        wanted = check_hashes(hashes)
        if not wanted:
            return 0
        ok, failed = await self._fanout(list(self.stores), lambda s: s.delete(wanted))
        removed = sum(ok.values())
        if failed:
            errors = {node: self._describe(exc) for node, exc in failed.items()}
            raise StoreUnavailable(
                f"delete failed on {len(failed)} node(s), removed {removed} copies: "
                + "; ".join(f"{n}: {m}" for n, m in errors.items()),
                removed=removed,
                failed=errors,
            )
        return removed

    async def sync(self) -> dict[str, str]:
        """Call ``sync`` on every store in parallel; return ``{node: error}`` for the stores that
        failed or timed out (empty when everything written so far is durable).

        It does not raise: with one node down a write still succeeds on a quorum, so the caller
        decides, per chunk, whether the acknowledged nodes minus the failed ones still reach W.
        """
        _, failed = await self._fanout(list(self.stores), lambda s: s.sync())
        errors = {node: self._describe(exc) for node, exc in failed.items()}
        for node, msg in errors.items():
            log.warning("sync failed: node=%s %s", node, msg)
        return errors

    async def stat(self) -> dict[str, StoreStat | None]:
        """Capacity figures per node; ``None`` for nodes that failed or timed out."""
        nodes = list(self.stores)
        ok, _ = await self._fanout(nodes, lambda s: s.stat())
        return {node: ok.get(node) for node in nodes}

    async def close(self) -> None:
        """Close every store (errors are collected and the first one re-raised after all)."""
        _, failed = await self._fanout(list(self.stores), lambda s: s.close())
        if failed:
            raise next(iter(failed.values()))
