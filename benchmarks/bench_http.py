"""Upload and download throughput of `dfms serve` (embedded defaults) through the HTTP API.

Prints MB/s next to baselines measured in the same run on the same file:
  * `openssl dgst -sha256` of the file (hashing alone, SHA-NI),
  * a plain HTTP upload of the file to a minimal Python server that discards the body,
  * the durable-write ceilings of this disk: the file copied and fsynced; the file as 1 MiB
    files written and fsynced 8 at a time; DFMS's local store writing it as ~1.25 MiB chunks
    (put + sync, nothing else). A durable upload cannot be faster than these.
  * the CPU floor of an upload: CPU time per byte of each step no upload can skip, each measured
    alone on the same bytes (curl sending the file; granian receiving it into an ASGI app that
    drops it; SHA-256 of every chunk and of the whole file; the FastCDC cut; the local store's
    put + sync). Their sum, divided into the machine's cores, bounds the upload rate from above
    even with perfect overlap and no other work.
Downloads go to /dev/null (size checked); the server verifies every chunk before sending it.
Targets (2-core machine): upload >= 500 MB/s, re-upload >= 1.5x first upload, download >= 600 MB/s,
gateway peak RSS during a 2 GiB upload <= 300 MiB.

    python benchmarks/bench_http.py [--size-mib 512] [--rss-mib 2048]
                                    [--new-uploads 4 [--memcg-mib 1536]]

``--new-uploads N`` uploads N files of fresh bytes to one server, one after another;
``--memcg-mib`` runs those in a memory cgroup of that size (cgroup v1), where new page-cache
pages are recycled within the limit as on a server whose memory is full. On this VM, free memory
is handed back to the host (virtio-balloon free-page reporting), so a page-cache page taken from
free memory is faulted in by the host on first touch: the copy into it then costs ~2 ns per byte
(perf: `copy_folio_from_iter_atomic`, 29% of the server's CPU in a new upload).
"""

from __future__ import annotations

import argparse
import http.server
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.e2e.server import ServerProcess, free_port

CURL = shutil.which("curl")


def make_file(path: Path, mib: int) -> None:
    with path.open("wb") as f:
        for _ in range(mib):
            f.write(os.urandom(1 << 20))


def timed(cmd: list[str]) -> tuple[float, str]:
    t = time.perf_counter()
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return time.perf_counter() - t, out


def children_cpu() -> float:
    """User + system CPU seconds of this process's waited-for children so far."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def self_cpu() -> float:
    """User + system CPU seconds of this process (all its threads) so far."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def curl_upload(url: str, token: str, path: Path, name: str) -> tuple[float, dict[str, object]]:
    assert CURL, "curl is needed for the HTTP benchmark"
    dt, out = timed(
        [
            CURL,
            "-sS",
            "-X",
            "POST",
            f"{url}/api/v1/files/upload",
            "-H",
            f"Authorization: Bearer {token}",
            "-H",
            "Content-Type: application/octet-stream",
            "-H",
            f"X-File-Name: {name}",
            "-H",
            "Expect:",
            "-T",
            str(path),
        ]
    )
    return dt, json.loads(out)["file"]


def curl_download(url: str, token: str, file_id: str) -> tuple[float, int]:
    """Download to /dev/null (the client's own disk writes are not what is measured; the server
    verifies every chunk before sending it); return the time and the bytes received."""
    assert CURL
    dt, out = timed(
        [
            CURL,
            "-sS",
            "-f",
            f"{url}/api/v1/files/{file_id}/download",
            "-H",
            f"Authorization: Bearer {token}",
            "-o",
            os.devnull,
            "-w",
            "%{size_download}",
        ]
    )
    return dt, int(out.strip())


def curl_post_file(url: str, path: Path) -> tuple[float, str]:
    """POST the file as the raw body with curl (no Expect: 100-continue round trip)."""
    assert CURL
    return timed([CURL, "-sS", "-X", "POST", url, "-H", "Expect:", "-T", str(path)])


