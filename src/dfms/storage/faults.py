"""Fault injection: a ``ChunkStore`` wrapper whose operations can be made to fail on demand.

Used by unit tests and, later, chaos tests::

    store = FaultyStore(MemoryStore("n1"))
    store.inject("get", Fault.CORRUPT)           # every get returns flipped bytes
    store.inject("put", Fault.ERROR, times=1)    # the next put fails with an EIO-like error
    store.inject("get", Fault.HANG)              # gets hang until cancelled or ``release()``
    store.clear()                                # back to a healthy store

Faults per operation (anything else raises ``ValueError``):

===========  ===========================================================================
operation    faults
===========  ===========================================================================
put          ERROR, HANG, DROP (acknowledge without storing: a lying or lossy node)
get          ERROR, HANG, CORRUPT (inner bytes with one byte flipped), MISSING
has          ERROR, HANG, MISSING (reports nothing)
delete       ERROR, HANG
iterate      ERROR, HANG, MISSING (yields nothing)
stat, sync   ERROR, HANG
===========  ===========================================================================

``CORRUPT`` damages the bytes *after* the inner store verified them, i.e. it models corruption the
inner store cannot see (a bad transfer, a lying disk controller): callers must verify themselves.
"""

from __future__ import annotations

import asyncio
import errno
from collections import Counter
from collections.abc import AsyncIterator, Collection, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

from dfms.errors import ChunkNotFound, StoreUnavailable
from dfms.storage.base import Buffer, ChunkInfo, ChunkStore, StoreStat

__all__ = ["Fault", "FaultyStore", "Operation"]

Operation = Literal["put", "get", "has", "delete", "iterate", "stat", "sync"]
OPERATIONS: tuple[Operation, ...] = ("put", "get", "has", "delete", "iterate", "stat", "sync")


class Fault(StrEnum):
    ERROR = "error"
    HANG = "hang"
    CORRUPT = "corrupt"
    MISSING = "missing"
    DROP = "drop"


_ALLOWED: dict[str, frozenset[Fault]] = {
    "put": frozenset({Fault.ERROR, Fault.HANG, Fault.DROP}),
    "get": frozenset({Fault.ERROR, Fault.HANG, Fault.CORRUPT, Fault.MISSING}),
    "has": frozenset({Fault.ERROR, Fault.HANG, Fault.MISSING}),
    "delete": frozenset({Fault.ERROR, Fault.HANG}),
    "iterate": frozenset({Fault.ERROR, Fault.HANG, Fault.MISSING}),
    "stat": frozenset({Fault.ERROR, Fault.HANG}),
    "sync": frozenset({Fault.ERROR, Fault.HANG}),
}


@dataclass(slots=True)
class _Injection:
    fault: Fault
    only: frozenset[str] | None  # chunk ids the fault applies to; None = all
    remaining: int | None  # how many more times it fires; None = until cleared


def flip(data: bytes, offset: int = 0) -> bytes:
    """``data`` with the bits of one byte inverted (one extra byte for empty data)."""
    if not data:
        return b"\x00"
    buf = bytearray(data)
    buf[offset % len(buf)] ^= 0xFF
    return bytes(buf)


