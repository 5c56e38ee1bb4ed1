"""Rate limiting: tiers of limits counted in a shared store, with the ``limits`` library's
moving-window or sliding-window strategies (no limiter algorithm of our own).

This module knows tiers, keys and verdicts only; which HTTP request belongs to which tier, the
client's address and the response headers live in :mod:`dfms.api.ratelimit`.

A check hits each applicable tier in order and stops at the first one that refuses (so a request
refused by its first tier does not use up the budgets of the others). When the store fails
(Redis unreachable, slow beyond ``storage_timeout``), ``fail_open`` decides: let the request through
(counted in ``dfms_ratelimit_storage_errors_total``, a warning at most once a minute), or refuse it
with :class:`~dfms.errors.RateLimitUnavailable`.
"""

from __future__ import annotations

import ipaddress
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import urlsplit

import structlog
from limits import RateLimitItem, parse
from limits.aio.strategies import (
    MovingWindowRateLimiter,
    SlidingWindowCounterRateLimiter,
)
from limits.errors import StorageError
from limits.storage import storage_from_string

from dfms.config import RateLimitSettings
from dfms.errors import RateLimitUnavailable
from dfms.observability import Metrics

if TYPE_CHECKING:
    from limits.aio.storage import Storage
    from redis.asyncio import ConnectionPool

log = structlog.get_logger("dfms.ratelimit")

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

#: Seconds between two warnings about a failing store (every failure is counted in the metric).
WARN_INTERVAL = 60.0


class Tier(StrEnum):
    """A rate-limit tier: what is counted together."""

    GLOBAL = "global"  # every API request of the deployment
    USER = "user"  # per authenticated user, all routes
    AUTH = "auth"  # per client IP on login/register/refresh
    UPLOAD = "upload"  # per user on upload routes
    DOWNLOAD = "download"  # per user on download routes


@dataclass(frozen=True, slots=True)
class Verdict:
    """The state of one tier after a hit: allowed or not, and its window."""

    tier: Tier
    allowed: bool
    #: Requests allowed per window.
    limit: int
    #: Requests left in the window after this one (0 when refused).
    remaining: int
    #: Seconds (rounded up, >= 0) until the oldest request counted in the window expires, i.e.
    #: until at least one more request is allowed.
    reset_in: int
    #: The limit as text, e.g. "200 per 1 minute".
    policy: str

    @property
    def retry_after(self) -> int:
        """Seconds a refused client should wait (>= 1)."""
        return max(1, self.reset_in)


@dataclass(frozen=True, slots=True)
class CheckResult:
    verdicts: list[Verdict]
    #: The store failed and ``fail_open`` let the request through; later tiers were not checked.
    degraded: bool = False

    @property
    def denied(self) -> Verdict | None:
        return next((v for v in self.verdicts if not v.allowed), None)


def async_storage_url(url: str) -> str:
    """``memory://`` / ``redis://...`` as the ``limits`` async scheme (``async+redis://...``)."""
    return url if url.lower().startswith("async+") else f"async+{url}"


def _scheme(url: str) -> str:
    return url.split("://", 1)[0].lower().removeprefix("async+")


