"""LocalDirStore specifics: layout, atomic writes, crash leftovers, fsync modes, I/O errors."""

from __future__ import annotations

import asyncio
import errno
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

import dfms.storage.local as local_mod
from dfms.errors import ConfigError, StoreUnavailable, ValidationFailed
from dfms.storage.local import TEMP_MAX_AGE, TEMP_PREFIX, LocalDirStore

if TYPE_CHECKING:
    from conftest import MakeChunk


class FsyncSpy:
    """Replaces os.fsync; records the path of every fsynced descriptor."""

    def __init__(self, fail: int = 0) -> None:
        self.paths: list[str] = []
        self.fail = fail
        self._real = os.fsync

    def __call__(self, fd: int) -> None:
        if self.fail:
            self.fail -= 1
            raise OSError(errno.EIO, "Input/output error")
        self.paths.append(os.readlink(f"/proc/self/fd/{fd}"))
        self._real(fd)


@pytest.fixture
def fsync_spy(monkeypatch: pytest.MonkeyPatch) -> FsyncSpy:
    spy = FsyncSpy()
    monkeypatch.setattr(os, "fsync", spy)
    return spy


def eio(*args: Any, **kwargs: Any) -> Any:
    raise OSError(errno.EIO, "Input/output error")


# -- layout -------------------------------------------------------------------------------------


async def test_chunk_file_is_at_root_ab_cd_hash(tmp_path: Path, make_chunk: MakeChunk) -> None:
    store = await LocalDirStore.open(tmp_path, fsync="never")
    h, data = make_chunk(1)
    await store.put(h, data)
    path = tmp_path / h[:2] / h[2:4] / h
    assert store.path_for(h) == path
    assert path.read_bytes() == data
    assert [p.name for p in path.parent.iterdir()] == [h]  # no temp file left behind


def test_path_for_rejects_invalid_ids(tmp_path: Path) -> None:
    store = LocalDirStore(tmp_path)
    for bad in ("../../etc/passwd", "A" * 64, "0" * 63):
        with pytest.raises(ValidationFailed):
            store.path_for(bad)


def test_invalid_configuration_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        LocalDirStore(tmp_path, fsync="sometimes")  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        LocalDirStore(tmp_path, capacity=-1)


def test_default_name_and_repr(tmp_path: Path) -> None:
    store = LocalDirStore(tmp_path)
    assert store.name == f"local:{tmp_path}"
    assert "LocalDirStore" in repr(store) and "batch" in repr(store)


async def test_store_opens_lazily_and_creates_its_root(
    tmp_path: Path, make_chunk: MakeChunk
) -> None:
    root = tmp_path / "a" / "b"
    store = LocalDirStore(root, fsync="never")
    assert not root.exists()  # the constructor does no I/O
    h, data = make_chunk(2)
    await asyncio.gather(store.put(h, data), store.has([h]))  # concurrent first calls open once
    assert await store.get(h) == data


# -- crash leftovers and reopening --------------------------------------------------------------


async def test_open_removes_temp_files_and_counts_chunks(
    tmp_path: Path, make_chunk: MakeChunk
) -> None:
    first = await LocalDirStore.open(tmp_path, fsync="never")
    chunks = [make_chunk(i, size=500 + i) for i in range(10)]
    for h, data in chunks:
        await first.put(h, data)
    h0 = chunks[0][0]
    leaf = tmp_path / h0[:2] / h0[2:4]
    dead = time.time() - TEMP_MAX_AGE - 5
    for name, content in (
        (f"{TEMP_PREFIX}{h0[:8]}-crashed", b"half a chunk"),
        (f"{TEMP_PREFIX}other", b""),
    ):
        (leaf / name).write_bytes(content)
        os.utime(leaf / name, (dead, dead))
    # A fresh temp file may be a live write of another process (dfms admin gc beside serve).
    (leaf / f"{TEMP_PREFIX}inflight").write_bytes(b"being written")
    (leaf / "README").write_bytes(b"not a chunk")  # unknown files are left alone and ignored
    (tmp_path / "zz").mkdir()  # not a fan-out dir

    second = await LocalDirStore.open(tmp_path, fsync="never")
    assert second.temp_files_removed == 2
    assert sorted(p.name for p in leaf.iterdir()) == sorted(
        ["README", f"{TEMP_PREFIX}inflight", *(h for h, _ in chunks if h[:4] == h0[:4])]
    )
    st = await second.stat()
    assert st.chunk_count == 10
    assert st.used == sum(len(d) for _, d in chunks)
    assert {i.hash async for i in second.iterate()} == {h for h, _ in chunks}


