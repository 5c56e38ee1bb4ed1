"""The pure parts of rate limiting: settings, client address, route tiers, the limiter itself
(memory storage; a refused and a silent local socket stand in for a dead or hung Redis)."""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
import structlog

from dfms.api.ratelimit import (
    RateLimitState,
    client_ip,
    client_key,
    rate_limit_state,
    route_path,
    route_tier,
)
from dfms.config import RateLimitSettings, load_settings
from dfms.errors import ConfigError, RateLimitUnavailable
from dfms.observability import Metrics
from dfms.services.ratelimit import (
    CheckResult,
    RateLimiter,
    Tier,
    Verdict,
    _redacted,
    async_storage_url,
)

OFF = {
    "global_limit": None,
    "user_limit": None,
    "auth_limit": None,
    "upload_limit": None,
    "download_limit": None,
}


def settings(**kw: Any) -> RateLimitSettings:
    return RateLimitSettings(**{**OFF, **kw})


@pytest.fixture
def make_limiter() -> Iterator[Callable[..., RateLimiter]]:
    made: list[RateLimiter] = []

    def make(metrics: Metrics | None = None, **kw: Any) -> RateLimiter:
        clocks = kw.pop("_clocks", {})
        limiter = RateLimiter(settings(**kw), metrics or Metrics(), **clocks)
        made.append(limiter)
        return limiter

    yield make
    # (closing is exercised by the tests that use Redis URLs; memory storage holds nothing)


def metric(m: Metrics, name: str, labels: dict[str, str] | None = None) -> float:
    value = m.registry.get_sample_value(name, labels or {})
    return float(value or 0.0)


# ---- settings ----


def test_defaults_match_the_documented_tiers() -> None:
    """Rate limiting is on by default with the documented limits, memory storage, fail open."""
    s = RateLimitSettings()
    assert s.enabled and s.fail_open and s.storage_url == "memory://"
    assert s.strategy == "moving-window" and s.trusted_proxies == []
    assert (s.global_limit, s.user_limit, s.auth_limit, s.upload_limit, s.download_limit) == (
        "10000/minute",
        "200/minute",
        "5/minute",
        "20/minute",
        "100/minute",
    )


