"""Consistent-hashing ring: which storage nodes own which chunk. Pure: no I/O, no clock.

Ring geometry (as the reference system):

* every node gets ``max(1, round(vnodes_per_node * weight))`` virtual nodes;
* virtual node ``i`` of node ``id`` sits at the first 4 bytes (big-endian) of
  ``SHA-256(f"{id}:{i}")``;
* a chunk sits at the first 32 bits of its hex SHA-256 (``int(hash[:8], 16)``); any other string
  key is hashed with SHA-256 first;
* a key is owned by the first virtual nodes at or after its position, walking clockwise.

Placement rules (see ``docs/replication.md``):

* :meth:`HashRing.owners` returns up to ``n`` distinct nodes that accept writes. Only
  :attr:`NodeState.UP` nodes accept writes: a ``SUSPECT`` node failed recent probes, a ``DRAINING``
  node is being emptied, ``DOWN`` and ``REMOVED`` nodes are gone. Skipping a non-writable node hands
  its keys to the next node clockwise, so a state change moves only that node's keys.
* Zones: the walk first takes the first node of each zone it meets (in walk order), then fills the
  remaining places with the other nodes in walk order. With at least ``n`` zones every owner is in
  a different zone; with fewer, every zone holds at least one copy.
* The order is a single sequence, so ``owners(k, n)`` is always a prefix of ``owners(k, n + 1)``.
* :meth:`HashRing.preference_list` (used by reads) starts with ``owners(k, all)`` and continues with
  the nodes that hold data but take no writes (``DRAINING`` and ``SUSPECT`` first, then ``DOWN``),
  in ring order. ``REMOVED`` nodes never appear.

Everything is deterministic across processes and machines: positions come from SHA-256 only
(never Python's ``hash()``) and ties between equal positions are broken by node id.
"""

from __future__ import annotations

import hashlib
import math
import re
from bisect import bisect_left
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from enum import StrEnum

from dfms.errors import ValidationFailed

__all__ = [
    "DEFAULT_VNODES",
    "READABLE_STATES",
    "WRITABLE_STATES",
    "HashRing",
    "NodeInfo",
    "NodeState",
    "key_position",
    "vnode_position",
]

DEFAULT_VNODES = 150

_HEX64 = re.compile(r"[0-9a-fA-F]{64}")


class NodeState(StrEnum):
    """Lifecycle state of a storage node (the ``nodes.state`` column)."""

    UP = "up"
    SUSPECT = "suspect"
    DOWN = "down"
    DRAINING = "draining"
    REMOVED = "removed"


#: States whose nodes receive new chunks.
WRITABLE_STATES: frozenset[NodeState] = frozenset({NodeState.UP})
#: States whose nodes may hold data and appear in read preference lists.
READABLE_STATES: frozenset[NodeState] = frozenset(
    {NodeState.UP, NodeState.SUSPECT, NodeState.DRAINING, NodeState.DOWN}
)

# Order of the non-writable tail of a preference list: likely reachable first.
_TAIL_RANK: dict[NodeState, int] = {NodeState.DRAINING: 0, NodeState.SUSPECT: 0, NodeState.DOWN: 1}


@dataclass(frozen=True, slots=True)
class NodeInfo:
    """A storage node as the ring sees it."""

    id: str
    zone: str = "default"
    weight: float = 1.0
    state: NodeState = NodeState.UP

    def __post_init__(self) -> None:
        if not self.id:
            raise ValidationFailed("node id must not be empty")
        if not isinstance(self.weight, int | float) or not math.isfinite(self.weight):
            raise ValidationFailed(f"node {self.id!r}: weight must be a finite number")
        if self.weight <= 0:
            raise ValidationFailed(f"node {self.id!r}: weight must be > 0 (use DRAINING to empty)")
        try:
            state = NodeState(self.state)
        except ValueError as exc:
            raise ValidationFailed(f"node {self.id!r}: unknown state {self.state!r}") from exc
        object.__setattr__(self, "state", state)


def vnode_position(node_id: str, index: int) -> int:
    """Ring position of virtual node ``index`` of ``node_id`` (32-bit)."""
    digest = hashlib.sha256(f"{node_id}:{index}".encode()).digest()
    return int.from_bytes(digest[:4], "big")