async def test_iterate_ignores_misplaced_and_foreign_files(
    tmp_path: Path, make_chunk: MakeChunk
) -> None:
    store = await LocalDirStore.open(tmp_path, fsync="never")
    h, data = make_chunk(3)
    await store.put(h, data)
    other, _ = make_chunk(4)
    wrong_leaf = tmp_path / h[:2] / h[2:4] / other  # a valid id in the wrong directory
    wrong_leaf.write_bytes(b"x")
    (tmp_path / h[:2] / h[2:4] / f"{TEMP_PREFIX}inflight").write_bytes(b"x")
    (tmp_path / "ab").write_bytes(b"a file where a fan-out dir would be")
    assert [i.hash async for i in store.iterate()] == [h]


async def test_put_over_a_truncated_file_rewrites_it(tmp_path: Path, make_chunk: MakeChunk) -> None:
    """A crash in batch mode can leave a renamed but empty file: the next put repairs it."""
    before_crash = await LocalDirStore.open(tmp_path, fsync="never")
    h, data = make_chunk(5)
    await before_crash.put(h, data)
    before_crash.path_for(h).write_bytes(b"")
    store = await LocalDirStore.open(tmp_path, fsync="batch", eager_flush=False)  # the restart
    assert (await store.stat()).used == 0
    await store.put(h, data)
    assert store.path_for(h).read_bytes() == data
    assert (await store.stat()).used == len(data)