def _redacted(url: str) -> str:
    """The store's URL without credentials, for logs."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{_scheme(url)}://{host}{port}{parts.path if _scheme(url) == 'redis+unix' else ''}"


def _build_storage(settings: RateLimitSettings) -> tuple[Storage, ConnectionPool | None]:
    """The ``limits`` async storage; for Redis also the connection pool we own (and close).

    Redis goes through redis-py's asyncio client with connect and command timeouts of
    ``storage_timeout``, so a dead or hung Redis costs a request at most that long.
    """
    scheme = _scheme(settings.storage_url)
    if scheme == "memory":
        return cast("Storage", storage_from_string("async+memory://", wrap_exceptions=True)), None
    from redis.asyncio import ConnectionPool

    url = settings.storage_url
    plain = url[len("async+") :] if url.lower().startswith("async+") else url
    pool_url = "unix" + plain[len("redis+unix") :] if scheme == "redis+unix" else plain
    pool = ConnectionPool.from_url(
        pool_url,
        socket_timeout=settings.storage_timeout,
        socket_connect_timeout=settings.storage_timeout,
    )
    options: dict[str, Any] = {"connection_pool": pool}
    storage = storage_from_string(
        async_storage_url(plain), implementation="redispy", wrap_exceptions=True, **options
    )
    return cast("Storage", storage), pool


class RateLimiter:
    """Checks requests against the configured tiers. Built once per application context."""

    def __init__(
        self,
        settings: RateLimitSettings,
        metrics: Metrics,
        *,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.enabled = settings.enabled
        self.trusted_proxies: tuple[IPNetwork, ...] = tuple(
            ipaddress.ip_network(n, strict=False) for n in settings.trusted_proxies
        )
        limits = {
            Tier.GLOBAL: settings.global_limit,
            Tier.USER: settings.user_limit,
            Tier.AUTH: settings.auth_limit,
            Tier.UPLOAD: settings.upload_limit,
            Tier.DOWNLOAD: settings.download_limit,
        }
        self._items: dict[Tier, RateLimitItem] = {t: parse(s) for t, s in limits.items() if s}
        self._metrics = metrics
        self._clock = clock
        self._monotonic = monotonic
        self._last_warning = -math.inf
        self._prefix = settings.key_prefix
        self._storage: Storage | None = None
        self._pool: ConnectionPool | None = None
        if self.enabled:
            self._storage, self._pool = _build_storage(settings)
        self._strategy: MovingWindowRateLimiter | SlidingWindowCounterRateLimiter | None = None
        if self._storage is not None:
            strategy = (
                MovingWindowRateLimiter
                if settings.strategy == "moving-window"
                else SlidingWindowCounterRateLimiter
            )
            self._strategy = strategy(self._storage)

    def active(self, tier: Tier) -> bool:
        """Whether ``tier`` is enforced (rate limiting on and the tier has a limit)."""
        return self.enabled and tier in self._items

    async def check(self, hits: Sequence[tuple[Tier, str]]) -> CheckResult:
        """Count one request against each ``(tier, key)`` in order (tiers that are off are
        skipped); stop at the first tier that refuses. Raises :class:`RateLimitUnavailable` when
        the store fails and ``fail_open`` is false."""
        verdicts: list[Verdict] = []
        if self._strategy is None:
            return CheckResult(verdicts)
        for tier, key in hits:
            item = self._items.get(tier)
            if item is None:
                continue
            ids = (self._prefix, tier.value, key)
            try:
                allowed = await self._strategy.hit(item, *ids)
                stats = await self._strategy.get_window_stats(item, *ids)
            except (StorageError, OSError, TimeoutError) as exc:
                self._storage_failed(exc)
                return CheckResult(verdicts, degraded=True)
            reset_in = max(0, math.ceil(stats.reset_time - self._clock()))
            verdict = Verdict(
                tier=tier,
                allowed=allowed,
                limit=item.amount,
                remaining=0 if not allowed else max(0, stats.remaining),
                reset_in=reset_in,
                policy=str(item),
            )
            verdicts.append(verdict)
            if not allowed:
                self._metrics.ratelimit_rejected.labels(tier=tier.value).inc()
                break
        return CheckResult(verdicts)

    def _storage_failed(self, exc: Exception) -> None:
        self._metrics.ratelimit_storage_errors.inc()
        now = self._monotonic()
        if now - self._last_warning >= WARN_INTERVAL:
            self._last_warning = now
            cause = exc.storage_error if isinstance(exc, StorageError) else exc
            log.warning(
                "ratelimit_storage_error",
                storage=_redacted(self.settings.storage_url),
                error=f"{type(cause).__name__}: {cause}",
                fail_open=self.settings.fail_open,
                note="further storage errors are counted in dfms_ratelimit_storage_errors_total "
                f"and logged at most every {WARN_INTERVAL:.0f} s",
            )
        if not self.settings.fail_open:
            raise RateLimitUnavailable() from exc

    async def aclose(self) -> None:
        """Close the Redis connections (nothing to do for memory storage)."""
        if self._pool is not None:
            await self._pool.aclose()
            self._pool = None
