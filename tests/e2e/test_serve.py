"""``dfms serve`` as a real process: crash safety, clean shutdown, multi-node replication."""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from dfms.chunking import ChunkParams, iter_file_chunks
from tests.e2e.server import ServerProcess

pytestmark = pytest.mark.slow
API = "/api/v1"


def register(url: str, email: str = "demo@example.com") -> dict[str, str]:
    r = httpx.post(
        f"{url}{API}/auth/register",
        json={"email": email, "password": "securepass123", "display_name": "Demo"},
    )
    assert r.status_code == 201, r.text
    return {"Authorization": f"Bearer {r.json()['tokens']['access_token']}"}


def login(url: str, email: str = "demo@example.com") -> dict[str, str]:
    r = httpx.post(f"{url}{API}/auth/login", json={"email": email, "password": "securepass123"})
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['tokens']['access_token']}"}


def put(url: str, auth: dict[str, str], name: str, data: bytes) -> dict[str, object]:
    r = httpx.post(
        f"{url}{API}/files/upload",
        content=data,
        headers={**auth, "X-File-Name": name, "Content-Type": "application/octet-stream"},
        timeout=60,
    )
    assert r.status_code == 201, r.text
    return dict(r.json()["file"])


def test_sigkill_mid_upload_leaves_no_partial_file(tmp_path: Path) -> None:
    """A server killed (SIGKILL) in the middle of a large upload restarts with no partial file
    listed and every earlier file intact."""
    data_dir = tmp_path / "data"
    early = os.urandom(3 * 1024 * 1024)
    keep = {c.sha256 for c in iter_file_chunks(io.BytesIO(early), ChunkParams())}
    sent = threading.Event()

    def on_disk() -> set[str]:
        nodes = data_dir / "nodes"
        return {p.name for p in nodes.rglob("*") if p.is_file() and len(p.name) == 64}

    # Pins of the upload that dies expire after 1 s (default 1 h), so GC may reclaim its bytes.
    with ServerProcess(data_dir, env={"DFMS_GC__PIN_TTL": "1"}) as server:
        auth = register(server.url)
        early_file = put(server.url, auth, "early.bin", early)

        def body() -> Iterator[bytes]:
            block = os.urandom(1024 * 1024)
            for i in range(2000):  # up to 2 GiB; the kill comes long before
                if i == 40:
                    sent.set()
                yield block

        def client() -> None:
            with contextlib.suppress(httpx.HTTPError):
                httpx.post(
                    f"{server.url}{API}/files/upload",
                    content=body(),
                    headers={
                        **auth,
                        "X-File-Name": "big.bin",
                        "Content-Type": "application/octet-stream",
                    },
                    timeout=120,
                )

        t = threading.Thread(target=client, daemon=True)
        t.start()
        assert sent.wait(60), "upload did not start"
        # Kill once the upload has written chunk bytes of its own (mid-upload, by construction:
        # the client has ~2 GiB left to send), so there are orphans for GC to find below.
        deadline = time.monotonic() + 60
        while not on_disk() - keep and time.monotonic() < deadline:
            time.sleep(0.05)
        server.kill()
        t.join(60)

    with ServerProcess(data_dir) as server:
        auth = login(server.url)
        files = httpx.get(f"{server.url}{API}/files", headers=auth).json()
        assert [f["name"] for f in files["files"]] == ["early.bin"]
        r = httpx.get(f"{server.url}{API}/files/{early_file['id']}/download", headers=auth)
        assert (
            r.status_code == 200
            and hashlib.sha256(r.content).digest() == hashlib.sha256(early).digest()
        )

    # The killed upload's chunk bytes are orphans: `dfms admin gc` (grace 0) reclaims them and
    # leaves exactly the chunks of the committed file.
    import json
    import subprocess
    import sys

    assert on_disk() > keep, "the killed upload left no orphan bytes to reclaim"
    dfms = str(Path(sys.executable).with_name("dfms"))
    reclaimed = 0
    deadline = time.monotonic() + 60
    while on_disk() != keep and time.monotonic() < deadline:
        # Until the dead upload's pins expire, a pass leaves its bytes alone; poll by re-running.
        res = subprocess.run(
            [dfms, "admin", "gc", "--data-dir", str(data_dir), "--grace", "0", "--json"],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert res.returncode == 0, res.stderr
        reclaimed += json.loads(res.stdout)["orphans"]
    assert reclaimed > 0
    assert on_disk() == keep


def test_sigterm_shuts_down_cleanly(tmp_path: Path) -> None:
    """SIGTERM stops the server with exit status 0."""
    server = ServerProcess(tmp_path / "data").start()
    try:
        assert server.stop() == 0
    finally:
        server.__exit__(None, None, None)


def test_three_nodes_replication_two(tmp_path: Path) -> None:
    """--nodes 3 --replication 2 puts every chunk on two node directories; downloads survive the
    loss of one node's files."""
    data_dir = tmp_path / "data"
    data = os.urandom(6 * 1024 * 1024)
    with ServerProcess(data_dir, "--nodes", "3", "--replication", "2") as server:
        auth = register(server.url)
        f = put(server.url, auth, "r.bin", data)
        nodes = sorted((data_dir / "nodes").iterdir())
        assert len(nodes) == 3
        copies: dict[str, int] = {}
        for n in nodes:
            for p in n.rglob("*"):
                if p.is_file() and len(p.name) == 64:
                    copies[p.name] = copies.get(p.name, 0) + 1
        assert len(copies) == f["chunk_count"] and set(copies.values()) == {2}
        # Lose one node's chunk files entirely: every chunk still has a verified replica.
        for p in nodes[0].rglob("*"):
            if p.is_file():
                p.unlink()
        r = httpx.get(f"{server.url}{API}/files/{f['id']}/download", headers=auth, timeout=60)
        assert r.status_code == 200 and r.content == data


def test_invalid_config_fails_at_start(tmp_path: Path) -> None:
    """Invalid configuration stops `dfms serve` at once with a message naming the key."""
    import subprocess
    import sys

    dfms = Path(sys.executable).with_name("dfms")
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("storage:\n  replication: 5\n")
    started = time.monotonic()
    res = subprocess.run(
        [str(dfms), "serve", "--config", str(cfg), "--data-dir", str(tmp_path / "d")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 2
    assert "storage" in res.stderr and "replication" in res.stderr
    assert time.monotonic() - started < 60


def test_corrupt_chunk_mid_file_aborts_download(tmp_path: Path) -> None:
    """RF 1: a chunk in the middle of a file that no longer verifies aborts the response: the
    client gets a short body (a protocol error), every byte it got is correct, and no byte of the
    corrupt chunk is ever sent."""
    data_dir = tmp_path / "data"
    data = os.urandom(12 * 1024 * 1024)
    with ServerProcess(data_dir) as server:
        auth = register(server.url)
        f = put(server.url, auth, "c.bin", data)
        assert int(str(f["chunk_count"])) >= 3
        # Find the chunk holding the last byte and flip one of its bytes on disk.
        import io

        from dfms.chunking import ChunkParams, iter_file_chunks

        last = list(iter_file_chunks(io.BytesIO(data), ChunkParams()))[-1]
        path = next(p for p in (data_dir / "nodes").rglob(last.sha256))
        raw = bytearray(path.read_bytes())
        raw[5] ^= 0xFF
        path.write_bytes(bytes(raw))
        received = bytearray()
        with (
            pytest.raises(httpx.HTTPError),
            httpx.stream(
                "GET", f"{server.url}{API}/files/{f['id']}/download", headers=auth, timeout=60
            ) as r,
        ):
            assert r.status_code == 200
            for piece in r.iter_bytes():
                received += piece
        assert len(received) <= last.offset
        assert data.startswith(bytes(received))


def test_client_disconnect_mid_upload_leaves_nothing(tmp_path: Path) -> None:
    """A client that hangs up half-way through a body leaves no file and the server carries on."""
    import socket

    with ServerProcess(tmp_path / "data") as server:
        auth = register(server.url)
        sock = socket.create_connection(("127.0.0.1", server.port))
        head = (
            "POST /api/v1/files/upload HTTP/1.1\r\nHost: x\r\n"
            f"Authorization: {auth['Authorization']}\r\n"
            "Content-Type: application/octet-stream\r\nX-File-Name: gone.bin\r\n"
            "Content-Length: 50000000\r\n\r\n"
        )
        sock.sendall(head.encode())
        for _ in range(8):
            sock.sendall(os.urandom(1024 * 1024))
        sock.close()
        # The server notices and stays healthy; nothing becomes visible.
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            files = httpx.get(f"{server.url}{API}/files", headers=auth).json()
            assert files["total"] == 0
            if httpx.get(f"{server.url}/health").status_code == 200:
                break
        ok = put(server.url, auth, "after.bin", b"still works")
        assert ok["size"] == 11
        assert httpx.get(f"{server.url}{API}/files", headers=auth).json()["total"] == 1
