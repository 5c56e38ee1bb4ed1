"""Rate limiting through the HTTP API: tiers, the 429 envelope and headers, trusted proxies,
storage failure (fail open / closed), and Redis shared by two gateways (``DFMS_TEST_REDIS_URL``;
those tests skip without Redis, except under CI=true)."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import structlog

from dfms.api.app import create_app
from dfms.config import Settings
from dfms.context import AppContext
from tests.conftest import REDIS_URL, register, require_service

API = "/api/v1"
# "" turns a tier off ("None" would be dropped by load_settings as an absent override).
OFF = {
    "enabled": True,
    "global_limit": "",
    "user_limit": "",
    "auth_limit": "",
    "upload_limit": "",
    "download_limit": "",
}
PEER = ("127.0.0.1", 50000)


@dataclass
class Gateway:
    ctx: AppContext
    app: Any

    def client(self, peer: tuple[str, int] = PEER) -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=self.app, client=peer)
        return httpx.AsyncClient(transport=transport, base_url="http://test")


@pytest.fixture
def limited(make_settings: Callable[..., Settings]) -> Callable[..., Settings]:
    """Settings with rate limiting on and every tier off unless given."""

    def make(**ratelimit: Any) -> Settings:
        return make_settings(ratelimit={**OFF, **ratelimit})

    return make


@contextlib.asynccontextmanager
async def gateway(settings: Settings) -> AsyncIterator[Gateway]:
    ctx = await AppContext.open(settings)
    try:
        yield Gateway(ctx, create_app(ctx=ctx))
    finally:
        await ctx.aclose()


def limit_headers(r: httpx.Response) -> dict[str, str]:
    return {k: v for k, v in r.headers.items() if k.startswith("x-ratelimit-")}


def metric(ctx: AppContext, name: str, labels: dict[str, str] | None = None) -> float:
    return float(ctx.metrics.registry.get_sample_value(name, labels or {}) or 0.0)


def assert_429(r: httpx.Response, tier: str) -> None:
    """The standard error envelope, Retry-After and the X-RateLimit-* headers."""
    assert r.status_code == 429, r.text
    err = r.json()["error"]
    assert err["code"] == "RATE_LIMIT_EXCEEDED" and tier in err["message"]
    assert err["request_id"] == r.headers["x-request-id"]
    assert 1 <= int(r.headers["retry-after"]) <= 60
    assert r.headers["x-ratelimit-remaining"] == "0"
    assert 0 <= int(r.headers["x-ratelimit-reset"]) <= 60


# ---- tiers (memory storage) ----


async def test_user_limit_answers_429_with_envelope_and_headers(
    limited: Callable[..., Settings],
) -> None:
    """Within the user limit every response says how much is left; past it: 429, the envelope,
    Retry-After; another user is not affected."""
    async with gateway(limited(user_limit="3/minute")) as gw, gw.client() as c:
        alice = await register(c, "alice@example.com")
        bob = await register(c, "bob@example.com")
        seen = []
        for _ in range(3):
            r = await c.get(f"{API}/storage/usage", headers=alice)
            assert r.status_code == 200
            seen.append(limit_headers(r))
        assert [h["x-ratelimit-remaining"] for h in seen] == ["2", "1", "0"]
        assert all(h["x-ratelimit-limit"] == "3" for h in seen)
        assert all(0 <= int(h["x-ratelimit-reset"]) <= 60 for h in seen)
        r = await c.get(f"{API}/files", headers=alice)
        assert_429(r, "user")
        assert r.headers["x-ratelimit-limit"] == "3"
        assert (await c.get(f"{API}/files", headers=bob)).status_code == 200
        assert metric(gw.ctx, "dfms_ratelimit_rejected_total", {"tier": "user"}) == 1


async def test_auth_limit_is_per_client_ip(limited: Callable[..., Settings]) -> None:
    """register/login/refresh share a per-IP budget, refused before the body is looked at;
    another address has its own budget, and authenticated routes are not in this tier."""
    async with (
        gateway(limited(auth_limit="3/minute")) as gw,
        gw.client() as c,
        gw.client(("127.0.0.2", 1)) as other,
    ):
        auth = await register(c, "alice@example.com")
        login = {"email": "alice@example.com", "password": "securepass123"}
        assert (await c.post(f"{API}/auth/login", json=login)).status_code == 200
        assert (await c.post(f"{API}/auth/refresh", json={"refresh_token": "x"})).status_code == 401
        assert_429(await c.post(f"{API}/auth/login", json=login), "auth")
        assert_429(await c.post(f"{API}/auth/register", json={}), "auth")
        assert (await other.post(f"{API}/auth/login", json=login)).status_code == 200
        # logout and the authenticated routes are not in the auth tier
        assert (await c.post(f"{API}/auth/logout", json={"refresh_token": "x"})).status_code != 429
        r = await c.get(f"{API}/files", headers=auth)
        assert r.status_code == 200 and "x-ratelimit-limit" not in r.headers


async def test_global_limit_and_exempt_routes(limited: Callable[..., Settings]) -> None:
    """The global tier counts every API request (401s too); health, readiness, metrics
    and the docs are never limited and carry no rate-limit headers."""
    async with gateway(limited(global_limit="3/minute")) as gw, gw.client() as c:
        for _ in range(3):
            r = await c.get(f"{API}/files")
            assert r.status_code == 401 and r.headers["x-ratelimit-limit"] == "3"
        r = await c.get(f"{API}/files", headers={"X-Request-ID": "req-42"})
        assert_429(r, "global")
        assert r.json()["error"]["request_id"] == "req-42"
        assert (await c.get("/")).status_code == 429  # any path but the exempt ones
        for path in ("/health", "/ready", f"{API}/health", f"{API}/ready", "/metrics"):
            r = await c.get(path)
            assert r.status_code == 200, path
            assert not limit_headers(r), path
        assert (await c.get("/openapi.json")).status_code == 200
        assert (await c.get("/docs")).status_code == 200


async def test_tiers_turned_off_are_not_enforced(limited: Callable[..., Settings]) -> None:
    """With the user tier off, only the global tier counts (and the headers describe it); with
    rate limiting disabled nothing is counted and no header is sent."""
    async with gateway(limited(global_limit="1000/minute")) as gw, gw.client() as c:
        auth = await register(c)
        for _ in range(25):
            r = await c.get(f"{API}/storage/usage", headers=auth)
            assert r.status_code == 200
        assert r.headers["x-ratelimit-limit"] == "1000"
        assert r.headers["x-ratelimit-remaining"] == str(1000 - 26)
    off = limited(enabled=False, user_limit="1/minute", auth_limit="1/minute")
    async with gateway(off) as gw, gw.client() as c:
        for i in range(3):
            auth = await register(c, f"u{i}@example.com")
            r = await c.get(f"{API}/storage/usage", headers=auth)
            assert r.status_code == 200 and not limit_headers(r)


async def test_upload_limit_refuses_before_reading_the_body(
    limited: Callable[..., Settings],
) -> None:
    """The upload tier covers simple and multipart uploads (init, part, complete) and refuses
    before a single byte of the body is read."""
    async with (
        gateway(limited(upload_limit="3/minute", user_limit="100/minute")) as gw,
        gw.client() as c,
    ):
        auth = await register(c)
        up = {**auth, "X-File-Name": "a.bin", "Content-Type": "application/octet-stream"}
        r = await c.post(f"{API}/files/upload", content=b"x" * 1000, headers=up)
        assert r.status_code == 201 and r.headers["x-ratelimit-limit"] == "3"
        r = await c.post(
            f"{API}/files/upload/multipart/init",
            json={"file_name": "m.bin", "file_size": 10},
            headers=auth,
        )
        assert r.status_code == 201
        upload_id = r.json()["upload_id"]
        part = f"{API}/files/upload/multipart/{upload_id}/part/1"
        assert (await c.put(part, content=b"y" * 10, headers=auth)).status_code == 200
        # status and abort are not uploads
        status = await c.get(f"{API}/files/upload/multipart/{upload_id}", headers=auth)
        assert status.status_code == 200 and status.headers["x-ratelimit-limit"] == "100"
        complete = f"{API}/files/upload/multipart/{upload_id}/complete"
        assert_429(await c.post(complete, headers=auth), "upload")

        pulled = 0

        async def body() -> AsyncIterator[bytes]:
            nonlocal pulled
            for _ in range(64):
                pulled += 1
                yield b"z" * 65536

        r = await c.post(f"{API}/files/upload", content=body(), headers=up)
        assert_429(r, "upload")
        assert pulled == 0, "the body was read before the limit was checked"


async def test_download_limit(limited: Callable[..., Settings]) -> None:
    """File and version downloads share the download tier; metadata reads are not in it."""
    async with gateway(limited(download_limit="2/minute")) as gw, gw.client() as c:
        auth = await register(c)
        up = {**auth, "X-File-Name": "a.bin", "Content-Type": "application/octet-stream"}
        fid = (await c.post(f"{API}/files/upload", content=b"abc", headers=up)).json()["file"]["id"]
        r = await c.get(f"{API}/files/{fid}/download", headers=auth)
        assert r.status_code == 200 and r.content == b"abc"
        assert r.headers["x-ratelimit-remaining"] == "1"
        r = await c.get(f"{API}/files/{fid}/versions/1/download", headers=auth)
        assert r.status_code == 200
        assert_429(await c.get(f"{API}/files/{fid}/download", headers=auth), "download")
        r = await c.get(f"{API}/files/{fid}", headers=auth)
        assert r.status_code == 200 and "x-ratelimit-limit" not in r.headers


async def flood(
    clients: list[httpx.AsyncClient], n: int, path: str, headers: dict[str, str]
) -> list[int]:
    """``n`` concurrent requests spread over ``clients``; their status codes."""

    async def one(i: int) -> int:
        return (await clients[i % len(clients)].get(path, headers=headers)).status_code

    return list(await asyncio.gather(*(one(i) for i in range(n))))


@pytest.mark.parametrize("strategy", ["moving-window", "sliding-window"])
async def test_flood_of_five_times_the_limit(
    limited: Callable[..., Settings], strategy: str
) -> None:
    """100 concurrent requests against a limit of 20: at most 20 (+1%) get through."""
    limit = 20
    async with (
        gateway(limited(user_limit=f"{limit}/minute", strategy=strategy)) as gw,
        gw.client() as c,
    ):
        auth = await register(c)
        codes = await flood([c], 5 * limit, f"{API}/storage/usage", auth)
    ok = codes.count(200)
    assert set(codes) <= {200, 429}
    assert ok <= limit * 1.01
    assert ok >= (limit if strategy == "moving-window" else limit // 2)


# ---- client address behind proxies ----


async def test_spoofed_forwarded_for_from_untrusted_peer_is_ignored(
    limited: Callable[..., Settings],
) -> None:
    """A client that is not a trusted proxy cannot pick its address with X-Forwarded-For."""
    settings = limited(auth_limit="1/minute", trusted_proxies=["192.0.2.1"])
    async with gateway(settings) as gw, gw.client() as c:
        r = await c.post(f"{API}/auth/login", json={}, headers={"X-Forwarded-For": "203.0.113.1"})
        assert r.status_code == 400
        r = await c.post(f"{API}/auth/login", json={}, headers={"X-Forwarded-For": "203.0.113.2"})
        assert_429(r, "auth")


async def test_forwarded_for_from_trusted_proxy_is_honoured(
    limited: Callable[..., Settings],
) -> None:
    """Behind a trusted proxy each forwarded client has its own budget (the right-most untrusted
    hop counts); a malformed header falls back to the proxy's own address."""
    settings = limited(auth_limit="1/minute", trusted_proxies=["127.0.0.1", "198.51.100.0/24"])
    async with gateway(settings) as gw, gw.client() as proxy:

        async def login(xff: str | None) -> int:
            headers = {"X-Forwarded-For": xff} if xff is not None else {}
            return (await proxy.post(f"{API}/auth/login", json={}, headers=headers)).status_code

        assert await login("203.0.113.5") == 400
        assert await login("203.0.113.5") == 429
        assert await login("203.0.113.6") == 400  # another client
        # a spoofed left part is ignored: the hop the trusted proxies saw is 203.0.113.6
        assert await login("1.2.3.4, 203.0.113.6, 198.51.100.9") == 429
        assert await login("garbage") == 400  # the proxy's own address, first use
        assert await login(None) == 429


