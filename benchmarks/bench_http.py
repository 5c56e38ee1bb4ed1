"""Upload and download throughput of `dfms serve` (embedded defaults) through the HTTP API.

Prints MB/s next to baselines measured in the same run on the same file:
  * `openssl dgst -sha256` of the file (hashing alone, SHA-NI),
  * a plain HTTP upload of the file to a minimal Python server that discards the body.
Targets (2-core machine): upload >= 500 MB/s, re-upload >= 1.5x first upload, download >= 600 MB/s,
gateway peak RSS during a 2 GiB upload <= 300 MiB.

    python benchmarks/bench_http.py [--size-mib 512] [--rss-mib 2048]
"""

from __future__ import annotations

import argparse
import http.server
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
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
            "--data-binary",
            f"@{path}",
        ]
    )
    return dt, json.loads(out)["file"]


def curl_download(url: str, token: str, file_id: str, out: Path) -> float:
    assert CURL
    dt, _ = timed(
        [
            CURL,
            "-sS",
            "-f",
            f"{url}/api/v1/files/{file_id}/download",
            "-H",
            f"Authorization: Bearer {token}",
            "-o",
            str(out),
        ]
    )
    return dt


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


def plain_upload(path: Path) -> float:
    port = free_port()
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", port), _Discard)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        assert CURL
        dt, _ = timed(
            [
                CURL,
                "-sS",
                "-X",
                "POST",
                f"http://127.0.0.1:{port}/",
                "-H",
                "Expect:",
                "--data-binary",
                f"@{path}",
            ]
        )
        return dt
    finally:
        srv.shutdown()


def tree_rss_peak(pid: int) -> int:
    """Sum of VmHWM (peak RSS, KiB) over a process and its descendants."""
    total = 0
    pids = [pid]
    try:
        out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
        pids += [int(p) for p in out.split()]
    except OSError:
        pass
    for p in pids:
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
    args = ap.parse_args()
    mb = args.size_mib * (1 << 20) / 1e6
    with tempfile.TemporaryDirectory(prefix="dfms-bench-") as tmp:
        tmpd = Path(tmp)
        src = tmpd / "src.bin"
        make_file(src, args.size_mib)
        t_ssl, _ = timed(["openssl", "dgst", "-sha256", str(src)])
        t_plain = plain_upload(src)
        with ServerProcess(tmpd / "data") as server:
            import httpx

            r = httpx.post(
                f"{server.url}/api/v1/auth/register",
                json={
                    "email": "bench@example.com",
                    "password": "benchpass123",
                    "display_name": "B",
                },
            )
            token = r.json()["tokens"]["access_token"]
            t_up, f = curl_upload(server.url, token, src, "a.bin")
            t_re, f2 = curl_upload(server.url, token, src, "b.bin")
            t_down = curl_download(server.url, token, str(f["id"]), tmpd / "out.bin")
            ok = (tmpd / "out.bin").stat().st_size == src.stat().st_size
            (tmpd / "out.bin").unlink()
            rss = 0
            if args.rss_mib:
                big = tmpd / "big.bin"
                make_file(big, args.rss_mib)
                assert server.proc is not None
                curl_upload(server.url, token, big, "big.bin")
                rss = tree_rss_peak(server.proc.pid)
        print(f"file: {args.size_mib} MiB random bytes")
        print(f"  baseline openssl dgst -sha256      {mb / t_ssl:8.0f} MB/s")
        print(f"  baseline plain HTTP upload (curl)  {mb / t_plain:8.0f} MB/s")
        print(
            f"  dfms upload (new content)          {mb / t_up:8.0f} MB/s   "
            f"chunks={f['chunk_count']} new={f['new_chunks']}"
        )
        print(
            f"  dfms re-upload (all dedup)         {mb / t_re:8.0f} MB/s   "
            f"new={f2['new_chunks']}  speed-up x{t_up / t_re:.2f}"
        )
        print(f"  dfms download (verified)           {mb / t_down:8.0f} MB/s   size ok={ok}")
        if rss:
            print(f"  gateway peak RSS during {args.rss_mib} MiB upload: {rss / (1 << 20):.0f} MiB")


if __name__ == "__main__":
    main()