def key_position(key: str) -> int:
    """Ring position of a key: a 64-hex chunk hash uses its first 32 bits, other keys are hashed."""
    if len(key) == 64 and _HEX64.fullmatch(key):
        return int(key[:8], 16)
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:4], "big")


def _vnode_count(weight: float, vnodes_per_node: int) -> int:
    return max(1, round(vnodes_per_node * weight))


class HashRing:
    """An immutable consistent-hashing ring over a set of nodes.

    ``with_node``, ``without_node`` and ``with_state`` return new rings; a ring can therefore be
    shared between tasks and swapped atomically when the node table changes.
    """

    __slots__ = (
        "_ids",
        "_index",
        "_n_readable",
        "_n_writable",
        "_n_writable_zones",
        "_nodes",
        "_point_nodes",
        "_positions",
        "_readable",
        "_vnodes_per_node",
        "_writable",
        "_zone_of",
    )

    def __init__(
        self, nodes: Iterable[NodeInfo] = (), vnodes_per_node: int = DEFAULT_VNODES
    ) -> None:
        if vnodes_per_node < 1:
            raise ValidationFailed("vnodes_per_node must be >= 1")
        by_id: dict[str, NodeInfo] = {}
        for node in nodes:
            if node.id in by_id:
                raise ValidationFailed(f"duplicate node id {node.id!r}")
            by_id[node.id] = node
        self._vnodes_per_node = vnodes_per_node
        self._set_nodes(by_id)
        self._build_points()
        self._build_states()

    # -- construction ------------------------------------------------------------------------

    def _set_nodes(self, by_id: dict[str, NodeInfo]) -> None:
        self._ids: tuple[str, ...] = tuple(sorted(by_id))
        self._nodes: tuple[NodeInfo, ...] = tuple(by_id[i] for i in self._ids)
        self._index: dict[str, int] = {node_id: k for k, node_id in enumerate(self._ids)}

    def _build_points(self) -> None:
        points: list[tuple[int, str, int]] = []
        for k, node in enumerate(self._nodes):
            for i in range(_vnode_count(node.weight, self._vnodes_per_node)):
                points.append((vnode_position(node.id, i), node.id, k))
        points.sort()
        self._positions: list[int] = [p for p, _, _ in points]
        owners = [k for _, _, k in points]
        # Doubled so that a clockwise walk is a plain slice-free index loop without modulo.
        self._point_nodes: list[int] = owners + owners

    def _build_states(self) -> None:
        zone_ids: dict[str, int] = {}
        self._zone_of: list[int] = [zone_ids.setdefault(n.zone, len(zone_ids)) for n in self._nodes]
        self._writable: list[bool] = [n.state in WRITABLE_STATES for n in self._nodes]
        self._readable: list[bool] = [n.state in READABLE_STATES for n in self._nodes]
        self._n_writable = sum(self._writable)
        self._n_readable = sum(self._readable)
        self._n_writable_zones = len(
            {self._zone_of[k] for k, ok in enumerate(self._writable) if ok}
        )

    def _derive(self, by_id: dict[str, NodeInfo], *, same_points: bool) -> HashRing:
        ring = HashRing.__new__(HashRing)
        ring._vnodes_per_node = self._vnodes_per_node
        ring._set_nodes(by_id)
        if same_points:
            ring._positions = self._positions
            ring._point_nodes = self._point_nodes
        else:
            ring._build_points()
        ring._build_states()
        return ring

    def with_node(self, node: NodeInfo) -> HashRing:
        """A ring with ``node`` added, or replacing the node with the same id."""
        by_id = dict(zip(self._ids, self._nodes, strict=True))
        old = by_id.get(node.id)
        by_id[node.id] = node
        same = old is not None and _vnode_count(old.weight, self._vnodes_per_node) == _vnode_count(
            node.weight, self._vnodes_per_node
        )
        return self._derive(by_id, same_points=same)

    def without_node(self, node_id: str) -> HashRing:
        """A ring without the node; ``KeyError`` if it is not in the ring."""
        if node_id not in self._index:
            raise KeyError(node_id)
        by_id = {i: n for i, n in zip(self._ids, self._nodes, strict=True) if i != node_id}
        return self._derive(by_id, same_points=False)

    def with_state(self, node_id: str, state: NodeState) -> HashRing:
        """A ring where the node has ``state``; ``KeyError`` if it is not in the ring."""
        node = self.node(node_id)
        by_id = dict(zip(self._ids, self._nodes, strict=True))
        by_id[node_id] = replace(node, state=NodeState(state))
        return self._derive(by_id, same_points=True)

    # -- inspection --------------------------------------------------------------------------

    @property
    def nodes(self) -> tuple[NodeInfo, ...]:
        """Every node of the ring (any state), sorted by id."""
        return self._nodes

    @property
    def vnodes_per_node(self) -> int:
        return self._vnodes_per_node

    @property
    def vnode_count(self) -> int:
        """Total number of virtual nodes on the ring."""
        return len(self._positions)

    def node(self, node_id: str) -> NodeInfo:
        """The node with this id; ``KeyError`` if absent."""
        return self._nodes[self._index[node_id]]

    def writable_nodes(self) -> list[str]:
        """Ids of the nodes that accept writes, sorted."""
        return [i for i, ok in zip(self._ids, self._writable, strict=True) if ok]

    def __contains__(self, node_id: object) -> bool:
        return node_id in self._index

    def __len__(self) -> int:
        return len(self._nodes)

    def __iter__(self) -> Iterator[NodeInfo]:
        return iter(self._nodes)

    def __repr__(self) -> str:
        parts = ", ".join(f"{n.id}({n.zone},{n.weight:g},{n.state})" for n in self._nodes)
        return f"HashRing([{parts}], vnodes_per_node={self._vnodes_per_node})"

    # -- placement ---------------------------------------------------------------------------

    def owners(self, chunk_hash: str, n: int) -> list[str]:
        """Up to ``n`` distinct writable (``UP``) node ids for a key, zone-spread, in ring order.

        Returns fewer than ``n`` ids when fewer writable nodes exist.
        """
        target = min(n, self._n_writable)
        if target <= 0:
            return []
        start = bisect_left(self._positions, key_position(chunk_hash))
        picked = self._walk(start, target, self._writable, self._n_writable_zones)
        ids = self._ids
        return [ids[k] for k in picked]

    def preference_list(self, chunk_hash: str) -> list[str]:
        """Every non-removed node in read order: ``owners(key, all)``, then the non-writable ones.

        The non-writable tail (nodes that may still hold data) lists ``DRAINING`` and ``SUSPECT``
        nodes before ``DOWN`` ones, each group in clockwise order.
        """
        if self._n_readable == 0:
            return []
        start = bisect_left(self._positions, key_position(chunk_hash))
        head = (
            self._walk(start, self._n_writable, self._writable, self._n_writable_zones)
            if self._n_writable
            else []
        )
        ids = self._ids
        result = [ids[k] for k in head]
        n_tail = self._n_readable - self._n_writable
        if n_tail:
            tail: list[int] = []
            seen: set[int] = set()
            nodes = self._nodes
            readable, writable = self._readable, self._writable
            point_nodes = self._point_nodes
            for idx in range(start, start + len(self._positions)):
                k = point_nodes[idx]
                if k in seen:
                    continue
                seen.add(k)
                if readable[k] and not writable[k]:
                    tail.append(k)
                    if len(tail) == n_tail:
                        break
            tail.sort(key=lambda k: _TAIL_RANK.get(nodes[k].state, 2))  # stable: keeps walk order
            result.extend(ids[k] for k in tail)
        return result

    def _walk(self, start: int, target: int, eligible: list[bool], n_zones: int) -> list[int]:
        """First ``target`` entries of the placement order starting at point index ``start``.

        Placement order = the first eligible node of every zone (in walk order), followed by the
        other eligible nodes in walk order.
        """
        point_nodes = self._point_nodes
        zone_of = self._zone_of
        picked: list[int] = []
        deferred: list[int] = []
        seen: set[int] = set()
        used_zones: set[int] = set()
        for idx in range(start, start + len(self._positions)):
            k = point_nodes[idx]
            if k in seen:
                continue
            seen.add(k)
            if not eligible[k]:
                continue
            zone = zone_of[k]
            if zone in used_zones:
                deferred.append(k)
            else:
                used_zones.add(zone)
                picked.append(k)
                if len(picked) == target:
                    return picked
            if len(used_zones) == n_zones and len(picked) + len(deferred) >= target:
                break
        picked.extend(deferred[: target - len(picked)])
        return picked