# ---- storage failure ----

DEAD_REDIS = "redis://127.0.0.1:1/0"  # nothing listens there: connection refused at once


async def test_unreachable_redis_fails_open(limited: Callable[..., Settings]) -> None:
    """fail_open (default): requests pass, each failure is counted in the metric (served at
    /metrics), and one warning is logged, not one per request."""
    settings = limited(storage_url=DEAD_REDIS, global_limit="5/minute", user_limit="1/minute")
    async with gateway(settings) as gw, gw.client() as c:
        with structlog.testing.capture_logs() as logs:
            auth = await register(c)
            for _ in range(6):
                r = await c.get(f"{API}/storage/usage", headers=auth)
                assert r.status_code == 200 and not limit_headers(r)
        warnings = [e for e in logs if e["event"] == "ratelimit_storage_error"]
        assert len(warnings) == 1
        # one failure per request: the request's other tiers are skipped once the store failed
        assert metric(gw.ctx, "dfms_ratelimit_storage_errors_total") == 7
        text = (await c.get("/metrics")).text
        assert "dfms_ratelimit_storage_errors_total 7.0" in text


async def test_unreachable_redis_fails_closed(limited: Callable[..., Settings]) -> None:
    """fail_open false: limited requests get 503 RATE_LIMIT_UNAVAILABLE; probes still answer."""
    settings = limited(storage_url=DEAD_REDIS, fail_open=False, global_limit="5/minute")
    async with gateway(settings) as gw, gw.client() as c:
        r = await c.get(f"{API}/files")
        assert r.status_code == 503
        err = r.json()["error"]
        assert (
            err["code"] == "RATE_LIMIT_UNAVAILABLE"
            and err["request_id"] == r.headers["x-request-id"]
        )
        assert (await c.get("/health")).status_code == 200
    # the same from the per-user check (the error handlers answer there)
    settings = limited(storage_url=DEAD_REDIS, fail_open=False, user_limit="5/minute")
    async with gateway(settings) as gw, gw.client() as c:
        auth = await register(c)
        r = await c.get(f"{API}/files", headers=auth)
        assert r.status_code == 503 and r.json()["error"]["code"] == "RATE_LIMIT_UNAVAILABLE"