@pytest.mark.parametrize("off", [None, "", "  ", "off", "None", False])
def test_empty_or_off_turns_a_tier_off(off: object) -> None:
    assert RateLimitSettings(user_limit=off).user_limit is None  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("key", "value", "fragment"),
    [
        ("auth_limit", "abc", "not a limit"),
        ("auth_limit", "0/minute", ">= 1"),
        ("auth_limit", "1/second;5/minute", "one limit per tier"),
        ("auth_limit", 5, "must be a limit"),
        ("storage_url", "http://x", "storage_url"),
        ("storage_url", "memcached://x", "storage_url"),
        ("trusted_proxies", ["nope"], "not an IP address"),
        ("strategy", "fixed-window", "strategy"),
    ],
)
def test_invalid_settings_name_the_key(key: str, value: object, fragment: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(None, overrides={"ratelimit": {key: value}})
    assert f"ratelimit.{key}" in err.value.message and fragment in err.value.message


def test_trusted_proxies_are_normalised_networks() -> None:
    s = RateLimitSettings(trusted_proxies=["192.0.2.1", " 198.51.100.0/24 ", "2001:db8::/32"])
    assert s.trusted_proxies == ["192.0.2.1/32", "198.51.100.0/24", "2001:db8::/32"]


def test_environment_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    """DFMS_RATELIMIT__... variables reach the section (a bare `off` is read as false)."""
    monkeypatch.setenv("DFMS_RATELIMIT__ENABLED", "false")
    monkeypatch.setenv("DFMS_RATELIMIT__AUTH_LIMIT", "off")
    monkeypatch.setenv("DFMS_RATELIMIT__USER_LIMIT", "50/second")
    monkeypatch.setenv("DFMS_RATELIMIT__STORAGE_URL", "redis://127.0.0.1:6379/2")
    s = load_settings().ratelimit
    assert not s.enabled and s.auth_limit is None and s.user_limit == "50/second"
    assert s.storage_url == "redis://127.0.0.1:6379/2"


def test_storage_urls() -> None:
    assert async_storage_url("memory://") == "async+memory://"
    assert async_storage_url("redis://h:6379/0") == "async+redis://h:6379/0"
    assert async_storage_url("async+redis://h") == "async+redis://h"
    assert _redacted("redis://user:secret@h:6380/1") == "redis://h:6380"
    assert "secret" not in _redacted("rediss://:secret@h")
    assert _redacted("redis+unix:///run/redis.sock") == "redis+unix:///run/redis.sock"


# ---- client address ----

TRUSTED = [ipaddress.ip_network("127.0.0.1/32"), ipaddress.ip_network("198.51.100.0/24")]


@pytest.mark.parametrize(
    ("peer", "xff", "trusted", "expected"),
    [
        # An untrusted peer: its X-Forwarded-For is ignored (it could say anything).
        ("192.0.2.9", ["203.0.113.5"], TRUSTED, "192.0.2.9"),
        ("127.0.0.1", ["203.0.113.5"], [], "127.0.0.1"),
        # A trusted peer: the right-most address that is not a trusted proxy.
        ("127.0.0.1", ["203.0.113.5"], TRUSTED, "203.0.113.5"),
        ("127.0.0.1", ["1.1.1.1, 203.0.113.5, 198.51.100.7"], TRUSTED, "203.0.113.5"),
        ("127.0.0.1", ["1.1.1.1", "203.0.113.5,198.51.100.7"], TRUSTED, "203.0.113.5"),
        # All hops trusted: the farthest one.
        ("127.0.0.1", ["198.51.100.1, 198.51.100.2"], TRUSTED, "198.51.100.1"),
        # No header, an empty or malformed one: the peer.
        ("127.0.0.1", [], TRUSTED, "127.0.0.1"),
        ("127.0.0.1", [""], TRUSTED, "127.0.0.1"),
        ("127.0.0.1", ["203.0.113.5, garbage"], TRUSTED, "127.0.0.1"),
        ("127.0.0.1", ["203.0.113.5:443"], TRUSTED, "127.0.0.1"),
        ("127.0.0.1", ["203.0.113.5,,1.1.1.1"], TRUSTED, "127.0.0.1"),
        # IPv4-mapped IPv6 peers are their IPv4 address (and match IPv4 networks).
        ("::ffff:127.0.0.1", ["2001:db8::5"], TRUSTED, "2001:db8::5"),
        # A peer that is no address at all (test clients) is used as it is.
        ("testclient", ["203.0.113.5"], TRUSTED, "testclient"),
        (None, [], TRUSTED, "unknown"),
    ],
)
def test_client_ip(peer: str | None, xff: list[str], trusted: list[Any], expected: str) -> None:
    assert client_ip(peer, xff, trusted) == expected


def test_client_key_groups_ipv6_by_64() -> None:
    assert client_key("203.0.113.5") == "203.0.113.5"
    assert client_key("2001:db8:1:2:aaaa::1") == client_key("2001:db8:1:2:bbbb::9")
    assert client_key("2001:db8:1:2::1") == "2001:db8:1:2::/64"
    assert client_key("unknown") == "unknown"


# ---- routes ----


@pytest.mark.parametrize(
    ("method", "path", "tier"),
    [
        ("POST", "/api/v1/files/upload", Tier.UPLOAD),
        ("POST", "/api/v1/files/upload/multipart/init", Tier.UPLOAD),
        ("PUT", "/api/v1/files/upload/multipart/u1/part/3", Tier.UPLOAD),
        ("POST", "/api/v1/files/upload/multipart/u1/complete", Tier.UPLOAD),
        ("GET", "/api/v1/files/upload/multipart/u1", None),
        ("DELETE", "/api/v1/files/upload/multipart/u1", None),
        ("GET", "/api/v1/files/f1/download", Tier.DOWNLOAD),
        ("HEAD", "/api/v1/files/f1/download", Tier.DOWNLOAD),
        ("GET", "/api/v1/files/f1/versions/2/download", Tier.DOWNLOAD),
        ("DELETE", "/api/v1/files/f1/download", None),
        ("GET", "/api/v1/files/f1", None),
        ("GET", "/api/v1/files", None),
    ],
)
def test_route_tier(method: str, path: str, tier: Tier | None) -> None:
    assert route_tier(method, path) is tier


def test_route_tier_covers_the_apps_upload_and_download_routes() -> None:
    """Every route of the API spec is classified as intended: the upload routes (simple and
    multipart init/part/complete) and the download routes, and nothing else."""
    from dfms.api.openapi import spec

    upload = {
        ("POST", "/api/v1/files/upload"),
        ("POST", "/api/v1/files/upload/multipart/init"),
        ("PUT", "/api/v1/files/upload/multipart/{upload_id}/part/{number}"),
        ("POST", "/api/v1/files/upload/multipart/{upload_id}/complete"),
    }
    found: dict[Tier, set[tuple[str, str]]] = {Tier.UPLOAD: set(), Tier.DOWNLOAD: set()}
    for path, operations in spec()["paths"].items():
        concrete = path.replace("{", "x").replace("}", "")
        for method in operations:
            tier = route_tier(method.upper(), concrete)
            if tier is not None:
                found[tier].add((method.upper(), path))
    assert found[Tier.UPLOAD] == upload
    assert found[Tier.DOWNLOAD] == {
        (method, path)
        for method in ("GET", "HEAD")
        for path in (
            "/api/v1/files/{file_id}/download",
            "/api/v1/files/{file_id}/versions/{number}/download",
        )
    }


def test_route_path_strips_root_path() -> None:
    assert route_path({"path": "/dfms/api/v1/files", "root_path": "/dfms"}) == "/api/v1/files"
    assert route_path({"path": "/api/v1/files", "root_path": ""}) == "/api/v1/files"


def test_request_limits_tightest() -> None:
    """The headers describe a refused tier, else the one with the fewest requests left."""

    def v(tier: Tier, allowed: bool, remaining: int, reset: int) -> Verdict:
        return Verdict(tier, allowed, 10, remaining, reset, "10 per 1 minute")

    state = RateLimitState()
    assert state.tightest() is None
    state.verdicts += [v(Tier.GLOBAL, True, 9, 60), v(Tier.USER, True, 3, 50)]
    assert state.tightest() == state.verdicts[1]
    state.verdicts.append(v(Tier.UPLOAD, False, 0, 10))
    assert state.tightest() == state.verdicts[2]
    scope: dict[str, Any] = {}
    assert rate_limit_state(scope) is rate_limit_state(scope)


# ---- the limiter ----


async def test_limiter_counts_each_key_separately(make_limiter: Callable[..., RateLimiter]) -> None:
    limiter = make_limiter(user_limit="3/minute")
    verdicts = [(await limiter.check([(Tier.USER, "a")])).verdicts[0] for _ in range(4)]
    assert [v.allowed for v in verdicts] == [True, True, True, False]
    assert [v.remaining for v in verdicts] == [2, 1, 0, 0]
    assert all(v.limit == 3 and 0 < v.reset_in <= 60 for v in verdicts)
    assert 1 <= verdicts[-1].retry_after <= 60
    assert verdicts[0].policy == "3 per 1 minute"
    assert (await limiter.check([(Tier.USER, "b")])).verdicts[0].allowed


async def test_limiter_stops_at_the_first_refusing_tier(
    make_limiter: Callable[..., RateLimiter],
) -> None:
    """A refused request does not use up the budget of the tiers after the refusing one."""
    m = Metrics()
    limiter = make_limiter(m, user_limit="1/minute", upload_limit="5/minute")
    first = await limiter.check([(Tier.USER, "u"), (Tier.UPLOAD, "u")])
    assert [v.tier for v in first.verdicts] == [Tier.USER, Tier.UPLOAD] and first.denied is None
    second = await limiter.check([(Tier.USER, "u"), (Tier.UPLOAD, "u")])
    assert [v.tier for v in second.verdicts] == [Tier.USER]
    assert second.denied is not None and second.denied.tier is Tier.USER
    third = await limiter.check([(Tier.UPLOAD, "u")])
    assert third.verdicts[0].remaining == 3  # only the first request counted
    assert metric(m, "dfms_ratelimit_rejected_total", {"tier": "user"}) == 1


async def test_tiers_that_are_off_are_skipped(make_limiter: Callable[..., RateLimiter]) -> None:
    limiter = make_limiter(user_limit="2/minute")
    assert limiter.active(Tier.USER) and not limiter.active(Tier.GLOBAL)
    for _ in range(5):
        assert await limiter.check([(Tier.GLOBAL, "all")]) == CheckResult([])
    result = await limiter.check([(Tier.GLOBAL, "all"), (Tier.USER, "u")])
    assert [v.tier for v in result.verdicts] == [Tier.USER]


async def test_disabled_limiter_checks_nothing(make_limiter: Callable[..., RateLimiter]) -> None:
    limiter = make_limiter(enabled=False, user_limit="1/minute")
    assert not limiter.active(Tier.USER)
    for _ in range(3):
        assert (await limiter.check([(Tier.USER, "u")])).verdicts == []
    await limiter.aclose()


async def test_sliding_window_strategy(make_limiter: Callable[..., RateLimiter]) -> None:
    limiter = make_limiter(strategy="sliding-window", auth_limit="2/minute")
    allowed = [(await limiter.check([(Tier.AUTH, "ip")])).denied is None for _ in range(3)]
    assert allowed == [True, True, False]


async def test_key_prefix_separates_deployments(make_limiter: Callable[..., RateLimiter]) -> None:
    """Two limiters sharing one store but not a prefix do not share budgets."""
    a = make_limiter(user_limit="1/minute", key_prefix="one")
    b = make_limiter(user_limit="1/minute", key_prefix="two")
    b._strategy = a._strategy  # the same memory store
    assert (await a.check([(Tier.USER, "u")])).denied is None
    assert (await b.check([(Tier.USER, "u")])).denied is None
    assert (await a.check([(Tier.USER, "u")])).denied is not None


DEAD_REDIS = "redis://127.0.0.1:1/0"  # connection refused at once


async def test_storage_failure_fails_open_counts_and_warns_once_a_minute(
    make_limiter: Callable[..., RateLimiter],
) -> None:
    """Redis down, fail_open: requests pass (degraded), every failure is counted, the warning is
    logged at most once per minute."""
    now = [1000.0]
    m = Metrics()
    limiter = make_limiter(
        m,
        storage_url=DEAD_REDIS,
        user_limit="1/minute",
        global_limit="10/minute",
        _clocks={"monotonic": lambda: now[0]},
    )
    with structlog.testing.capture_logs() as logs:
        for _ in range(3):
            result = await limiter.check([(Tier.GLOBAL, "all"), (Tier.USER, "u")])
            assert result.degraded and result.verdicts == [] and result.denied is None
        now[0] += 61
        await limiter.check([(Tier.USER, "u")])
    warnings = [e for e in logs if e["event"] == "ratelimit_storage_error"]
    assert len(warnings) == 2 and warnings[0]["log_level"] == "warning"
    assert (
        warnings[0]["storage"] == "redis://127.0.0.1:1"
        and "ConnectionError" in warnings[0]["error"]
    )
    assert metric(m, "dfms_ratelimit_storage_errors_total") == 4
    await limiter.aclose()
    await limiter.aclose()  # idempotent


async def test_storage_failure_fails_closed(make_limiter: Callable[..., RateLimiter]) -> None:
    m = Metrics()
    limiter = make_limiter(m, storage_url=DEAD_REDIS, fail_open=False, user_limit="1/minute")
    with pytest.raises(RateLimitUnavailable) as err:
        await limiter.check([(Tier.USER, "u")])
    assert err.value.status == 503 and err.value.code == "RATE_LIMIT_UNAVAILABLE"
    assert metric(m, "dfms_ratelimit_storage_errors_total") == 1
    await limiter.aclose()


@pytest.fixture
async def silent_server() -> AsyncIterator[int]:
    """A local TCP server that accepts connections and never answers (a hung Redis)."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # until the client gives up and closes
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield int(server.sockets[0].getsockname()[1])
    finally:
        server.close()
        await server.wait_closed()


async def test_hung_storage_times_out_and_fails_open(
    make_limiter: Callable[..., RateLimiter], silent_server: int
) -> None:
    """A Redis that accepts but never answers costs at most storage_timeout, then fails open."""
    m = Metrics()
    limiter = make_limiter(
        m,
        storage_url=f"redis://127.0.0.1:{silent_server}/0",
        storage_timeout=0.2,
        user_limit="1/minute",
    )
    result = await limiter.check([(Tier.USER, "u")])
    assert result.degraded and metric(m, "dfms_ratelimit_storage_errors_total") == 1
    await limiter.aclose()


async def test_user_limits_count_once_per_request(make_limiter: Callable[..., RateLimiter]) -> None:
    """Resolving the principal twice in one request (nested dependencies) counts it once."""
    from dfms.api.ratelimit import enforce_user_limits

    limiter = make_limiter(user_limit="5/minute", upload_limit="5/minute")
    scope: dict[str, Any] = {"type": "http", "method": "POST", "path": "/api/v1/files/upload"}
    await enforce_user_limits(scope, limiter, "u")
    await enforce_user_limits(scope, limiter, "u")
    verdicts = rate_limit_state(scope).verdicts
    assert [(v.tier, v.remaining) for v in verdicts] == [(Tier.USER, 4), (Tier.UPLOAD, 4)]


async def test_middleware_passes_other_scopes_through() -> None:
    """Lifespan and websocket scopes go straight to the app."""
    from dfms.api.ratelimit import RateLimitMiddleware

    seen: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope["type"])

    async def nothing() -> Any:
        return {}

    async def ignore(message: Any) -> None:
        return None

    await RateLimitMiddleware(app)({"type": "lifespan"}, nothing, ignore)
    assert seen == ["lifespan"]
