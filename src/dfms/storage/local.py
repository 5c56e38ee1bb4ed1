"""Chunk store on a local directory: ``root/ab/cd/<hash>`` files, written atomically.

Durability (``fsync`` mode, see ``docs/replication.md``):

* ``"always"``: every ``put`` fsyncs the temporary file before renaming it into place and the
  directory after, so a chunk is durable when ``put`` returns (~3,000 small puts/s on an SSD).
* ``"batch"`` (default): ``put`` writes and renames without fsync and remembers the file;
  :meth:`LocalDirStore.sync` fsyncs every file written since the previous ``sync`` and the
  directories holding them. The upload path calls ``sync`` once before the metadata commit that
  makes the chunks reachable, so a committed chunk is as durable as with ``"always"``.
* ``"never"``: no fsync at all (tests, scratch space). ``sync`` is a no-op.

Page cache: with ``cache_written=False`` a chunk file's pages are dropped from the page cache
(``POSIX_FADV_DONTNEED``) as soon as it is durable (fsynced), for nodes that mostly write: the
kernel then reuses those pages for the next writes instead of claiming new memory. The default
(``True``, the server's ``storage.cache_written``) keeps them, so a download right after an
upload is served from memory. See docs/operations.md, "Page cache", for measurements.

A crash can leave ``.tmp-*`` files behind; opening the store removes those older than
``TEMP_MAX_AGE`` (younger ones may be a live write of another process on the same directory).
A crash in ``"batch"`` mode before ``sync`` can also leave a renamed but empty or partial chunk
file: reads reject it (``ChunkCorrupt``) and the next ``put`` of that chunk rewrites it.

All file I/O runs in worker threads (``asyncio.to_thread``); nothing blocks the event loop.
One process owns a root directory at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import queue
import shutil
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Literal, TypeVar, get_args

from dfms.errors import (
    ChunkCorrupt,
    ChunkHashMismatch,
    ChunkNotFound,
    ConfigError,
    StoreUnavailable,
)
from dfms.storage.base import Buffer, ChunkInfo, StoreStat
from dfms.storage.hashing import check_hash, check_hashes, frozen, is_chunk_hash, sha256_hex

__all__ = ["TEMP_PREFIX", "FsyncMode", "LocalDirStore"]

FsyncMode = Literal["always", "batch", "never"]

#: Name prefix of in-progress writes.
TEMP_PREFIX = ".tmp-"
#: A temp file older than this (seconds) belongs to a write that died; opening the store removes
#: it. Younger ones may be another live process's write in progress and are left alone.
TEMP_MAX_AGE = 600.0
#: Batch mode: fsyncs kept in flight, by the background flushers and by ``sync``. A disk flushes
#: several files at once faster than one after another (1 MiB files here: 166 MB/s one at a
#: time, 278 with 4, 383 with 64 in flight); the store's put+sync of 512 MiB went from 259-329 to
#: 370-393 MB/s (docs/replication.md).
FLUSH_THREADS = 8

T = TypeVar("T")

_HEX = frozenset("0123456789abcdef")
#: Leaf directories scanned per worker-thread call by ``iterate``.
_LEAVES_PER_BATCH = 16


def _is_fanout_name(name: str) -> bool:
    return len(name) == 2 and name[0] in _HEX and name[1] in _HEX


def _unavailable(store: str, action: str, exc: OSError, **details: object) -> StoreUnavailable:
    reason = errno.errorcode.get(exc.errno, "") if exc.errno is not None else ""
    return StoreUnavailable(
        f"{action} failed on store {store}: {exc}",
        store=store,
        errno=reason or None,
        **details,
    )


class LocalDirStore:
    """Content-addressed chunk files under ``root``. Safe for concurrent use from one process."""

    verifies_reads = True

    def __init__(
        self,
        root: Path,
        *,
        name: str | None = None,
        fsync: FsyncMode = "batch",
        capacity: int | None = None,
        eager_flush: bool = True,
        cache_written: bool = True,
    ) -> None:
        if fsync not in get_args(FsyncMode):
            raise ConfigError(f"fsync must be one of {get_args(FsyncMode)}, not {fsync!r}")
        if capacity is not None and capacity < 0:
            raise ConfigError("capacity must be >= 0")
        self.root = Path(root)
        self.name = name if name is not None else f"local:{self.root}"
        self.fsync_mode: FsyncMode = fsync
        self._root = os.fspath(self.root)
        self._capacity = capacity
        self._lock = threading.Lock()  # counters, pending set, rename/unlink of final paths
        self._open_lock = threading.Lock()
        self._sync_lock = asyncio.Lock()  # one batch sync at a time; later callers wait for it
        self._opened = False
        self._closed = False
        self._count = 0
        self._used = 0
        self._pending: set[str] = set()  # files renamed into place but not yet fsynced (batch)
        self._dirty_leaves: set[str] = set()  # leaf dirs with renames not yet fsynced (batch)
        #: Batch mode: background threads fsync written files as they arrive, so the disk
        #: flushes while the upload is still chunking and ``sync`` has little left to wait for.
        self._flush_queue: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        self._flushers: list[threading.Thread] = []
        self._eager_flush = eager_flush
        #: Keep the pages of durable written chunks in the page cache (see module docstring).
        self.cache_written = cache_written
        self._durable_leaves: set[str] = set()  # leaf dirs whose own entry and parents are synced
        #: Number of leftover temporary files removed when the store was opened.
        self.temp_files_removed = 0

    @classmethod
    async def open(
        cls,
        root: Path,
        *,
        name: str | None = None,
        fsync: FsyncMode = "batch",
        capacity: int | None = None,
        eager_flush: bool = True,
        cache_written: bool = True,
    ) -> LocalDirStore:
        """Create the store and open it now: create ``root``, remove temp files, count chunks."""
        store = cls(
            root,
            name=name,
            fsync=fsync,
            capacity=capacity,
            eager_flush=eager_flush,
            cache_written=cache_written,
        )
        await store._ensure_open()
        return store

    def __repr__(self) -> str:
        return f"LocalDirStore({self._root!r}, name={self.name!r}, fsync={self.fsync_mode!r})"

    # -- paths -------------------------------------------------------------------------------

    def path_for(self, chunk_hash: str) -> Path:
        """Where a chunk lives: ``root/ab/cd/<hash>`` (``ValidationFailed`` for a bad id)."""
        return Path(self._path(check_hash(chunk_hash)))

    def _path(self, chunk_hash: str) -> str:
        return os.path.join(self._root, chunk_hash[:2], chunk_hash[2:4], chunk_hash)

    # -- lifecycle ---------------------------------------------------------------------------

    async def _ensure_open(self) -> None:
        if self._closed:
            raise StoreUnavailable(f"store {self.name} is closed", store=self.name)
        if not self._opened:
            await asyncio.to_thread(self._open_sync)

    def _open_sync(self) -> None:
        with self._open_lock:
            if self._opened:
                return
            count = used = removed = 0
            now = time.time()
            try:
                os.makedirs(self._root, exist_ok=True)
                for leaf in self._leaf_dirs():
                    with os.scandir(leaf) as entries:
                        for entry in entries:
                            if entry.name.startswith(TEMP_PREFIX):
                                # Only dead ones: another process (``dfms admin gc`` next to
                                # ``dfms serve``) may open this directory while a write of the
                                # server is in flight; a write takes milliseconds, not minutes.
                                try:
                                    age = now - entry.stat(follow_symlinks=False).st_mtime
                                    if age >= TEMP_MAX_AGE:
                                        os.unlink(entry.path)
                                        removed += 1
                                except FileNotFoundError:
                                    pass
                            elif self._is_chunk_entry(entry, leaf):
                                try:
                                    used += entry.stat(follow_symlinks=False).st_size
                                    count += 1
                                except FileNotFoundError:
                                    pass
            except OSError as exc:
                raise _unavailable(self.name, "open", exc, root=self._root) from exc
            with self._lock:
                self._count, self._used = count, used
            self.temp_files_removed = removed
            self._opened = True

    async def close(self) -> None:
        """Sync pending writes (batch mode) and refuse further calls. Idempotent."""
        if self._closed:
            return
        if self._opened and self.fsync_mode == "batch":
            await self.sync()
        self._closed = True
        for _ in self._flushers:
            self._flush_queue.put(None)

    # -- walking -----------------------------------------------------------------------------

    def _top_dirs(self) -> list[str]:
        with os.scandir(self._root) as entries:
            return sorted(
                e.path
                for e in entries
                if _is_fanout_name(e.name) and e.is_dir(follow_symlinks=False)
            )

    def _sub_dirs(self, top: str) -> list[str]:
        try:
            with os.scandir(top) as entries:
                return sorted(
                    e.path
                    for e in entries
                    if _is_fanout_name(e.name) and e.is_dir(follow_symlinks=False)
                )
        except FileNotFoundError:
            return []

    def _leaf_dirs(self) -> list[str]:
        return [leaf for top in self._top_dirs() for leaf in self._sub_dirs(top)]

    @staticmethod
    def _is_chunk_entry(entry: os.DirEntry[str], leaf: str) -> bool:
        name = entry.name
        return (
            is_chunk_hash(name)
            and name[:2] == os.path.basename(os.path.dirname(leaf))
            and name[2:4] == os.path.basename(leaf)
            and entry.is_file(follow_symlinks=False)
        )

    def _scan_leaves(self, leaves: Sequence[str]) -> list[ChunkInfo]:
        found: list[ChunkInfo] = []
        for leaf in leaves:
            try:
                with os.scandir(leaf) as entries:
                    for entry in entries:
                        if not self._is_chunk_entry(entry, leaf):
                            continue
                        try:
                            st = entry.stat(follow_symlinks=False)
                        except FileNotFoundError:
                            continue  # deleted while we walked
                        found.append(ChunkInfo(entry.name, st.st_size, st.st_mtime))
            except FileNotFoundError:
                continue
        return found

    async def iterate(self) -> AsyncIterator[ChunkInfo]:
        """Yield every chunk, one fan-out directory batch at a time (memory bounded by a batch)."""
        await self._ensure_open()
        try:
            tops = await asyncio.to_thread(self._top_dirs)
            for top in tops:
                leaves = await asyncio.to_thread(self._sub_dirs, top)
                for i in range(0, len(leaves), _LEAVES_PER_BATCH):
                    batch = leaves[i : i + _LEAVES_PER_BATCH]
                    infos = await asyncio.to_thread(self._scan_leaves, batch)
                    for info in infos:
                        yield info
        except OSError as exc:
            raise _unavailable(self.name, "iterate", exc) from exc

    # -- put ---------------------------------------------------------------------------------

    async def put(self, chunk_hash: str, data: Buffer, *, trusted: bool = False) -> None:
        check_hash(chunk_hash)
        await self._ensure_open()
        await asyncio.to_thread(self._put_sync, chunk_hash, data, trusted)

    def _put_sync(self, chunk_hash: str, data: Buffer, trusted: bool = False) -> None:
        payload = frozen(data)
        actual = chunk_hash if trusted else sha256_hex(payload)
        if actual != chunk_hash:
            raise ChunkHashMismatch(
                f"bytes given for chunk {chunk_hash} hash to {actual}",
                store=self.name,
                chunk_hash=chunk_hash,
                actual=actual,
            )
        path = self._path(chunk_hash)
        leaf = os.path.dirname(path)
        try:
            if self._holds(path, payload):
                # Idempotent: nothing is written. The mtime is refreshed (orphan sweeps read it as
                # the age of bytes no table references yet) and the file is made durable like a
                # fresh write, since it may be an unsynced leftover of a crashed process.
                os.utime(path)
                self._made(path, leaf)
                return
            os.makedirs(leaf, exist_ok=True)
            self._write_atomically(path, leaf, payload)
        except OSError as exc:
            raise _unavailable(self.name, "put", exc, chunk_hash=chunk_hash) from exc

    @staticmethod
    def _holds(path: str, payload: bytes | memoryview) -> bool:
        """True if ``path`` already holds exactly ``payload`` (hence a valid copy)."""
        try:
            if os.stat(path).st_size != len(payload):
                return False
            with open(path, "rb") as f:
                return f.read() == payload
        except FileNotFoundError:
            return False

    def _write_atomically(self, path: str, leaf: str, payload: bytes | memoryview) -> None:
        tmp = os.path.join(leaf, f"{TEMP_PREFIX}{os.path.basename(path)[:8]}-{uuid.uuid4().hex}")
        renamed = False
        try:
            with open(tmp, "xb") as f:
                f.write(payload)
                f.flush()
                if self.fsync_mode == "always":
                    os.fsync(f.fileno())
            with self._lock:
                try:
                    old_size: int | None = os.stat(path).st_size
                except FileNotFoundError:
                    old_size = None
                os.replace(tmp, path)
                renamed = True
                if old_size is None:
                    self._count += 1
                    self._used += len(payload)
                else:
                    self._used += len(payload) - old_size
            self._made(path, leaf)
        finally:
            if not renamed:
                # The original error matters more; ``open`` sweeps whatever is left.
                with contextlib.suppress(OSError):
                    os.unlink(tmp)

    def _made(self, path: str, leaf: str) -> None:
        """Record or perform the durability work for a chunk file now at ``path``."""
        if self.fsync_mode == "always":
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                os.fsync(fd)
                self._durable(fd)
            finally:
                os.close(fd)
            self._fsync_dirs({leaf})
        elif self.fsync_mode == "batch":
            with self._lock:
                self._pending.add(path)
                self._dirty_leaves.add(leaf)
                if not self._eager_flush:
                    return
                if not self._flushers:
                    for i in range(FLUSH_THREADS):
                        flusher = threading.Thread(
                            target=self._flush_loop, name=f"dfms-flush-{self.name}-{i}", daemon=True
                        )
                        flusher.start()
                        self._flushers.append(flusher)
            self._flush_queue.put(path)

    def _flush_loop(self) -> None:
        """Fsync files in the background (batch mode). A file leaves ``_pending`` only once its
        fsync succeeded; failures stay pending, and ``sync`` retries and reports them."""
        while (path := self._flush_queue.get()) is not None:
            with self._lock:
                if path not in self._pending:
                    continue
            try:
                if not self._fsync_file(path):
                    continue  # deleted meanwhile: sync() drops it
            except OSError:
                continue  # unreadable or the fsync failed: sync() retries and reports it
            with self._lock:
                self._pending.discard(path)

    def _durable(self, fd: int) -> None:
        """A chunk file just became durable: drop its pages from the page cache unless
        ``cache_written`` (advice only; a platform without it keeps them)."""
        if not self.cache_written and hasattr(os, "posix_fadvise"):
            with contextlib.suppress(OSError):
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)

    def _fsync_dirs(self, leaves: set[str]) -> None:
        """Fsync each leaf directory, and its parents until they are known durable."""
        _parallel(_fsync_path, sorted(leaves))
        with self._lock:
            fresh = leaves - self._durable_leaves
        if fresh:
            _parallel(_fsync_path, sorted({os.path.dirname(leaf) for leaf in fresh}))
            _fsync_path(self._root)
            with self._lock:
                self._durable_leaves.update(fresh)

    # -- sync --------------------------------------------------------------------------------

    async def sync(self) -> None:
        """Fsync every file written since the last ``sync`` (batch mode) and their directories.

        Concurrent callers are serialised, so when ``sync`` returns every ``put`` that completed
        before it was called is durable, even if another ``sync`` had already taken those files.
        """
        await self._ensure_open()
        if self.fsync_mode != "batch":
            return
        async with self._sync_lock:
            await asyncio.to_thread(self._sync_pending)

    def _sync_pending(self) -> None:
        with self._lock:
            files, self._pending = self._pending, set()
            leaves, self._dirty_leaves = self._dirty_leaves, set()
        if not files and not leaves:
            return
        try:
            paths = sorted(files)
            synced = _parallel(self._fsync_file, paths)
            leaves.update(
                os.path.dirname(path) for path, ok in zip(paths, synced, strict=True) if ok
            )
            self._fsync_dirs(leaves)
        except OSError as exc:
            with self._lock:
                self._pending |= files  # not durable: the next sync tries again
                self._dirty_leaves |= leaves
            raise _unavailable(self.name, "sync", exc) from exc

    def _fsync_file(self, path: str) -> bool:
        """Fsync one chunk file; False if it was deleted since it was written."""
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return False
        try:
            os.fsync(fd)
            self._durable(fd)
        finally:
            os.close(fd)
        return True

    # -- get / has / delete ------------------------------------------------------------------

    async def get(self, chunk_hash: str) -> bytes:
        check_hash(chunk_hash)
        await self._ensure_open()
        return await asyncio.to_thread(self._get_sync, chunk_hash)

    def _get_sync(self, chunk_hash: str) -> bytes:
        path = self._path(chunk_hash)
        try:
            with open(path, "rb") as f:
                data = f.read()
        except (FileNotFoundError, NotADirectoryError) as exc:
            raise ChunkNotFound(
                f"chunk {chunk_hash} not found on {self.name}",
                store=self.name,
                chunk_hash=chunk_hash,
            ) from exc
        except OSError as exc:
            raise _unavailable(self.name, "get", exc, chunk_hash=chunk_hash) from exc
        if sha256_hex(data) != chunk_hash:
            raise ChunkCorrupt(
                f"chunk {chunk_hash} on {self.name} fails verification",
                store=self.name,
                chunk_hash=chunk_hash,
                size=len(data),
            )
        return data

    async def has(self, hashes: Sequence[str]) -> set[str]:
        wanted = check_hashes(hashes)
        await self._ensure_open()
        if not wanted:
            return set()
        return await asyncio.to_thread(self._has_sync, wanted)

    def _has_sync(self, hashes: list[str]) -> set[str]:
        found: set[str] = set()
        try:
            for h in hashes:
                try:
                    st = os.stat(self._path(h))
                except (FileNotFoundError, NotADirectoryError):
                    continue
                if st.st_mode & 0o170000 == 0o100000:  # regular file
                    found.add(h)
        except OSError as exc:
            raise _unavailable(self.name, "has", exc) from exc
        return found

    async def delete(self, hashes: Sequence[str]) -> int:
        wanted = sorted(set(check_hashes(hashes)))
        await self._ensure_open()
        if not wanted:
            return 0
        return await asyncio.to_thread(self._delete_sync, wanted)

    def _delete_sync(self, hashes: list[str]) -> int:
        removed = 0
        try:
            for h in hashes:
                path = self._path(h)
                with self._lock:
                    try:
                        size = os.stat(path).st_size
                        os.unlink(path)
                    except (FileNotFoundError, NotADirectoryError):
                        continue
                    self._count -= 1
                    self._used -= size
                    self._pending.discard(path)
                removed += 1
        except OSError as exc:
            raise _unavailable(self.name, "delete", exc) from exc
        return removed

    # -- stat --------------------------------------------------------------------------------

    async def stat(self) -> StoreStat:
        """Capacity and free space of the file system (or the configured ``capacity``), plus
        chunk count and bytes used, from counters kept since the store opened."""
        await self._ensure_open()
        try:
            usage = await asyncio.to_thread(shutil.disk_usage, self._root)
        except OSError as exc:
            raise _unavailable(self.name, "stat", exc) from exc
        # Read without the lock: it is held by worker threads around renames, which can stall on a
        # sick disk, and the event loop must not wait for them. Each counter is read atomically.
        used, count = self._used, self._count
        if self._capacity is None:
            capacity, free = usage.total, usage.free
        else:
            capacity = self._capacity
            free = max(0, min(usage.free, capacity - used))
        return StoreStat(capacity=capacity, free=free, used=used, chunk_count=count)


def _parallel(fn: Callable[[str], T], items: Sequence[str]) -> list[T]:
    """``[fn(item) for item in items]`` with up to ``FLUSH_THREADS`` fsyncs in flight (a disk
    flushes several at once faster than one after another). The first error is raised once all
    calls have finished."""
    if len(items) <= 1:
        return [fn(item) for item in items]
    with ThreadPoolExecutor(
        min(FLUSH_THREADS, len(items)), thread_name_prefix="dfms-fsync"
    ) as pool:
        return list(pool.map(fn, items))


def _fsync_path(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
