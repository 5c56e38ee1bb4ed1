"""Account lifecycle and roles at the API, on SQLite and PostgreSQL: refresh issues tokens with
the account's current role (defect 7 of the reference demoted admins), disabled accounts can
neither log in nor refresh and their access tokens stop working, role changes take effect at the
next refresh (demotions also within the account-state cache TTL)."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import select, update

from dfms.context import AppContext
from dfms.metadata.models import RefreshToken, User
from dfms.services.users import AccountStateCache
from tests.unit.auth._auth_helpers import FakeClock, unb64json

API = "/api/v1"
PASSWORD = "securepass123"


async def make_user(ctx: AppContext, email: str, role: str = "user") -> uuid.UUID:
    return (await ctx.users.create_user(email, PASSWORD, role=role)).id


async def login(client: httpx.AsyncClient, email: str, password: str = PASSWORD) -> dict[str, Any]:
    r = await client.post(f"{API}/auth/login", json={"email": email, "password": password})
    assert r.status_code == 200, r.text
    tokens: dict[str, Any] = r.json()["tokens"]
    return tokens


async def refresh(client: httpx.AsyncClient, refresh_token: str) -> httpx.Response:
    return await client.post(f"{API}/auth/refresh", json={"refresh_token": refresh_token})


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def role_claim(token: str) -> str:
    return str(unb64json(token.split(".")[1])["role"])


def without_request_id(body: dict[str, Any]) -> dict[str, Any]:
    return {"error": {k: v for k, v in body["error"].items() if k != "request_id"}}


async def test_refresh_keeps_the_admin_role(client: httpx.AsyncClient, ctx: AppContext) -> None:
    """Defect 7: an admin's refreshed tokens still say admin, and admin routes keep working
    through several rotations."""
    await make_user(ctx, "root@example.com", role="admin")
    tokens = await login(client, "root@example.com")
    assert role_claim(tokens["access_token"]) == "admin"
    for _ in range(3):
        r = await refresh(client, tokens["refresh_token"])
        assert r.status_code == 200, r.text
        tokens = r.json()["tokens"]
        assert role_claim(tokens["access_token"]) == "admin"
        assert role_claim(tokens["refresh_token"]) == "admin"
        r = await client.get(f"{API}/admin/cluster", headers=bearer(tokens["access_token"]))
        assert r.status_code == 200, r.text


async def test_promotion_takes_effect_at_the_next_refresh(
    client: httpx.AsyncClient, ctx: AppContext
) -> None:
    """A user made admin keeps acting as a user with the tokens it holds; the tokens of its
    next refresh carry the role from the database (not from the refresh token)."""
    await make_user(ctx, "root@example.com", role="admin")
    uid = await make_user(ctx, "bob@example.com")
    admin = await login(client, "root@example.com")
    bob = await login(client, "bob@example.com")
    r = await client.patch(
        f"{API}/admin/users/{uid}", json={"role": "admin"}, headers=bearer(admin["access_token"])
    )
    assert r.status_code == 200 and r.json()["user"]["role"] == "admin"

    r = await client.get(f"{API}/admin/users", headers=bearer(bob["access_token"]))
    assert r.status_code == 403 and r.json()["error"]["code"] == "AUTH_FORBIDDEN"
    r = await refresh(client, bob["refresh_token"])
    assert r.status_code == 200
    bob = r.json()["tokens"]
    assert role_claim(bob["access_token"]) == "admin"
    r = await client.get(f"{API}/admin/users", headers=bearer(bob["access_token"]))
    assert r.status_code == 200


async def test_demotion_takes_effect_at_once_and_at_refresh(
    client: httpx.AsyncClient, ctx: AppContext
) -> None:
    """A demoted admin's admin-claim token stops opening admin routes (least privilege: the
    token's role counts only while the account has it) but still works for its own files; its
    next refresh issues user tokens."""
    await make_user(ctx, "root@example.com", role="admin")
    uid = await make_user(ctx, "second@example.com", role="admin")
    root = await login(client, "root@example.com")
    second = await login(client, "second@example.com")
    assert (
        await client.get(f"{API}/admin/users", headers=bearer(second["access_token"]))
    ).status_code == 200
    r = await client.patch(
        f"{API}/admin/users/{uid}", json={"role": "user"}, headers=bearer(root["access_token"])
    )
    assert r.status_code == 200, r.text
    r = await client.get(f"{API}/admin/users", headers=bearer(second["access_token"]))
    assert r.status_code == 403
    r = await client.get(f"{API}/storage/usage", headers=bearer(second["access_token"]))
    assert r.status_code == 200
    r = await refresh(client, second["refresh_token"])
    assert r.status_code == 200 and role_claim(r.json()["tokens"]["access_token"]) == "user"


async def test_disabled_account_loses_access(client: httpx.AsyncClient, ctx: AppContext) -> None:
    """Disabled: login answers exactly like a wrong password, refresh fails (the whole family
    is revoked), the access token stops working (at once on the gateway that disabled it).
    Enabled again: old sessions stay revoked, a new login works."""
    await make_user(ctx, "root@example.com", role="admin")
    uid = await make_user(ctx, "eve@example.com")
    admin = bearer((await login(client, "root@example.com"))["access_token"])
    eve = await login(client, "eve@example.com")
    rotated = (await refresh(client, eve["refresh_token"])).json()["tokens"]
    assert (
        await client.get(f"{API}/storage/usage", headers=bearer(rotated["access_token"]))
    ).status_code == 200

    r = await client.patch(f"{API}/admin/users/{uid}", json={"is_active": False}, headers=admin)
    assert r.status_code == 200 and r.json()["user"]["is_active"] is False

    right = await client.post(
        f"{API}/auth/login", json={"email": "eve@example.com", "password": PASSWORD}
    )
    wrong = await client.post(
        f"{API}/auth/login", json={"email": "eve@example.com", "password": "wrong-password"}
    )
    assert right.status_code == wrong.status_code == 401
    assert without_request_id(right.json()) == without_request_id(wrong.json())
    assert right.json()["error"]["code"] == "AUTH_INVALID_CREDENTIALS"

    for token in (eve["access_token"], rotated["access_token"]):
        r = await client.get(f"{API}/storage/usage", headers=bearer(token))
        assert r.status_code == 401 and r.json()["error"]["code"] == "AUTH_TOKEN_INVALID"
    r = await refresh(client, rotated["refresh_token"])
    assert r.status_code == 401 and r.json()["error"]["code"] == "AUTH_TOKEN_INVALID"
    async with ctx.db.read() as s:
        rows = (await s.execute(select(RefreshToken).where(RefreshToken.user_id == uid))).all()
    assert len(rows) == 2 and all(t.revoked_at is not None for (t,) in rows)

    r = await client.patch(f"{API}/admin/users/{uid}", json={"is_active": True}, headers=admin)
    assert r.status_code == 200 and r.json()["user"]["is_active"] is True
    assert (await refresh(client, rotated["refresh_token"])).status_code == 401
    fresh = await login(client, "eve@example.com")
    r = await client.get(f"{API}/storage/usage", headers=bearer(fresh["access_token"]))
    assert r.status_code == 200


async def test_change_made_elsewhere_is_seen_within_the_cache_ttl(
    client: httpx.AsyncClient, ctx: AppContext
) -> None:
    """An account disabled by another process (the CLI, another gateway) loses access once the
    cached state is older than auth.active_cache_ttl (30 s by default, at most access_ttl);
    refresh and login check the database at once."""
    clock = FakeClock()
    ctx.users.accounts.clock = clock
    assert ctx.users.accounts.ttl == 30
    uid = await make_user(ctx, "eve@example.com")
    eve = await login(client, "eve@example.com")
    assert (
        await client.get(f"{API}/storage/usage", headers=bearer(eve["access_token"]))
    ).status_code == 200
    async with ctx.db.write() as s:  # as another process would: this gateway's cache is stale
        await s.execute(update(User).where(User.id == uid).values(is_active=False))

    assert (await refresh(client, eve["refresh_token"])).status_code == 401
    async with ctx.db.read() as s:  # the refresh attempt revoked the family
        rows = (await s.execute(select(RefreshToken).where(RefreshToken.user_id == uid))).all()
    assert rows and all(t.revoked_at is not None for (t,) in rows)
    clock.advance(29)
    r = await client.get(f"{API}/storage/usage", headers=bearer(eve["access_token"]))
    assert r.status_code == 200  # still cached
    clock.advance(1)
    r = await client.get(f"{API}/storage/usage", headers=bearer(eve["access_token"]))
    assert r.status_code == 401 and r.json()["error"]["code"] == "AUTH_TOKEN_INVALID"


async def test_cache_ttl_zero_checks_every_request(
    make_settings: Any, db_url: str, tmp_path: Any
) -> None:
    """auth.active_cache_ttl 0 reads the account on every request; the TTL is capped at the
    access-token lifetime."""
    from dfms.api.app import create_app

    settings = make_settings(database={"url": db_url}, auth={"active_cache_ttl": 0})
    ctx = await AppContext.open(settings)
    try:
        assert ctx.users.accounts.ttl == 0
        uid = await make_user(ctx, "eve@example.com")
        app = create_app(ctx=ctx)
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://test"
        ) as client:
            eve = await login(client, "eve@example.com")
            r = await client.get(f"{API}/storage/usage", headers=bearer(eve["access_token"]))
            assert r.status_code == 200
            async with ctx.db.write() as s:
                await s.execute(update(User).where(User.id == uid).values(is_active=False))
            r = await client.get(f"{API}/storage/usage", headers=bearer(eve["access_token"]))
            assert r.status_code == 401
    finally:
        await ctx.aclose()
    capped = make_settings(
        database={"url": db_url}, auth={"active_cache_ttl": 600, "access_ttl": 60}
    )
    ctx = await AppContext.open(capped)
    try:
        assert ctx.users.accounts.ttl == 60
    finally:
        await ctx.aclose()


async def test_account_cache_is_bounded_and_forgets(
    ctx: AppContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The cache keeps at most max_entries users, `forget` drops one at once, and a read that
    raced with a `forget` is not cached."""
    a = await make_user(ctx, "a@example.com")
    b = await make_user(ctx, "b@example.com")
    clock = FakeClock()
    cache = AccountStateCache(ctx.db, 30, clock=clock, max_entries=1)
    state = await cache.get(a)
    assert state is not None and state.is_active and state.role == "user"
    assert await cache.get(b) is not None
    assert list(cache._entries) == [b]
    assert await cache.get(uuid.uuid4()) is None
    assert b not in cache._entries
    await cache.get(b)

    async with ctx.db.write() as s:
        await s.execute(update(User).where(User.id == b).values(role="admin"))
    cached = await cache.get(b)
    assert cached is not None and cached.role == "user"
    cache.forget(b)
    fresh = await cache.get(b)
    assert fresh is not None and fresh.role == "admin"

    # A forget() while a read is in flight: that read's (possibly stale) answer is not kept.
    cache.forget(b)
    original = cache.db.read

    def racing_read() -> Any:
        cache.forget(a)
        return original()

    monkeypatch.setattr(ctx.db, "read", racing_read)
    await cache.get(b)
    assert b not in cache._entries
