"""Slow and oversized requests against a real ``dfms serve`` (granian): a client that never
finishes its headers is cut off after server.header_timeout; an oversized header block is
refused; a normal request on the same server still works."""

from __future__ import annotations

import socket
from pathlib import Path

import httpx
import pytest

from tests.e2e.server import ServerProcess

pytestmark = pytest.mark.slow


def test_slow_headers_are_cut_off_and_big_headers_refused(tmp_path: Path) -> None:
    with ServerProcess(tmp_path / "data", env={"DFMS_SERVER__HEADER_TIMEOUT": "1"}) as server:
        with socket.create_connection(("127.0.0.1", server.port), timeout=15) as sock:
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: localhost\r\nX-Slow: 1\r\n")
            received = b""
            # recv returns b"" once the server closes; without the header timeout (granian's
            # default is 30 s) the socket's own 15 s timeout raises instead
            while chunk := sock.recv(4096):
                received += chunk
        assert b"200 OK" not in received
        r = httpx.get(f"{server.url}/api/v1/files", headers={"X-Padding": "p" * (100 * 1024)})
        assert r.status_code == 431
        assert r.json()["error"]["code"] == "REQUEST_HEADERS_TOO_LARGE"
        assert httpx.get(f"{server.url}/health").status_code == 200