# ---- Redis: one budget for several gateways ----


@pytest.fixture
def redis_settings(limited: Callable[..., Settings]) -> Callable[..., Settings]:
    """Settings on the test Redis, with a key prefix of their own (runs never collide)."""
    require_service("Redis", REDIS_URL, 6379)
    prefix = f"dfms-test-{uuid.uuid4().hex[:12]}"

    def make(**ratelimit: Any) -> Settings:
        # A generous timeout: these tests check the shared accounting, and a loaded machine
        # must not turn slow connects into fail-open passes (the timeout has tests of its own).
        ratelimit.setdefault("storage_timeout", 10.0)
        return limited(storage_url=REDIS_URL, key_prefix=prefix, **ratelimit)

    return make


@pytest.mark.redis
async def test_two_gateways_share_one_budget_in_redis(
    redis_settings: Callable[..., Settings],
) -> None:
    """Two gateways (separate apps and contexts) on one Redis count one user's and one IP's
    requests together."""
    settings = redis_settings(user_limit="6/minute", auth_limit="3/minute")
    async with (
        gateway(settings) as a,
        gateway(settings) as b,
        a.client() as ca,
        b.client() as cb,
    ):
        auth = await register(ca)
        remaining, codes = [], []
        for i in range(10):
            r = await (ca if i % 2 else cb).get(f"{API}/storage/usage", headers=auth)
            codes.append(r.status_code)
            remaining.append(r.headers["x-ratelimit-remaining"])
        assert codes == [200] * 6 + [429] * 4
        assert remaining == ["5", "4", "3", "2", "1", "0", "0", "0", "0", "0"]
        assert_429(r, "user")
        # auth tier per IP: register above was the first of 3
        assert (await cb.post(f"{API}/auth/login", json={})).status_code == 400
        assert (await ca.post(f"{API}/auth/login", json={})).status_code == 400
        assert_429(await cb.post(f"{API}/auth/login", json={}), "auth")