async def test_idempotent_put_writes_nothing_but_refreshes_mtime(
    tmp_path: Path, make_chunk: MakeChunk, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = await LocalDirStore.open(tmp_path, fsync="never")
    h, data = make_chunk(6)
    await store.put(h, data)
    path = store.path_for(h)
    os.utime(path, (1_000_000, 1_000_000))
    replaced: list[tuple[str, str]] = []
    real_replace = os.replace

    def spy_replace(src: str, dst: str) -> None:
        replaced.append((src, dst))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", spy_replace)
    await store.put(h, data)
    assert replaced == []
    assert path.stat().st_mtime > 1_000_000


# -- fsync modes --------------------------------------------------------------------------------


async def test_batch_sync_makes_files_and_dirs_durable(
    tmp_path: Path, make_chunk: MakeChunk, fsync_spy: FsyncSpy
) -> None:
    """In batch mode put returns before any fsync is awaited (a background thread starts them);
    when sync returns every file, its directory and new parents have been fsynced."""
    store = await LocalDirStore.open(tmp_path, fsync="batch", eager_flush=False)
    chunks = [make_chunk(i) for i in range(3)]
    for h, data in chunks:
        await store.put(h, data)
    await store.sync()
    synced = set(fsync_spy.paths)
    for h, _ in chunks:
        path = store.path_for(h)
        assert str(path) in synced
        assert str(path.parent) in synced  # the rename is durable
        assert str(path.parent.parent) in synced  # the new leaf directory is durable
    assert str(tmp_path) in synced
    fsync_spy.paths.clear()
    await store.sync()
    assert fsync_spy.paths == []  # nothing pending


async def test_batch_idempotent_put_is_synced_again(
    tmp_path: Path, make_chunk: MakeChunk, fsync_spy: FsyncSpy
) -> None:
    """A file found on disk may be an unsynced leftover of a crash: a put of it syncs it."""
    h, data = make_chunk(7)
    first = await LocalDirStore.open(tmp_path, fsync="never")
    await first.put(h, data)
    store = await LocalDirStore.open(tmp_path, fsync="batch", eager_flush=False)
    await store.put(h, data)
    await store.sync()
    assert str(store.path_for(h)) in fsync_spy.paths


async def test_batch_sync_skips_files_deleted_before_it(
    tmp_path: Path, make_chunk: MakeChunk, fsync_spy: FsyncSpy
) -> None:
    store = await LocalDirStore.open(tmp_path, fsync="batch", eager_flush=False)
    (h1, d1), (h2, d2) = make_chunk(8), make_chunk(9)
    await store.put(h1, d1)
    await store.put(h2, d2)
    await store.delete([h1])
    store.path_for(h2).unlink()  # removed behind the store's back
    await store.sync()
    assert str(store.path_for(h1)) not in fsync_spy.paths
    assert str(store.path_for(h2)) not in fsync_spy.paths


async def test_failed_sync_raises_and_is_retried(
    tmp_path: Path, make_chunk: MakeChunk, fsync_spy: FsyncSpy
) -> None:
    store = await LocalDirStore.open(tmp_path, fsync="batch", eager_flush=False)
    h, data = make_chunk(10)
    await store.put(h, data)
    fsync_spy.fail = 1
    with pytest.raises(StoreUnavailable) as info:
        await store.sync()
    assert isinstance(info.value.__cause__, OSError)
    assert info.value.details["errno"] == "EIO"
    await store.sync()
    assert str(store.path_for(h)) in fsync_spy.paths


async def test_concurrent_syncs_all_complete(
    tmp_path: Path, make_chunk: MakeChunk, fsync_spy: FsyncSpy
) -> None:
    store = await LocalDirStore.open(tmp_path, fsync="batch", eager_flush=False)
    chunks = [make_chunk(i) for i in range(20, 30)]
    await asyncio.gather(*(store.put(h, d) for h, d in chunks))
    await asyncio.gather(*(store.sync() for _ in range(4)))
    assert {str(store.path_for(h)) for h, _ in chunks} <= set(fsync_spy.paths)


async def test_always_fsyncs_the_temp_file_before_rename_and_the_dirs_after(
    tmp_path: Path, make_chunk: MakeChunk, fsync_spy: FsyncSpy
) -> None:
    store = await LocalDirStore.open(tmp_path, fsync="always")
    h, data = make_chunk(11)
    await store.put(h, data)
    path = store.path_for(h)
    assert Path(fsync_spy.paths[0]).name.startswith(TEMP_PREFIX)  # data before the rename
    assert Path(fsync_spy.paths[0]).parent == path.parent
    assert str(path.parent) in fsync_spy.paths
    assert str(path.parent.parent) in fsync_spy.paths
    assert str(tmp_path) in fsync_spy.paths
    fsync_spy.paths.clear()
    await store.sync()  # already durable
    assert fsync_spy.paths == []
    await store.delete([h])
    await store.put(h, data)  # the leaf directory is known durable now: parents are not synced
    assert str(tmp_path) not in fsync_spy.paths


async def test_always_idempotent_put_fsyncs_the_existing_file(
    tmp_path: Path, make_chunk: MakeChunk, fsync_spy: FsyncSpy
) -> None:
    store = await LocalDirStore.open(tmp_path, fsync="always")
    h, data = make_chunk(13)
    await store.put(h, data)
    fsync_spy.paths.clear()
    await store.put(h, data)
    assert fsync_spy.paths[:2] == [str(store.path_for(h)), str(store.path_for(h).parent)]


async def test_never_mode_never_fsyncs(
    tmp_path: Path, make_chunk: MakeChunk, fsync_spy: FsyncSpy
) -> None:
    store = await LocalDirStore.open(tmp_path, fsync="never")
    h, data = make_chunk(14)
    await store.put(h, data)
    await store.sync()
    await store.close()
    assert fsync_spy.paths == []


async def test_close_syncs_pending_writes_in_batch_mode(
    tmp_path: Path, make_chunk: MakeChunk, fsync_spy: FsyncSpy
) -> None:
    store = await LocalDirStore.open(tmp_path, fsync="batch", eager_flush=False)
    h, data = make_chunk(15)
    await store.put(h, data)
    await store.close()
    assert str(store.path_for(h)) in fsync_spy.paths
    with pytest.raises(StoreUnavailable):
        await store.stat()


# -- capacity -----------------------------------------------------------------------------------


async def test_capacity_override(tmp_path: Path, make_chunk: MakeChunk) -> None:
    store = await LocalDirStore.open(tmp_path, fsync="never", capacity=10_000)
    h, data = make_chunk(16, size=4000)
    await store.put(h, data)
    st = await store.stat()
    assert (st.capacity, st.used, st.chunk_count) == (10_000, 4000, 1)
    assert st.free == 6000
    full = await LocalDirStore.open(tmp_path, fsync="never", capacity=100)
    assert (await full.stat()).free == 0


async def test_stat_does_not_walk_the_tree(
    tmp_path: Path, make_chunk: MakeChunk, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = await LocalDirStore.open(tmp_path, fsync="never")
    h, data = make_chunk(17)
    await store.put(h, data)
    monkeypatch.setattr(os, "scandir", eio)
    st = await store.stat()
    assert st.chunk_count == 1


# -- I/O errors ---------------------------------------------------------------------------------


def _assert_eio(exc: BaseException) -> None:
    assert isinstance(exc, StoreUnavailable)
    assert isinstance(exc.__cause__, OSError)


async def test_rename_failure_maps_to_store_unavailable_and_leaves_no_temp(
    tmp_path: Path, make_chunk: MakeChunk, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = await LocalDirStore.open(tmp_path, fsync="batch", eager_flush=False)
    h, data = make_chunk(18)
    monkeypatch.setattr(os, "replace", eio)
    with pytest.raises(StoreUnavailable) as info:
        await store.put(h, data)
    _assert_eio(info.value)
    assert info.value.details["errno"] == "EIO"
    assert list(store.path_for(h).parent.iterdir()) == []
    monkeypatch.undo()
    assert await store.has([h]) == set()
    assert (await store.stat()).chunk_count == 0


async def test_write_failure_maps_to_store_unavailable(
    tmp_path: Path, make_chunk: MakeChunk, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = await LocalDirStore.open(tmp_path, fsync="always")
    monkeypatch.setattr(os, "fsync", eio)
    h, data = make_chunk(19)
    with pytest.raises(StoreUnavailable) as info:
        await store.put(h, data)
    _assert_eio(info.value)
    assert list(store.path_for(h).parent.iterdir()) == []


async def test_a_file_in_place_of_a_fanout_dir_is_an_io_error(
    tmp_path: Path, make_chunk: MakeChunk
) -> None:
    store = await LocalDirStore.open(tmp_path, fsync="never")
    h, data = make_chunk(20)
    (tmp_path / h[:2]).write_bytes(b"in the way")
    with pytest.raises(StoreUnavailable) as info:
        await store.put(h, data)
    _assert_eio(info.value)
    assert await store.has([h]) == set()


async def test_read_errors_map_to_store_unavailable(
    tmp_path: Path, make_chunk: MakeChunk, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = await LocalDirStore.open(tmp_path, fsync="never")
    h, data = make_chunk(21)
    await store.put(h, data)
    monkeypatch.setattr(local_mod, "open", eio, raising=False)
    with pytest.raises(StoreUnavailable) as info:
        await store.get(h)
    _assert_eio(info.value)


async def test_a_directory_at_a_chunk_path_is_not_a_chunk(
    tmp_path: Path, make_chunk: MakeChunk
) -> None:
    store = await LocalDirStore.open(tmp_path, fsync="never")
    h, _ = make_chunk(22)
    store.path_for(h).mkdir(parents=True)
    assert await store.has([h]) == set()
    with pytest.raises(StoreUnavailable):
        await store.get(h)


@pytest.mark.parametrize(
    ("operation", "patch"),
    [
        ("has", "stat"),
        ("delete", "unlink"),
        ("stat", "disk_usage"),
        ("iterate", "scandir"),
        ("open", "makedirs"),
    ],
)
async def test_every_operation_maps_os_errors(
    tmp_path: Path,
    make_chunk: MakeChunk,
    monkeypatch: pytest.MonkeyPatch,
    operation: str,
    patch: str,
) -> None:
    h, data = make_chunk(23)
    if operation != "open":
        store = await LocalDirStore.open(tmp_path, fsync="never")
        await store.put(h, data)
    target: Any = shutil if patch == "disk_usage" else os
    monkeypatch.setattr(target, patch, eio)
    calls: dict[str, Callable[[], Any]] = {
        "has": lambda: store.has([h]),
        "delete": lambda: store.delete([h]),
        "stat": lambda: store.stat(),
        "iterate": lambda: _drain(store),
        "open": lambda: LocalDirStore.open(tmp_path / "new"),
    }
    with pytest.raises(StoreUnavailable) as info:
        await calls[operation]()
    _assert_eio(info.value)


async def _drain(store: LocalDirStore) -> list[str]:
    return [i.hash async for i in store.iterate()]


async def test_batch_eager_flush_fsyncs_in_background(
    tmp_path: Path, make_chunk: MakeChunk, fsync_spy: FsyncSpy
) -> None:
    """With eager flushing (the default), written files are fsynced by a background thread
    without anyone calling sync, so the final sync has little left to wait for."""
    import time

    store = await LocalDirStore.open(tmp_path, fsync="batch")
    h, data = make_chunk(42)
    await store.put(h, data)
    target = str(store.path_for(h))
    deadline = time.monotonic() + 10
    while target not in fsync_spy.paths and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    assert target in fsync_spy.paths
    await store.sync()
    assert str(store.path_for(h).parent) in fsync_spy.paths  # sync still makes the rename durable
    await store.close()


async def test_batch_sync_fsyncs_files_and_directories_several_at_once(
    tmp_path: Path, make_chunk: MakeChunk, monkeypatch: pytest.MonkeyPatch
) -> None:
    """sync() keeps several fsyncs in flight (a disk flushes them faster together): the first
    two file fsyncs meet at a barrier, which only works if they run at the same time; every
    file and every leaf directory is still fsynced exactly as before."""
    import threading

    from dfms.storage import local

    store = await LocalDirStore.open(tmp_path, fsync="batch", eager_flush=False)
    chunks = [make_chunk(i) for i in range(12)]
    for h, data in chunks:
        await store.put(h, data)
    meet = threading.Barrier(2, timeout=10)
    seen: list[str] = []
    lock = threading.Lock()
    real = os.fsync

    def fsync(fd: int) -> None:
        path = os.readlink(f"/proc/self/fd/{fd}")
        with lock:
            seen.append(path)
            first_two_files = sum(len(os.path.basename(p)) == 64 for p in seen) <= 2
        if len(os.path.basename(path)) == 64 and first_two_files:
            meet.wait()  # BrokenBarrierError (the test fails) if fsyncs run one at a time
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    assert local.FLUSH_THREADS > 1
    await store.sync()
    files = {str(store.path_for(h)) for h, _ in chunks}
    assert files <= set(seen)
    assert {str(store.path_for(h).parent) for h, _ in chunks} <= set(seen)
    assert not meet.broken
    await store.close()


@pytest.mark.parametrize(
    ("fsync", "cache_written", "dropped"),
    [
        ("batch", False, True),
        ("always", False, True),
        ("batch", True, False),
        ("always", True, False),
        ("never", False, False),  # never durable: dirty pages cannot be dropped
    ],
)
async def test_durable_chunks_leave_the_page_cache_unless_cache_written(
    tmp_path: Path,
    make_chunk: MakeChunk,
    monkeypatch: pytest.MonkeyPatch,
    fsync: Any,
    cache_written: bool,
    dropped: bool,
) -> None:
    """With cache_written=False a chunk file's pages are dropped (POSIX_FADV_DONTNEED on that
    file) once it is fsynced, and not with the default True; the chunk reads back intact."""
    advised: list[tuple[str, int]] = []
    real = os.posix_fadvise

    def spy(fd: int, offset: int, length: int, advice: int) -> None:
        advised.append((os.readlink(f"/proc/self/fd/{fd}"), advice))
        real(fd, offset, length, advice)

    monkeypatch.setattr(os, "posix_fadvise", spy)
    store = await LocalDirStore.open(
        tmp_path / "s", fsync=fsync, cache_written=cache_written, eager_flush=False
    )
    h, data = make_chunk(1, 300_000)
    await store.put(h, data)
    await store.sync()
    path = os.fspath(store.path_for(h))
    expected = [(path, os.POSIX_FADV_DONTNEED)] if dropped else []
    assert advised == expected
    assert await store.get(h) == data
    await store.close()
