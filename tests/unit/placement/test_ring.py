"""Consistent-hashing ring: placement properties (hypothesis) and exact behaviour."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dfms.errors import ValidationFailed
from dfms.placement.ring import (
    HashRing,
    NodeInfo,
    NodeState,
    key_position,
    vnode_position,
)

KEYS_20K = [hashlib.sha256(f"key-{i}".encode()).hexdigest() for i in range(20_000)]
KEYS_100K = [hashlib.sha256(f"key-{i}".encode()).hexdigest() for i in range(100_000)]

node_ids = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_.:", min_size=1, max_size=12)
id_sets = st.lists(node_ids, min_size=3, max_size=21, unique=True)

# Statistical properties run on a fixed (derandomised) set of examples so CI cannot flake on an
# unlucky draw; the bounds hold with a margin of several standard deviations anyway.
HEAVY = settings(
    max_examples=12,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
LIGHT = settings(max_examples=60, deadline=None)


def ring_of(ids: list[str], **kw: object) -> HashRing:
    return HashRing([NodeInfo(i) for i in ids], **kw)  # type: ignore[arg-type]


# -- geometry -----------------------------------------------------------------------------------


def test_vnode_position_is_first_four_bytes_of_sha256_big_endian() -> None:
    digest = hashlib.sha256(b"node-a:7").digest()
    assert vnode_position("node-a", 7) == int.from_bytes(digest[:4], "big")


def test_key_position_of_chunk_hash_is_its_first_32_bits() -> None:
    h = hashlib.sha256(b"chunk").hexdigest()
    assert key_position(h) == int(h[:8], 16)


def test_key_position_of_arbitrary_key_hashes_it() -> None:
    assert key_position("photos/cat.jpg") == int.from_bytes(
        hashlib.sha256(b"photos/cat.jpg").digest()[:4], "big"
    )
    assert key_position("x" * 64) != key_position("y" * 64)  # 64 chars but not hex: hashed


def test_vnode_count_scales_with_weight() -> None:
    ring = HashRing(
        [NodeInfo("a", weight=1.0), NodeInfo("b", weight=2.0), NodeInfo("c", weight=0.001)],
        vnodes_per_node=100,
    )
    assert ring.vnode_count == 100 + 200 + 1  # tiny weights still get one vnode
    assert ring.vnodes_per_node == 100


def test_owner_is_first_vnode_at_or_after_key_clockwise() -> None:
    ring = HashRing([NodeInfo("a"), NodeInfo("b"), NodeInfo("c")], vnodes_per_node=4)
    points = sorted((vnode_position(n, i), n) for n in "abc" for i in range(4))
    for key in KEYS_20K[:500]:
        pos = key_position(key)
        expected = next((n for p, n in points if p >= pos), points[0][1])  # wrap around
        assert ring.owners(key, 1) == [expected]


# -- owners -------------------------------------------------------------------------------------


@LIGHT
@given(ids=id_sets, n=st.integers(min_value=0, max_value=25))
def test_owners_are_distinct_writable_and_as_many_as_possible(ids: list[str], n: int) -> None:
    ring = ring_of(ids, vnodes_per_node=20)
    for key in KEYS_20K[:50]:
        owners = ring.owners(key, n)
        assert len(owners) == len(set(owners)) == min(n, len(ids))
        assert set(owners) <= set(ids)


@LIGHT
@given(ids=id_sets, key=st.sampled_from(KEYS_20K[:200]))
def test_owners_n_is_a_prefix_of_owners_n_plus_one(ids: list[str], key: str) -> None:
    zones = ["z1", "z2", "z3"]
    ring = HashRing([NodeInfo(i, zone=zones[k % 3]) for k, i in enumerate(ids)], 20)
    full = ring.owners(key, len(ids))
    for n in range(len(ids) + 1):
        assert ring.owners(key, n) == full[:n]


def test_owners_skip_nodes_that_do_not_accept_writes() -> None:
    ids = [f"n{i}" for i in range(6)]
    ring = ring_of(ids)
    for state in (NodeState.SUSPECT, NodeState.DOWN, NodeState.DRAINING, NodeState.REMOVED):
        degraded = ring.with_state("n2", state)
        for key in KEYS_20K[:300]:
            before = ring.owners(key, 3)
            after = degraded.owners(key, 3)
            assert "n2" not in after
            if "n2" not in before:
                assert after == before  # only keys of the skipped node move
            else:
                rest = [n for n in before if n != "n2"]
                assert after[:2] == rest  # survivors keep their order; the next one steps in


def test_owners_returns_fewer_when_not_enough_writable_nodes() -> None:
    ring = ring_of(["a", "b", "c"]).with_state("a", NodeState.DOWN)
    assert sorted(ring.owners(KEYS_20K[0], 3)) == ["b", "c"]
    ring = ring.with_state("b", NodeState.DOWN).with_state("c", NodeState.SUSPECT)
    assert ring.owners(KEYS_20K[0], 3) == []
    assert HashRing([]).owners(KEYS_20K[0], 3) == []
    assert ring_of(["a"]).owners(KEYS_20K[0], 0) == []


@LIGHT
@given(
    n_zones=st.integers(min_value=2, max_value=5),
    per_zone=st.lists(st.integers(min_value=1, max_value=4), min_size=5, max_size=5),
    n=st.integers(min_value=1, max_value=6),
)
def test_owners_spread_over_distinct_zones_first(n_zones: int, per_zone: list[int], n: int) -> None:
    nodes = [
        NodeInfo(f"z{z}-n{i}", zone=f"z{z}") for z in range(n_zones) for i in range(per_zone[z])
    ]
    ring = HashRing(nodes, vnodes_per_node=30)
    zone_of = {node.id: node.zone for node in nodes}
    for key in KEYS_20K[:40]:
        owners = ring.owners(key, n)
        zones = [zone_of[o] for o in owners]
        distinct_wanted = min(len(owners), n_zones)
        # the first entries cover as many distinct zones as possible
        assert len(set(zones[:distinct_wanted])) == distinct_wanted
        assert len(set(zones)) == min(len(owners), n_zones)


def test_zone_spread_ignores_zones_with_no_writable_node() -> None:
    ring = HashRing(
        [
            NodeInfo("a1", zone="a"),
            NodeInfo("a2", zone="a"),
            NodeInfo("a3", zone="a"),
            NodeInfo("b1", zone="b", state=NodeState.DOWN),
        ]
    )
    for key in KEYS_20K[:100]:
        assert sorted(ring.owners(key, 3)) == ["a1", "a2", "a3"]


# -- movement -----------------------------------------------------------------------------------


@HEAVY
@given(ids=st.lists(node_ids, min_size=4, max_size=21, unique=True))
def test_adding_a_node_moves_about_its_share_of_keys_and_only_to_it(ids: list[str]) -> None:
    *existing, new = ids
    before = ring_of(existing)
    after = before.with_node(NodeInfo(new))
    moved = 0
    for key in KEYS_20K:
        old, cur = before.owners(key, 1), after.owners(key, 1)
        if old != cur:
            assert cur == [new]
            moved += 1
    fair = len(KEYS_20K) / (len(existing) + 1)
    assert moved <= 1.5 * fair
    assert moved >= fair / 2


@HEAVY
@given(ids=id_sets, data=st.data())
def test_removing_a_node_moves_only_its_keys(ids: list[str], data: st.DataObject) -> None:
    gone = data.draw(st.sampled_from(ids))
    before = ring_of(ids)
    after = before.without_node(gone)
    for key in KEYS_20K[:5000]:
        old1 = before.owners(key, 1)
        if old1 != [gone]:
            assert after.owners(key, 1) == old1
        old3 = before.owners(key, 3)
        new3 = after.owners(key, 3)
        if gone not in old3:
            assert new3 == old3
        else:
            assert set(old3) - {gone} <= set(new3)


@HEAVY
@given(ids=id_sets, data=st.data())
def test_removing_a_node_with_zones_moves_only_sets_it_was_in(
    ids: list[str], data: st.DataObject
) -> None:
    gone = data.draw(st.sampled_from(ids))
    nodes = [NodeInfo(i, zone=f"z{k % 3}") for k, i in enumerate(ids)]
    before = HashRing(nodes, vnodes_per_node=50)
    after = before.without_node(gone)
    for key in KEYS_20K[:3000]:
        old3 = before.owners(key, 3)
        if gone not in old3:
            assert after.owners(key, 3) == old3


def test_weights_give_proportional_shares() -> None:
    weights = {"n1": 1.0, "n2": 2.0, "n3": 3.0, "n4": 4.0}
    ring = HashRing([NodeInfo(i, weight=w) for i, w in weights.items()])
    counts = Counter(ring.owners(key, 1)[0] for key in KEYS_100K)
    total_w = sum(weights.values())
    for node, w in weights.items():
        expected = len(KEYS_100K) * w / total_w
        assert abs(counts[node] - expected) <= 0.15 * expected, (node, counts[node], expected)


@HEAVY
@given(ids=st.lists(node_ids, min_size=4, max_size=4, unique=True))
def test_weights_give_proportional_shares_for_any_ids(ids: list[str]) -> None:
    weights = dict(zip(ids, (1.0, 2.0, 3.0, 4.0), strict=True))
    # 1000 vnodes per unit of weight: the sampling error of the smallest node is ~3%, so 15% holds
    ring = HashRing([NodeInfo(i, weight=w) for i, w in weights.items()], vnodes_per_node=1000)
    counts = Counter(ring.owners(key, 1)[0] for key in KEYS_20K)
    for node, w in weights.items():
        expected = len(KEYS_20K) * w / 10
        assert abs(counts[node] - expected) <= 0.15 * expected


# -- preference list ----------------------------------------------------------------------------


def test_preference_list_starts_with_owners_and_lists_every_readable_node() -> None:
    nodes = [NodeInfo(f"n{i}", zone=f"z{i % 2}") for i in range(8)]
    ring = (
        HashRing(nodes)
        .with_state("n1", NodeState.DOWN)
        .with_state("n2", NodeState.DRAINING)
        .with_state("n3", NodeState.REMOVED)
        .with_state("n4", NodeState.SUSPECT)
    )
    for key in KEYS_20K[:200]:
        pref = ring.preference_list(key)
        assert pref[:3] == ring.owners(key, 3)
        assert pref[:4] == ring.owners(key, 4)
        assert sorted(pref) == ["n0", "n1", "n2", "n4", "n5", "n6", "n7"]
        assert set(pref[:4]) == {"n0", "n5", "n6", "n7"}
        assert set(pref[4:6]) == {"n2", "n4"}  # draining / suspect before down
        assert pref[6] == "n1"


def test_preference_list_without_writable_nodes_and_of_empty_ring() -> None:
    ring = ring_of(["a", "b"]).with_state("a", NodeState.DOWN).with_state("b", NodeState.DRAINING)
    assert ring.preference_list(KEYS_20K[0]) == ["b", "a"]
    assert HashRing([]).preference_list(KEYS_20K[0]) == []
    assert (
        ring.with_state("a", NodeState.REMOVED)
        .with_state("b", NodeState.REMOVED)
        .preference_list(KEYS_20K[0])
        == []
    )


def test_preference_list_tail_is_in_ring_order() -> None:
    ids = [f"n{i}" for i in range(6)]
    ring = ring_of(ids)
    for i in ids:
        ring = ring.with_state(i, NodeState.DOWN)
    up = ring_of(ids)
    for key in KEYS_20K[:100]:
        assert ring.preference_list(key) == up.preference_list(key) == up.owners(key, 6)


# -- immutability, construction -----------------------------------------------------------------


def test_ring_updates_return_new_rings() -> None:
    ring = ring_of(["a", "b"])
    bigger = ring.with_node(NodeInfo("c", zone="z9"))
    assert [n.id for n in ring.nodes] == ["a", "b"]
    assert [n.id for n in bigger.nodes] == ["a", "b", "c"]
    assert "c" in bigger and "c" not in ring
    assert len(bigger) == 3 and [n.id for n in bigger] == ["a", "b", "c"]
    assert bigger.node("c").zone == "z9"
    down = bigger.with_state("a", NodeState.DOWN)
    assert bigger.node("a").state is NodeState.UP
    assert down.node("a").state is NodeState.DOWN
    assert down.writable_nodes() == ["b", "c"]
    smaller = bigger.without_node("b")
    assert [n.id for n in smaller.nodes] == ["a", "c"]
    assert "HashRing" in repr(smaller)


def test_replacing_a_node_keeps_or_rebuilds_its_vnodes() -> None:
    ring = ring_of(["a", "b"], vnodes_per_node=10)
    rezoned = ring.with_node(NodeInfo("a", zone="other"))
    assert rezoned.node("a").zone == "other" and rezoned.vnode_count == 20
    heavier = ring.with_node(NodeInfo("a", weight=3.0))
    assert heavier.vnode_count == 40


def test_unknown_node_raises_key_error() -> None:
    ring = ring_of(["a"])
    with pytest.raises(KeyError):
        ring.without_node("zz")
    with pytest.raises(KeyError):
        ring.with_state("zz", NodeState.DOWN)
    with pytest.raises(KeyError):
        ring.node("zz")


@pytest.mark.parametrize(
    "kwargs",
    [
        {"id": ""},
        {"id": "a", "weight": 0},
        {"id": "a", "weight": -1.0},
        {"id": "a", "weight": float("nan")},
        {"id": "a", "weight": float("inf")},
        {"id": "a", "state": "sleeping"},
    ],
)
def test_invalid_node_info_is_rejected(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValidationFailed):
        NodeInfo(**kwargs)  # type: ignore[arg-type]


def test_node_state_accepts_its_string_value() -> None:
    assert NodeInfo("a", state="down").state is NodeState.DOWN  # type: ignore[arg-type]


def test_invalid_ring_is_rejected() -> None:
    with pytest.raises(ValidationFailed):
        HashRing([NodeInfo("a"), NodeInfo("a")])
    with pytest.raises(ValidationFailed):
        HashRing([NodeInfo("a")], vnodes_per_node=0)


# -- determinism --------------------------------------------------------------------------------

_CHILD = """
import json, sys
from dfms.placement.ring import HashRing, NodeInfo, NodeState
spec = json.loads(sys.stdin.read())
ring = HashRing([NodeInfo(i, zone=z, weight=w) for i, z, w in spec["nodes"]])
ring = ring.with_state(spec["down"], NodeState.DOWN)
print(json.dumps({k: [ring.owners(k, 3), ring.preference_list(k)] for k in spec["keys"]}))
"""


def test_same_placement_in_a_separate_process() -> None:
    """Placement never depends on per-process state such as Python's randomised hash()."""
    nodes = [(f"node-{i}", f"zone-{i % 3}", 1.0 + (i % 2)) for i in range(9)]
    keys = [*KEYS_20K[:300], "some/arbitrary key", "ü"]
    ring = HashRing([NodeInfo(i, zone=z, weight=w) for i, z, w in nodes]).with_state(
        "node-4", NodeState.DOWN
    )
    here = {k: [ring.owners(k, 3), ring.preference_list(k)] for k in keys}
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run(
        [sys.executable, "-c", _CHILD],
        input=json.dumps({"nodes": nodes, "keys": keys, "down": "node-4"}),
        capture_output=True,
        text=True,
        check=True,
        env=env,
        timeout=60,
    )
    assert json.loads(out.stdout) == here
