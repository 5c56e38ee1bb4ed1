"""Property-based fuzzing of the whole HTTP API from its own OpenAPI spec (schemathesis): no
request the spec allows, and none of the invalid variants it derives, may produce a 5xx. Runs
against real `dfms serve` processes on SQLite and on PostgreSQL (PostgreSQL refuses some text
SQLite stores: NUL characters were a 500 there until this test's first run), with a user's and
an admin's token, so the admin routes are exercised too.

Each operation gets ``FUZZ_EXAMPLES`` generated cases per database (20 unless set; the nightly
depth is an environment variable away: ``FUZZ_EXAMPLES=500 make test``)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from tests.conftest import fresh_pg_database
from tests.e2e.server import ServerProcess

pytestmark = pytest.mark.slow
API = "/api/v1"
DFMS = str(Path(sys.executable).with_name("dfms"))
FUZZ_EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "20"))


class Target:
    def __init__(self, server: ServerProcess, headers: dict[str, str]) -> None:
        self.server = server
        self.headers = headers


def _token(url: str, email: str, password: str, *, register: bool) -> str:
    if register:
        r = httpx.post(
            f"{url}{API}/auth/register",
            json={"email": email, "password": password, "display_name": "Fuzz"},
        )
    else:
        r = httpx.post(f"{url}{API}/auth/login", json={"email": email, "password": password})
    assert r.status_code in (200, 201), r.text
    return str(r.json()["tokens"]["access_token"])


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def target(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Target]:
    data = tmp_path_factory.mktemp(f"fuzz-{request.param}") / "data"
    env = {"DFMS_RATELIMIT__ENABLED": "false"}
    with fresh_pg_database("dfms_fuzz") if request.param == "postgres" else _no_db() as url:
        if url:
            env["DFMS_DATABASE__URL"] = url
        with ServerProcess(data, env=env) as server:
            made = subprocess.run(
                [DFMS, "user", "create", "admin@example.com", "--admin", "--data-dir", str(data)],
                input="fuzz-admin-pass\n",
                capture_output=True,
                text=True,
                timeout=120,
                env={**server.env},
            )
            assert made.returncode == 0, made.stderr
            admin = _token(server.url, "admin@example.com", "fuzz-admin-pass", register=False)
            # the admin's token also owns files and folders, so stateful ids exist to hit
            _token(server.url, "user@example.com", "fuzz-user-pass", register=True)
            yield Target(server, {"Authorization": f"Bearer {admin}"})
        assert "unhandled_error" not in server.log.read_text(), server.log.read_text()[-3000:]


class _no_db:
    def __enter__(self) -> str:
        return ""

    def __exit__(self, *exc: object) -> None:
        return None


# The committed spec: tests/integration/test_openapi.py proves it is exactly what the app serves.
schema = schemathesis.openapi.from_path(
    Path(__file__).resolve().parents[2] / "docs" / "openapi.json"
)


@schema.parametrize()
@settings(
    max_examples=FUZZ_EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
def test_no_input_makes_a_server_error(case: schemathesis.Case, target: Target) -> None:
    """5xx on any generated request fails, with the request to reproduce it."""
    case.call_and_validate(
        base_url=target.server.url, headers=target.headers, checks=[not_a_server_error], timeout=60
    )
