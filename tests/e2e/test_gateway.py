"""``dfms gateway`` as real processes: it refuses to start on an outdated schema or without a
signing key (it never migrates or creates keys), and two gateways on one PostgreSQL database and
the same node directories serve one consistent store."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import pytest

from tests.conftest import REDIS_URL, fresh_pg_database, require_service
from tests.e2e.server import ServerProcess, free_port

pytestmark = pytest.mark.slow
API = "/api/v1"
DFMS = str(Path(sys.executable).with_name("dfms"))


def dfms(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [DFMS, *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


def test_gateway_refuses_an_unmigrated_database_then_a_missing_key(tmp_path: Path) -> None:
    """On an empty data dir the gateway exits 2 naming `dfms db upgrade`; after the upgrade it
    exits 2 naming `dfms keys generate`; it created neither schema nor key itself."""
    data = tmp_path / "data"
    port = str(free_port())
    first = dfms("gateway", "--data-dir", str(data), "--port", port)
    assert first.returncode == 2
    assert "dfms db upgrade" in first.stderr
    assert "Traceback" not in first.stderr
    assert dfms("db", "upgrade", "--data-dir", str(data)).returncode == 0
    second = dfms("gateway", "--data-dir", str(data), "--port", port)
    assert second.returncode == 2
    assert "dfms keys generate" in second.stderr
    assert not (data / "keys").exists()


def test_two_gateways_share_one_postgres_database_the_nodes_and_a_redis_budget(
    tmp_path: Path,
) -> None:
    """A file uploaded through gateway A (2 workers) downloads byte-exact through gateway B with
    A's token; a file deleted through B is gone for A; and the three processes count one user's
    requests against one Redis budget (user tier: 12/minute in all)."""
    require_service("Redis", REDIS_URL, 6379)
    data = tmp_path / "data"
    payload = os.urandom(6 * 1024 * 1024 + 123)
    with fresh_pg_database("dfms_gw") as url:
        env = {
            "DFMS_DATABASE__URL": url,
            "DFMS_RATELIMIT__STORAGE_URL": REDIS_URL,
            "DFMS_RATELIMIT__KEY_PREFIX": f"dfms-e2e-{uuid.uuid4().hex[:12]}",
            "DFMS_RATELIMIT__USER_LIMIT": "12/minute",
            # a loaded machine must not turn slow Redis answers into fail-open passes
            "DFMS_RATELIMIT__STORAGE_TIMEOUT": "10",
        }
        assert dfms("db", "upgrade", "--data-dir", str(data), env=env).returncode == 0
        assert dfms("keys", "generate", "--data-dir", str(data), env=env).returncode == 0
        with (
            ServerProcess(data, "--workers", "2", env=env, command="gateway") as a,
            ServerProcess(data, env=env, command="gateway") as b,
        ):
            r = httpx.post(
                f"{a.url}{API}/auth/register",
                json={"email": "gw@example.com", "password": "securepass123", "display_name": "G"},
            )
            assert r.status_code == 201, r.text
            auth = {"Authorization": f"Bearer {r.json()['tokens']['access_token']}"}
            up = httpx.post(
                f"{a.url}{API}/files/upload",
                content=payload,
                headers={**auth, "X-File-Name": "shared.bin"},
                timeout=60,
            )
            assert up.status_code == 201, up.text
            file_id = up.json()["file"]["id"]
            down = httpx.get(f"{b.url}{API}/files/{file_id}/download", headers=auth, timeout=60)
            assert down.status_code == 200
            assert hashlib.sha256(down.content).hexdigest() == hashlib.sha256(payload).hexdigest()
            assert httpx.delete(f"{b.url}{API}/files/{file_id}", headers=auth).status_code == 204
            gone = httpx.get(f"{a.url}{API}/files/{file_id}", headers=auth)
            assert gone.status_code == 404
            # 4 user-tier requests so far (upload, download, delete, get); 8 more are allowed,
            # whichever gateway (and worker) they reach
            codes = [
                httpx.get(f"{(a, b)[i % 2].url}{API}/storage/usage", headers=auth).status_code
                for i in range(12)
            ]
            assert codes == [200] * 8 + [429] * 4
