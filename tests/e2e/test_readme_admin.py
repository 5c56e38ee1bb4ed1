"""The README's "Accounts and roles" commands and "Admin API" curl examples work as written
against a real `dfms serve` (the CLI runs beside it on the same data dir)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.e2e.server import ServerProcess

README = Path(__file__).resolve().parents[2] / "README.md"
pytestmark = pytest.mark.slow


def block(heading: str) -> str:
    m = re.search(rf"## {re.escape(heading)}\n.*?```bash\n(.*?)```", README.read_text(), re.S)
    assert m, f"README has no bash block under {heading!r}"
    return m.group(1)


def test_readme_accounts_and_admin_api(tmp_path: Path) -> None:
    """`dfms user ...` beside the server, then every admin curl example, succeed; the final
    PATCH disabled the user."""
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    with ServerProcess(tmp_path / "data") as server:
        r = httpx.post(
            f"{server.url}/api/v1/auth/register",
            json={"email": "bob@example.com", "password": "bobpass1234", "display_name": "bob"},
        )
        assert r.status_code == 201, r.text
        user_id = r.json()["user"]["id"]
        extract = (
            "python3 -c 'import json,sys; "
            """print(json.load(sys.stdin)["tokens"]["access_token"])'"""
        )
        preamble = (
            "ADMIN_TOKEN=$(curl -s -X POST http://localhost:8080/api/v1/auth/login "
            "-H 'Content-Type: application/json' "
            """-d '{"email":"admin@example.com","password":"adminpass123"}' """
            f"| {extract})\n"
            f"USER_ID={user_id}\n"
        )
        script = block("Accounts and roles") + preamble + block("Admin API")
        script = script.replace("http://localhost:8080", server.url)
        script = script.replace("curl ", "curl -sS --fail-with-body ")
        env = {
            **os.environ,
            "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '/usr/bin:/bin')}",
            "DFMS_AUTH__BCRYPT_ROUNDS": "4",
        }
        res = subprocess.run(
            ["bash", "-c", "set -euo pipefail\n" + script],
            cwd=tmp_path,  # the README's commands use the default ./data
            input="adminpass123\n",
            capture_output=True,
            text=True,
            timeout=300,
            env=env,
        )
        assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
        assert "created admin admin@example.com" in res.stdout
        assert '"total_pages"' in res.stdout and '"dedup_ratio"' in res.stdout
        assert '"is_active":false' in res.stdout
        r = httpx.post(
            f"{server.url}/api/v1/auth/login",
            json={"email": "bob@example.com", "password": "bobpass1234"},
        )
        assert r.status_code == 401
