"""Rate limiting at the HTTP edge (the limiter itself: :mod:`dfms.services.ratelimit`).

Two places check limits, both before a request body is read:

- :class:`RateLimitMiddleware` (pure ASGI, nothing buffered) checks the ``global`` tier for every
  request except health, readiness, metrics and the API docs, and the ``auth`` tier (per client
  IP) on ``POST /auth/login``, ``/auth/register`` and ``/auth/refresh``. It answers 429/503 itself
  and adds the ``X-RateLimit-*`` headers to every limited response.
- :func:`enforce_user_limits`, called where the principal is resolved (``get_principal``), checks
  the ``user`` tier and, on upload or download routes, the ``upload`` or ``download`` tier, all
  keyed by the user id. It raises; the error handlers answer.

Both record their verdicts in ``scope["state"]["ratelimit"]`` (a :class:`RateLimitState`); the
middleware puts the tightest tier (a refused one, else the one with the fewest requests left)
into the headers: ``X-RateLimit-Limit`` (requests per window), ``X-RateLimit-Remaining`` and
``X-RateLimit-Reset`` (seconds, rounded up, until the oldest request counted in that window
expires, i.e. until at least one more request is allowed). A 429 also has ``Retry-After``
(seconds, >= 1).

The client address is the socket peer; only when the peer is a trusted proxy
(``ratelimit.trusted_proxies``) is ``X-Forwarded-For`` read, right to left, skipping trusted
proxies; a malformed header is ignored. IPv6 clients are counted per /64 network.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from dfms.api.errors import error_response, scope_request_id
from dfms.api.paths import API_PREFIX, MULTIPART_PART, UPLOAD_PATH, route_path
from dfms.errors import DFMSError, RateLimitExceeded
from dfms.services.ratelimit import IPNetwork, RateLimiter, Tier, Verdict

API = API_PREFIX
STATE_KEY = "ratelimit"

#: Never limited: probes, metrics and the API docs.
EXEMPT_PATHS = frozenset(
    {
        "/health",
        "/ready",
        "/metrics",
        "/openapi.json",
        "/docs",
        "/docs/oauth2-redirect",
        f"{API}/health",
        f"{API}/ready",
    }
)
#: POST routes limited per client IP (the ``auth`` tier).
AUTH_PATHS = frozenset({f"{API}/auth/login", f"{API}/auth/register", f"{API}/auth/refresh"})

_UPLOAD_POST = re.compile(
    rf"^{UPLOAD_PATH}(?:/multipart/init|/multipart/[^/]+/complete)?$",
)
_DOWNLOAD = re.compile(rf"^{API}/.+/download$")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass
class RateLimitState:
    """What the rate-limit checks of one request found (kept in ``scope["state"]``)."""

    verdicts: list[Verdict] = field(default_factory=list)
    #: The store failed (fail open): no further tier is checked for this request.
    degraded: bool = False
    user_checked: bool = False

    def tightest(self) -> Verdict | None:
        """The refused tier, else the one with the fewest requests left (then the latest reset)."""
        if not self.verdicts:
            return None
        return min(self.verdicts, key=lambda v: (v.allowed, v.remaining, -v.reset_in))


def rate_limit_state(scope: Scope) -> RateLimitState:
    state = scope.setdefault("state", {})
    limits = state.get(STATE_KEY)
    if not isinstance(limits, RateLimitState):
        limits = state[STATE_KEY] = RateLimitState()
    return limits


def route_tier(method: str, path: str) -> Tier | None:
    """The per-user tier of a route besides ``user``: ``upload``, ``download`` or none."""
    if (method == "POST" and _UPLOAD_POST.match(path)) or (
        method == "PUT" and MULTIPART_PART.match(path)
    ):
        return Tier.UPLOAD
    if method in ("GET", "HEAD") and _DOWNLOAD.match(path):
        return Tier.DOWNLOAD
    return None


def _parse_ip(text: str) -> IPAddress | None:
    try:
        ip = ipaddress.ip_address(text.strip())
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def _trusted(ip: IPAddress, proxies: Sequence[IPNetwork]) -> bool:
    return any(ip.version == net.version and ip in net for net in proxies)


def client_ip(
    peer: str | None, forwarded_for: Iterable[str], trusted_proxies: Sequence[IPNetwork]
) -> str:
    """The client's address: the peer, or, when the peer is a trusted proxy, the right-most
    address of ``X-Forwarded-For`` that is not a trusted proxy. A malformed header (an entry that
    is not an IP address) is ignored: the peer is used."""
    peer_ip = _parse_ip(peer) if peer else None
    if peer_ip is None:
        return peer or "unknown"
    if not trusted_proxies or not _trusted(peer_ip, trusted_proxies):
        return str(peer_ip)
    chain: list[IPAddress] = []
    for value in forwarded_for:
        for hop in value.split(","):
            ip = _parse_ip(hop)
            if ip is None:
                return str(peer_ip)
            chain.append(ip)
    for ip in reversed(chain):
        if not _trusted(ip, trusted_proxies):
            return str(ip)
    # Every hop is a trusted proxy: the farthest one is the best we know.
    return str(chain[0]) if chain else str(peer_ip)


def client_key(ip: str) -> str:
    """The ``auth`` tier's key of an address: IPv4 as is, IPv6 by its /64 network (one host
    usually has a whole /64 to pick addresses from)."""
    parsed = _parse_ip(ip)
    if isinstance(parsed, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network((parsed, 64), strict=False))
    return ip


def scope_client_ip(scope: Scope, trusted_proxies: Sequence[IPNetwork]) -> str:
    client = scope.get("client")
    peer = str(client[0]) if client else None
    forwarded = [
        v.decode("latin-1") for k, v in scope.get("headers", ()) if k == b"x-forwarded-for"
    ]
    return client_ip(peer, forwarded, trusted_proxies)


async def _enforce(
    limiter: RateLimiter, state: RateLimitState, hits: Sequence[tuple[Tier, str]]
) -> None:
    if state.degraded:
        return
    result = await limiter.check(hits)
    state.verdicts.extend(result.verdicts)
    state.degraded = result.degraded
    denied = result.denied
    if denied is not None:
        raise RateLimitExceeded(
            f"too many requests: {denied.tier.value} limit of {denied.policy} reached; "
            f"retry in {denied.retry_after} s",
            retry_after=denied.retry_after,
            tier=denied.tier.value,
        )


async def enforce_user_limits(scope: Scope, limiter: RateLimiter, user_id: str) -> None:
    """The ``user`` tier, plus ``upload``/``download`` on those routes, for an authenticated
    request (once per request). Raises :class:`RateLimitExceeded` or ``RateLimitUnavailable``."""
    if not limiter.enabled:
        return
    state = rate_limit_state(scope)
    if state.user_checked:
        return
    state.user_checked = True
    hits = [(Tier.USER, user_id)]
    tier = route_tier(scope.get("method", ""), route_path(scope))
    if tier is not None:
        hits.append((tier, user_id))
    await _enforce(limiter, state, hits)


#: Response headers of limited requests (CORS exposes them to browsers).
RATE_LIMIT_HEADERS = (
    "X-RateLimit-Limit",
    "X-RateLimit-Remaining",
    "X-RateLimit-Reset",
    "Retry-After",
)


def rate_limit_headers(verdict: Verdict) -> dict[str, str]:
    return {
        "X-RateLimit-Limit": str(verdict.limit),
        "X-RateLimit-Remaining": str(verdict.remaining),
        "X-RateLimit-Reset": str(verdict.reset_in),
    }


def _limiter(scope: Scope) -> RateLimiter | None:
    app = scope.get("app")
    ctx = getattr(getattr(app, "state", None), "ctx", None)
    limiter = getattr(ctx, "ratelimit", None)
    return limiter if isinstance(limiter, RateLimiter) else None


class RateLimitMiddleware:
    """The ``global`` and ``auth`` tiers, and the ``X-RateLimit-*`` headers (see module doc).
    Install it inside ``RequestContextMiddleware`` so that its 429s carry the request id."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limiter = _limiter(scope)
        path = route_path(scope)
        if limiter is None or not limiter.enabled or path in EXEMPT_PATHS:
            await self.app(scope, receive, send)
            return
        state = rate_limit_state(scope)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                verdict = state.tightest()
                if verdict is not None:
                    headers = MutableHeaders(scope=message)
                    for k, v in rate_limit_headers(verdict).items():
                        headers[k] = v
            await send(message)

        hits = [(Tier.GLOBAL, "all")]
        if scope.get("method") == "POST" and path in AUTH_PATHS:
            ip = scope_client_ip(scope, limiter.trusted_proxies)
            hits.append((Tier.AUTH, client_key(ip)))
        try:
            await _enforce(limiter, state, hits)
        except DFMSError as exc:  # RateLimitExceeded, RateLimitUnavailable
            rid = scope_request_id(scope)
            await error_response(exc, rid)(scope, receive, send_with_headers)
            return
        await self.app(scope, receive, send_with_headers)