@pytest.mark.redis
@pytest.mark.parametrize("strategy", ["moving-window", "sliding-window"])
async def test_flood_over_two_gateways_stays_within_the_limit(
    redis_settings: Callable[..., Settings], strategy: str
) -> None:
    """100 concurrent requests spread over two gateways against a shared limit of 20: at most
    20 (+1%) get through."""
    limit = 20
    settings = redis_settings(user_limit=f"{limit}/minute", strategy=strategy)
    async with (
        gateway(settings) as a,
        gateway(settings) as b,
        a.client() as ca,
        b.client() as cb,
    ):
        auth = await register(ca)
        codes = await flood([ca, cb], 5 * limit, f"{API}/storage/usage", auth)
    ok = codes.count(200)
    assert set(codes) <= {200, 429}
    assert limit <= ok <= limit * 1.01


@pytest.mark.redis
async def test_redis_limits_survive_a_gateway_restart(
    redis_settings: Callable[..., Settings],
) -> None:
    """The budget lives in Redis, not in the gateway: a new gateway continues it."""
    settings = redis_settings(global_limit="2/minute")
    async with gateway(settings) as a, a.client() as c:
        assert (await c.get(f"{API}/files")).status_code == 401
        assert (await c.get(f"{API}/files")).status_code == 401
    async with gateway(settings) as b, b.client() as c:
        assert_429(await c.get(f"{API}/files"), "global")