class _Discard(http.server.BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        left = int(self.headers.get("Content-Length", "0"))
        while left:
            left -= len(self.rfile.read(min(left, 1 << 20)))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def plain_upload(path: Path) -> tuple[float, float]:
    """A plain HTTP upload to a minimal Python server; returns the time and curl's CPU seconds."""
    port = free_port()
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", port), _Discard)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        assert CURL
        cpu0 = children_cpu()
        dt, _ = curl_post_file(f"http://127.0.0.1:{port}/", path)
        return dt, children_cpu() - cpu0
    finally:
        srv.shutdown()


def durable_copy(src: Path, dst: Path) -> float:
    """Baseline: copy the file and fsync it (what a durable upload must at least do)."""
    t = time.perf_counter()
    with src.open("rb") as fin, dst.open("wb") as fout:
        while block := fin.read(4 << 20):
            fout.write(block)
        fout.flush()
        os.fsync(fout.fileno())
    dt = time.perf_counter() - t
    dst.unlink()
    return dt


def parallel_durable_files(src: Path, dst: Path, threads: int = 8) -> float:
    """Baseline: the file's bytes as 1 MiB files, each written and fsynced, ``threads`` at once
    (the most a durable chunk store can get out of this disk with queue depth ``threads``)."""
    from concurrent.futures import ThreadPoolExecutor

    data = src.read_bytes()
    dst.mkdir()
    step = 1 << 20

    def one(i: int) -> None:
        fd = os.open(dst / f"{i:06d}", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            os.write(fd, data[i * step : (i + 1) * step])
            os.fsync(fd)
        finally:
            os.close(fd)

    t = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(one, range((len(data) + step - 1) // step)))
    dt = time.perf_counter() - t
    shutil.rmtree(dst)
    return dt


def store_ceiling(src: Path, root: Path, concurrency: int = 8) -> tuple[float, float]:
    """Baseline: DFMS's own local store writing the file as ~1.25 MiB chunks (hashes computed
    before the clock starts; fsync=batch, then ``sync``), ``concurrency`` puts at once: what an
    upload's writes cost without HTTP, chunking or hashing. Returns the time and the CPU seconds
    this process spent (its store threads; the kernel's own writeback threads are not counted,
    so the figure is a lower bound)."""
    import asyncio
    import hashlib

    from dfms.storage.local import LocalDirStore

    data = memoryview(src.read_bytes())
    step = 1_310_720
    pieces = [data[i : i + step] for i in range(0, len(data), step)]
    hashes = [hashlib.sha256(p).hexdigest() for p in pieces]

    async def run() -> float:
        store = await LocalDirStore.open(root, name="bench", fsync="batch")
        slots = asyncio.Semaphore(concurrency)

        async def put(h: str, piece: memoryview) -> None:
            async with slots:
                await store.put(h, piece, trusted=True)

        t = time.perf_counter()
        await asyncio.gather(*(put(h, p) for h, p in zip(hashes, pieces, strict=True)))
        await store.sync()
        return time.perf_counter() - t

    cpu0 = self_cpu()
    dt = asyncio.run(run())
    cpu = self_cpu() - cpu0
    shutil.rmtree(root)
    return dt, cpu


def granian_receive(path: Path) -> float:
    """Server CPU seconds for granian (DFMS's HTTP server) to receive the file into an ASGI app
    that drops it (``_drain_app.py``): the receiving share of an upload, before any DFMS code."""
    import httpx

    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "granian",
            "--interface",
            "asgi",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--no-ws",
            "_drain_app:app",
        ],
        cwd=Path(__file__).resolve().parent,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.post(f"http://127.0.0.1:{port}/", content=b"x", timeout=1.0)
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("granian did not start") from None
                time.sleep(0.05)
        cpu0 = tree_cpu_seconds(proc.pid)
        assert CURL
        _, out = curl_post_file(f"http://127.0.0.1:{port}/", path)
        cpu = tree_cpu_seconds(proc.pid) - cpu0
        assert int(out) == path.stat().st_size, out
        return cpu
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(30)


def compute_cpu(src: Path) -> tuple[float, float]:
    """CPU seconds of one SHA-256 pass over the file's bytes and of the FastCDC cut of them
    (default parameters), each on one thread, best of three."""
    import hashlib

    from dfms.chunking import ChunkParams
    from dfms.chunking.core import make_cutter

    data = src.read_bytes()
    cutter = make_cutter(ChunkParams())

    def best(fn: Callable[[], object]) -> float:
        runs = []
        for _ in range(3):
            t = time.thread_time()
            fn()
            runs.append(time.thread_time() - t)
        return min(runs)

    return best(lambda: hashlib.sha256(data).digest()), best(lambda: cutter.cut(data, True))


def tree_pids(pid: int) -> list[int]:
    """A process and its descendants."""
    pids = [pid]
    for p in pids:
        try:
            out = subprocess.run(["pgrep", "-P", str(p)], capture_output=True, text=True).stdout
        except OSError:
            continue
        pids += [int(c) for c in out.split()]
    return pids


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds used so far by a process tree (from /proc/<pid>/stat)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for p in tree_pids(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / tick


def run_dfms(tmpd: Path, src: Path, tag: str, env: dict[str, str]) -> dict[str, float | bool]:
    import httpx

    with ServerProcess(tmpd / f"data-{tag}", env=env) as server:
        assert server.proc is not None
        pid = server.proc.pid
        r = httpx.post(
            f"{server.url}/api/v1/auth/register",
            json={"email": "bench@example.com", "password": "benchpass123", "display_name": "B"},
        )
        token = r.json()["tokens"]["access_token"]
        cpu0 = tree_cpu_seconds(pid)
        t_up, f = curl_upload(server.url, token, src, "a.bin")
        cpu1 = tree_cpu_seconds(pid)
        t_re, f2 = curl_upload(server.url, token, src, "b.bin")
        cpu2 = tree_cpu_seconds(pid)
        t_down, received = curl_download(server.url, token, str(f["id"]))
        cpu3 = tree_cpu_seconds(pid)
        ok = received == src.stat().st_size
        assert f2["new_chunks"] == 0
    shutil.rmtree(tmpd / f"data-{tag}", ignore_errors=True)
    return {
        "up": t_up,
        "re": t_re,
        "down": t_down,
        "ok": ok,
        "chunks": float(f["chunk_count"]),
        "cpu_up": cpu1 - cpu0,
        "cpu_re": cpu2 - cpu1,
        "cpu_down": cpu3 - cpu2,
    }


class MemoryCgroup:
    """A child memory cgroup (cgroup v1 memory controller) with a limit that this process joins
    while the block runs, so the servers it starts inherit it. New page-cache pages are then
    recycled within the limit, as on a long-running server whose memory is full, instead of
    coming from free memory that this VM's balloon has handed back to its host (each such page
    is faulted in by the host on first touch)."""

    def __init__(self, limit_mib: int) -> None:
        line = next(
            (ln for ln in Path("/proc/self/cgroup").read_text().splitlines() if ":memory:" in ln),
            None,
        )
        if line is None:
            raise SystemExit("--memcg-mib needs the cgroup v1 memory controller")
        self.parent = Path("/sys/fs/cgroup/memory") / line.split(":", 2)[2].lstrip("/")
        self.path = self.parent / f"dfms-bench-{os.getpid()}"
        self.limit = limit_mib << 20

    def __enter__(self) -> MemoryCgroup:
        try:
            self.path.mkdir()
            (self.path / "memory.limit_in_bytes").write_text(str(self.limit))
            (self.path / "cgroup.procs").write_text(str(os.getpid()))
        except OSError as exc:
            raise SystemExit(f"--memcg-mib: cannot use {self.path}: {exc}") from exc
        return self

    def __exit__(self, *exc: object) -> None:
        (self.parent / "cgroup.procs").write_text(str(os.getpid()))
        self.path.rmdir()


def new_uploads(tmpd: Path, size_mib: int, count: int) -> list[tuple[float, float]]:
    """Upload ``count`` files of fresh random bytes (all chunks new) to one server; return each
    upload's time and server CPU seconds."""
    import httpx

    out = []
    with ServerProcess(tmpd / "data-new") as server:
        assert server.proc is not None
        r = httpx.post(
            f"{server.url}/api/v1/auth/register",
            json={"email": "bench@example.com", "password": "benchpass123", "display_name": "B"},
        )
        token = r.json()["tokens"]["access_token"]
        for i in range(count):
            src = tmpd / "new.bin"
            make_file(src, size_mib)
            cpu0 = tree_cpu_seconds(server.proc.pid)
            dt, f = curl_upload(server.url, token, src, f"new-{i}.bin")
            out.append((dt, tree_cpu_seconds(server.proc.pid) - cpu0))
            assert f["new_chunks"] == f["chunk_count"], f
            src.unlink()
    shutil.rmtree(tmpd / "data-new", ignore_errors=True)
    return out


def tree_rss_peak(pid: int) -> int:
    """Sum of VmHWM (peak RSS, KiB) over a process and its descendants."""
    total = 0
    for p in tree_pids(pid):
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total * 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--size-mib", type=int, default=512)
    ap.add_argument("--rss-mib", type=int, default=2048, help="size of the RSS run (0 skips it)")
    ap.add_argument(
        "--new-uploads",
        type=int,
        default=0,
        help="also upload this many files of fresh bytes to one server, one after another",
    )
    ap.add_argument(
        "--memcg-mib",
        type=int,
        default=0,
        help="run those uploads in a memory cgroup of this many MiB (cgroup v1; page cache "
        "recycled as on a server whose memory is full)",
    )
    args = ap.parse_args()
    mb = args.size_mib * (1 << 20) / 1e6
    with tempfile.TemporaryDirectory(prefix="dfms-bench-", dir=Path.cwd()) as tmp:
        tmpd = Path(tmp)
        src = tmpd / "src.bin"
        make_file(src, args.size_mib)
        t_ssl, _ = timed(["openssl", "dgst", "-sha256", str(src)])
        t_plain, cpu_client = plain_upload(src)
        t_disk = durable_copy(src, tmpd / "copy.bin")
        t_files = parallel_durable_files(src, tmpd / "files")
        t_store, cpu_store = store_ceiling(src, tmpd / "store")
        cpu_receive = granian_receive(src)
        cpu_sha, cpu_cut = compute_cpu(src)
        runs = {
            "fsync=batch (default, durable)": run_dfms(tmpd, src, "batch", {}),
            "fsync=never (page cache only)": run_dfms(
                tmpd, src, "never", {"DFMS_STORAGE__FSYNC": "never"}
            ),
        }
        series: list[tuple[float, float]] = []
        if args.new_uploads:
            if args.memcg_mib:
                with MemoryCgroup(args.memcg_mib):
                    series = new_uploads(tmpd, args.size_mib, args.new_uploads)
            else:
                series = new_uploads(tmpd, args.size_mib, args.new_uploads)
        rss = 0
        if args.rss_mib:
            big = tmpd / "big.bin"
            make_file(big, args.rss_mib)
            import httpx

            with ServerProcess(tmpd / "data-rss") as server:
                r = httpx.post(
                    f"{server.url}/api/v1/auth/register",
                    json={
                        "email": "bench@example.com",
                        "password": "benchpass123",
                        "display_name": "B",
                    },
                )
                assert server.proc is not None
                curl_upload(server.url, r.json()["tokens"]["access_token"], big, "big.bin")
                rss = tree_rss_peak(server.proc.pid)
        print(f"file: {args.size_mib} MiB random bytes (MB = 10^6 bytes)")
        print(f"  baseline openssl dgst -sha256            {mb / t_ssl:8.0f} MB/s")
        print(f"  baseline plain HTTP upload (curl -T)     {mb / t_plain:8.0f} MB/s")
        print(f"  baseline durable disk write (write+fsync){mb / t_disk:8.0f} MB/s")
        print(f"  baseline 1 MiB files write+fsync, 8 thr. {mb / t_files:8.0f} MB/s")
        print(f"  baseline DFMS local store put+sync only  {mb / t_store:8.0f} MB/s")
        size = args.size_mib << 20
        cores = os.cpu_count() or 1
        floor = {
            "curl sending (client)": cpu_client,
            "granian receiving": cpu_receive,
            "SHA-256 x2 (chunks, file)": 2 * cpu_sha,
            "FastCDC cut": cpu_cut,
            "store put+sync": cpu_store,
        }
        total = sum(floor.values()) / size * 1e9
        print("  upload CPU floor (ns per byte, each step measured alone on these bytes):")
        for name, seconds in floor.items():
            print(f"    {name:<36} {seconds / size * 1e9:8.2f} ns/B")
        print(
            f"    sum {total:.2f} ns/B -> at most {cores / total * 1000:.0f} MB/s on {cores} cores"
            " (perfect overlap, nothing else)"
        )
        print(
            f"    without the store (re-upload)       {(total - cpu_store / size * 1e9):8.2f} ns/B"
            f" -> at most {cores / (total - cpu_store / size * 1e9) * 1000:.0f} MB/s"
        )

        def cpu(seconds: float) -> str:
            # server CPU per byte: comparable between runs even on a busy machine
            return f"server CPU {seconds / size * 1e9:.2f} ns/B"

        for tag, r in runs.items():
            print(f"  dfms {tag}: chunks={r['chunks']:.0f}")
            print(
                f"    upload (new content)                 {mb / r['up']:8.0f} MB/s"
                f"   {cpu(r['cpu_up'])}"
            )
            print(
                f"    re-upload (all dedup)                {mb / r['re']:8.0f} MB/s"
                f"   x{r['up'] / r['re']:.2f} vs first upload, {cpu(r['cpu_re'])}"
            )
            print(
                f"    download (verified)                  {mb / r['down']:8.0f} MB/s"
                f"   size ok={r['ok']}, {cpu(r['cpu_down'])}"
            )
        if series:
            where = f" in a {args.memcg_mib} MiB memory cgroup" if args.memcg_mib else ""
            print(f"  dfms: {len(series)} uploads of fresh bytes, one server{where}:")
            for i, (dt, cpu_s) in enumerate(series, 1):
                print(f"    upload {i:<2}{mb / dt:36.0f} MB/s   {cpu(cpu_s)}")
        if rss:
            print(
                f"  gateway peak RSS during a {args.rss_mib} MiB upload: {rss / (1 << 20):.0f} MiB"
                " (server process tree, VmHWM)"
            )


if __name__ == "__main__":
    main()