class FaultyStore:
    """Wraps a store; passes every call through unless a fault is injected for that operation."""

    #: It may hand back flipped bytes after the inner store verified them.
    verifies_reads = False

    def __init__(self, inner: ChunkStore, *, name: str | None = None) -> None:
        self.inner = inner
        self.name = name if name is not None else inner.name
        self._faults: dict[str, _Injection] = {}
        self._release = asyncio.Event()
        #: Calls per operation (including failed ones), for assertions on routing.
        self.calls: Counter[str] = Counter()
        #: How many times each (operation, fault) fired.
        self.fired: Counter[tuple[str, Fault]] = Counter()

    def __repr__(self) -> str:
        faults = {op: str(inj.fault) for op, inj in self._faults.items()}
        return f"FaultyStore({self.inner!r}, name={self.name!r}, faults={faults})"

    # -- control -----------------------------------------------------------------------------

    def inject(
        self,
        operation: Operation | Literal["all"],
        fault: Fault,
        *,
        only: Collection[str] | None = None,
        times: int | None = None,
    ) -> None:
        """Make ``operation`` fail with ``fault``.

        ``only`` restricts the fault to calls about those chunk ids; ``times`` makes it fire that
        many times and then disappear. ``"all"`` applies the fault to every operation that allows
        it.
        """
        fault = Fault(fault)
        ops = (
            [op for op in OPERATIONS if fault in _ALLOWED[op]]
            if operation == "all"
            else [operation]
        )
        for op in ops:
            if op not in _ALLOWED:
                raise ValueError(f"unknown operation {op!r}")
            if fault not in _ALLOWED[op]:
                raise ValueError(f"fault {fault} is not supported for {op}")
            if times is not None and times < 1:
                raise ValueError("times must be >= 1")
            self._faults[op] = _Injection(
                fault, frozenset(only) if only is not None else None, times
            )
        if fault is Fault.HANG and self._release.is_set():
            self._release = asyncio.Event()

    def clear(self, operation: Operation | None = None) -> None:
        """Remove the fault of one operation, or of all of them."""
        if operation is None:
            self._faults.clear()
        else:
            self._faults.pop(operation, None)

    def release(self) -> None:
        """Wake every call currently hanging (they then proceed to the inner store)."""
        self._release.set()

    def fault_of(self, operation: Operation) -> Fault | None:
        injection = self._faults.get(operation)
        return injection.fault if injection else None

    def _take(self, operation: str, hashes: Collection[str] = ()) -> _Injection | None:
        """Count the call and return the injection that fires for it, if any."""
        self.calls[operation] += 1
        injection = self._faults.get(operation)
        if injection is None:
            return None
        if injection.only is not None and injection.only.isdisjoint(hashes):
            return None
        if injection.remaining is not None:
            injection.remaining -= 1
            if injection.remaining <= 0:
                del self._faults[operation]
        self.fired[(operation, injection.fault)] += 1
        return injection

    async def _common(self, operation: str, injection: _Injection | None) -> Fault | None:
        """Apply the faults every operation shares (ERROR raises, HANG waits); return the fault."""
        fault = injection.fault if injection is not None else None
        if fault is Fault.ERROR:
            raise StoreUnavailable(
                f"injected I/O error on {self.name} ({operation})",
                store=self.name,
                errno=errno.errorcode[errno.EIO],
                injected=True,
            )
        if fault is Fault.HANG:
            await self._release.wait()
        return fault

    # -- ChunkStore --------------------------------------------------------------------------

    async def put(self, chunk_hash: str, data: Buffer, *, trusted: bool = False) -> None:
        fault = await self._common("put", self._take("put", (chunk_hash,)))
        if fault is Fault.DROP:
            return
        await self.inner.put(chunk_hash, data, trusted=trusted)

    async def get(self, chunk_hash: str) -> bytes:
        fault = await self._common("get", self._take("get", (chunk_hash,)))
        if fault is Fault.MISSING:
            raise ChunkNotFound(
                f"chunk {chunk_hash} not found on {self.name} (injected)",
                store=self.name,
                chunk_hash=chunk_hash,
                injected=True,
            )
        data = await self.inner.get(chunk_hash)
        return flip(data) if fault is Fault.CORRUPT else data

    async def has(self, hashes: Sequence[str]) -> set[str]:
        injection = self._take("has", hashes)
        fault = await self._common("has", injection)
        found = await self.inner.has(hashes)
        if fault is Fault.MISSING and injection is not None:
            return set() if injection.only is None else found - injection.only
        return found

    async def delete(self, hashes: Sequence[str]) -> int:
        await self._common("delete", self._take("delete", hashes))
        return await self.inner.delete(hashes)

    async def iterate(self) -> AsyncIterator[ChunkInfo]:
        fault = await self._common("iterate", self._take("iterate"))
        if fault is Fault.MISSING:
            return
        async for info in self.inner.iterate():
            yield info

    async def stat(self) -> StoreStat:
        await self._common("stat", self._take("stat"))
        return await self.inner.stat()

    async def sync(self) -> None:
        await self._common("sync", self._take("sync"))
        await self.inner.sync()

    async def close(self) -> None:
        self.release()
        await self.inner.close()
