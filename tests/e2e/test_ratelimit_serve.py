"""Rate limits in a real ``dfms serve`` (granian): on by default, configurable from the
environment, keyed by the socket peer's address."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.e2e.server import ServerProcess

pytestmark = pytest.mark.slow
API = "/api/v1"


def test_serve_enforces_rate_limits(tmp_path: Path) -> None:
    """Default tiers apply (global headers on API responses, none on probes); an environment
    override tightens the auth tier, and its 429 carries the envelope, Retry-After and the
    metric."""
    env = {"DFMS_RATELIMIT__AUTH_LIMIT": "2/minute"}
    with ServerProcess(tmp_path / "data", env=env) as server:
        r = httpx.get(f"{server.url}{API}/files")
        assert r.status_code == 401 and r.headers["x-ratelimit-limit"] == "10000"
        assert "x-ratelimit-limit" not in httpx.get(f"{server.url}/health").headers
        codes = [httpx.post(f"{server.url}{API}/auth/login", json={}).status_code for _ in range(2)]
        assert codes == [400, 400]
        r = httpx.post(f"{server.url}{API}/auth/login", json={})
        assert r.status_code == 429 and r.json()["error"]["code"] == "RATE_LIMIT_EXCEEDED"
        assert int(r.headers["retry-after"]) >= 1 and r.headers["x-ratelimit-limit"] == "2"
        metrics = httpx.get(f"{server.url}/metrics").text
        assert 'dfms_ratelimit_rejected_total{tier="auth"} 1.0' in metrics
