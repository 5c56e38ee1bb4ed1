"""Placement: which storage nodes hold which chunk (consistent hashing, pure)."""

from dfms.placement.ring import HashRing, NodeInfo, NodeState

__all__ = ["HashRing", "NodeInfo", "NodeState"]
