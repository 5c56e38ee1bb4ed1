"""Chunk storage: the ``ChunkStore`` protocol, its implementations and replicated I/O.

Implementations are imported from their modules (``dfms.storage.local``, ``.memory``, ``.faults``,
``.cluster``); only the protocol types are re-exported here.
"""

from dfms.storage.base import Buffer, ChunkInfo, ChunkStore, StoreStat

__all__ = ["Buffer", "ChunkInfo", "ChunkStore", "StoreStat"]
