"""The admin API on SQLite and PostgreSQL: access control (401 / 403 on every admin route),
account search and pagination, account changes with validation and the last-admin rule, and
cluster statistics checked against what was uploaded."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from dfms.api.app import create_app
from dfms.config import Settings
from dfms.context import AppContext
from tests.conftest import register
from tests.integration._routes import app_routes
from tests.integration.test_api_auth_accounts import PASSWORD, bearer, login, make_user

API = "/api/v1"
ADMIN = f"{API}/admin"


async def admin_headers(
    client: httpx.AsyncClient, ctx: AppContext, email: str = "root@example.com"
) -> dict[str, str]:
    await make_user(ctx, email, role="admin")
    return bearer((await login(client, email))["access_token"])


def admin_routes(app: Any) -> list[tuple[str, str]]:
    return [(m, p) for m, p in app_routes(app) if p.startswith(f"{ADMIN}/")]


async def test_admin_routes_need_an_admin(client: httpx.AsyncClient, ctx: AppContext) -> None:
    """Every /admin route (taken from the route table): 401 without a token, 403
    AUTH_FORBIDDEN for a user, answered for an admin."""
    user = await register(client, "plain@example.com")
    admin = await admin_headers(client, ctx)
    routes = admin_routes(create_app(ctx=ctx))
    assert len(routes) >= 4
    some_id = str(uuid.uuid4())
    for method, path in routes:
        url = path.replace("{user_id}", some_id)
        kwargs: dict[str, Any] = {"json": {}} if method == "PATCH" else {}
        r = await client.request(method, url, **kwargs)
        assert r.status_code == 401 and r.json()["error"]["code"] == "AUTH_TOKEN_MISSING", url
        r = await client.request(method, url, headers=user, **kwargs)
        assert r.status_code == 403, (method, url, r.text)
        assert r.json()["error"]["code"] == "AUTH_FORBIDDEN"
        r = await client.request(method, url, headers=admin, **kwargs)
        assert r.status_code in (200, 404), (method, url, r.text)  # 404: the random user id


async def test_list_search_and_paginate_users(client: httpx.AsyncClient, ctx: AppContext) -> None:
    """Users ordered by email; q is a case-insensitive, literal substring of the email;
    pages like the other listings."""
    admin = await admin_headers(client, ctx)
    for name in ("carol", "alice", "bob", "dave_x", "erin"):
        await make_user(ctx, f"{name}@corp.example")
    await make_user(ctx, "davex@corp.example")

    r = await client.get(f"{ADMIN}/users", headers=admin)
    body = r.json()
    assert r.status_code == 200 and body["total"] == 7
    emails = [u["email"] for u in body["users"]]
    assert emails == sorted(emails) and "root@example.com" in emails
    first = body["users"][0]
    assert set(first) == {
        "id",
        "email",
        "display_name",
        "role",
        "is_active",
        "quota",
        "used",
        "created_at",
        "updated_at",
    }
    assert first["quota"] == ctx.settings.upload.default_quota and first["used"] == 0

    r = await client.get(f"{ADMIN}/users", params={"q": "CORP", "page_size": 2}, headers=admin)
    body = r.json()
    assert (body["total"], body["total_pages"], body["page_size"]) == (6, 3, 2)
    assert [u["email"] for u in body["users"]] == ["alice@corp.example", "bob@corp.example"]
    r = await client.get(
        f"{ADMIN}/users", params={"q": "corp", "page": 3, "page_size": 2}, headers=admin
    )
    assert [u["email"] for u in r.json()["users"]] == ["davex@corp.example", "erin@corp.example"]
    r = await client.get(
        f"{ADMIN}/users", params={"q": "corp", "page": 4, "page_size": 2}, headers=admin
    )
    assert r.json()["users"] == [] and r.json()["total"] == 6

    # "_" and "%" are literal, not wildcards.
    r = await client.get(f"{ADMIN}/users", params={"q": "dave_"}, headers=admin)
    assert [u["email"] for u in r.json()["users"]] == ["dave_x@corp.example"]
    r = await client.get(f"{ADMIN}/users", params={"q": "%"}, headers=admin)
    assert r.json()["total"] == 0

    # NUL: PostgreSQL cannot even compare with it (was a 500 there; found by schemathesis)
    bad = ({"page": 0}, {"page_size": 0}, {"page_size": 1001}, {"q": "x" * 321}, {"q": "a\x00b"})
    for params in bad:
        r = await client.get(f"{ADMIN}/users", params=params, headers=admin)
        assert r.status_code == 400 and r.json()["error"]["code"] == "VALIDATION_FAILED", params


async def test_get_user(client: httpx.AsyncClient, ctx: AppContext) -> None:
    """An account by id; an unknown or malformed id is 404 USER_NOT_FOUND."""
    admin = await admin_headers(client, ctx)
    uid = await make_user(ctx, "bob@example.com")
    r = await client.get(f"{ADMIN}/users/{uid}", headers=admin)
    assert r.status_code == 200
    user = r.json()["user"]
    assert (user["id"], user["email"], user["role"], user["is_active"]) == (
        str(uid),
        "bob@example.com",
        "user",
        True,
    )
    for bad in (str(uuid.uuid4()), "not-an-id"):
        r = await client.get(f"{ADMIN}/users/{bad}", headers=admin)
        assert r.status_code == 404 and r.json()["error"]["code"] == "USER_NOT_FOUND"
        r = await client.patch(f"{ADMIN}/users/{bad}", json={"quota": 1}, headers=admin)
        assert r.status_code == 404 and r.json()["error"]["code"] == "USER_NOT_FOUND"


async def test_patch_user_and_validation(client: httpx.AsyncClient, ctx: AppContext) -> None:
    """PATCH changes any of quota, role and is_active; wrong types, values and unknown fields
    are 400 and change nothing; {} changes nothing."""
    admin = await admin_headers(client, ctx)
    uid = await make_user(ctx, "bob@example.com")
    url = f"{ADMIN}/users/{uid}"
    r = await client.patch(url, json={"quota": 1024}, headers=admin)
    assert r.status_code == 200 and r.json()["user"]["quota"] == 1024
    bob = bearer((await login(client, "bob@example.com"))["access_token"])
    usage = (await client.get(f"{API}/storage/usage", headers=bob)).json()
    assert usage["quota"] == 1024
    r = await client.post(
        f"{API}/files/upload",
        content=b"x" * 2048,
        headers={**bob, "X-File-Name": "big.bin", "Content-Type": "application/octet-stream"},
    )
    assert r.status_code == 413 and r.json()["error"]["code"] == "QUOTA_EXCEEDED"

    r = await client.patch(
        url, json={"role": "admin", "is_active": False, "quota": 0}, headers=admin
    )
    assert r.status_code == 200, r.text
    user = r.json()["user"]
    assert (user["role"], user["is_active"], user["quota"]) == ("admin", False, 0)

    before = (await client.get(url, headers=admin)).json()
    for body in (
        {"role": "root"},
        {"role": "ADMIN"},
        {"quota": -1},
        {"quota": 2**62 + 1},
        {"quota": "5"},
        {"quota": 1.5},
        {"is_active": "yes"},
        {"is_active": 1},
        {"email": "x@example.com"},
        {"password": "whatever123"},
        [],
    ):
        r = await client.patch(url, json=body, headers=admin)
        assert r.status_code == 400 and r.json()["error"]["code"] == "VALIDATION_FAILED", body
    r = await client.patch(url, json={}, headers=admin)
    assert r.status_code == 200
    r = await client.patch(url, json={"role": None}, headers=admin)
    assert r.status_code == 200
    assert (await client.get(url, headers=admin)).json() == before


async def test_last_active_admin_is_protected(client: httpx.AsyncClient, ctx: AppContext) -> None:
    """The last active admin can neither demote nor disable itself (409 LAST_ACTIVE_ADMIN);
    with a second admin it can; a disabled admin does not count."""
    root_id = await make_user(ctx, "root@example.com", role="admin")
    root = bearer((await login(client, "root@example.com"))["access_token"])
    me = f"{ADMIN}/users/{root_id}"
    for body in ({"role": "user"}, {"is_active": False}, {"role": "user", "quota": 5}):
        r = await client.patch(me, json=body, headers=root)
        assert r.status_code == 409, body
        assert r.json()["error"]["code"] == "LAST_ACTIVE_ADMIN"
        assert "last active admin" in r.json()["error"]["message"]
    r = await client.get(me, headers=root)
    user = r.json()["user"]
    assert (user["role"], user["is_active"], user["quota"]) == (
        "admin",
        True,
        ctx.settings.upload.default_quota,
    )
    # Harmless changes to the last admin are fine.
    r = await client.patch(me, json={"role": "admin", "is_active": True, "quota": 7}, headers=root)
    assert r.status_code == 200

    # A disabled second admin does not count...
    other = await make_user(ctx, "other@example.com", role="admin")
    r = await client.patch(f"{ADMIN}/users/{other}", json={"is_active": False}, headers=root)
    assert r.status_code == 200
    r = await client.patch(me, json={"role": "user"}, headers=root)
    assert r.status_code == 409
    # ...an active one does: root may step down, and then the other one is the last.
    r = await client.patch(f"{ADMIN}/users/{other}", json={"is_active": True}, headers=root)
    assert r.status_code == 200
    r = await client.patch(me, json={"role": "user"}, headers=root)
    assert r.status_code == 200 and r.json()["user"]["role"] == "user"
    other_h = bearer((await login(client, "other@example.com"))["access_token"])
    r = await client.patch(f"{ADMIN}/users/{other}", json={"is_active": False}, headers=other_h)
    assert r.status_code == 409
    # Root's admin-claim token no longer opens admin routes.
    assert (await client.get(f"{ADMIN}/users", headers=root)).status_code == 403


async def test_two_admins_demoting_each_other_leave_one(
    client: httpx.AsyncClient, ctx: AppContext
) -> None:
    """Two admins demoting each other at the same time: exactly one change wins, the other is
    409, and one active admin remains (the admins are locked while the rule is checked)."""
    ids = {}
    headers = {}
    for name in ("a", "b"):
        ids[name] = await make_user(ctx, f"{name}@example.com", role="admin")
        headers[name] = bearer((await login(client, f"{name}@example.com"))["access_token"])
    for _ in range(3):
        results = await asyncio.gather(
            client.patch(f"{ADMIN}/users/{ids['b']}", json={"role": "user"}, headers=headers["a"]),
            client.patch(f"{ADMIN}/users/{ids['a']}", json={"role": "user"}, headers=headers["b"]),
        )
        statuses = sorted(r.status_code for r in results)
        assert statuses in ([200, 409], [200, 403]), [r.text for r in results]
        cluster = await ctx.admin.cluster()
        assert cluster.active_admins == 1
        # Reset: the survivor promotes the other one again.
        roles = {n: (await ctx.admin.get_user(ids[n])).role for n in ("a", "b")}
        assert sorted(roles.values()) == ["admin", "user"]
        loser = next(n for n, role in roles.items() if role == "user")
        await ctx.admin.update_user(ids[loser], role="admin")
        headers[loser] = bearer((await login(client, f"{loser}@example.com"))["access_token"])


@pytest.fixture
async def cluster_client(
    make_settings: Callable[..., Settings], db_url: str
) -> AsyncIterator[tuple[httpx.AsyncClient, AppContext]]:
    """Three local nodes, replication 2."""
    settings = make_settings(
        database={"url": db_url}, storage={"node_count": 3, "replication": 2, "fsync": "never"}
    )
    ctx = await AppContext.open(settings)
    try:
        app = create_app(ctx=ctx)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
            yield c, ctx
    finally:
        await ctx.aclose()


async def upload(
    client: httpx.AsyncClient, auth: dict[str, str], name: str, data: bytes
) -> dict[str, Any]:
    r = await client.post(
        f"{API}/files/upload",
        content=data,
        headers={**auth, "X-File-Name": name, "Content-Type": "application/octet-stream"},
    )
    assert r.status_code == 201, r.text
    file: dict[str, Any] = r.json()["file"]
    return file


async def test_cluster_statistics(
    cluster_client: tuple[httpx.AsyncClient, AppContext],
) -> None:
    """Nodes with their zone, weight, state and stat() figures; totals counted from what was
    uploaded: logical bytes of all versions, current bytes, distinct bytes once, stored bytes
    times the replicas, and the dedup ratio."""
    client, ctx = cluster_client
    admin = await admin_headers(client, ctx)
    alice = await register(client, "alice@example.com")
    bob = await register(client, "bob@example.com")
    shared = os.urandom(200_000)
    v1 = os.urandom(150_000)
    v2 = v1[:100_000] + os.urandom(60_000)
    await upload(client, alice, "shared.bin", shared)
    await upload(client, bob, "copy.bin", shared)  # deduplicated across users
    await upload(client, alice, "doc.bin", v1)
    await upload(client, alice, "doc.bin", v2)  # a second version
    await upload(client, alice, "gone.bin", os.urandom(10_000))
    gone = (await client.get(f"{API}/files", headers=alice)).json()["files"]
    gone_id = next(f["id"] for f in gone if f["name"] == "gone.bin")
    assert (await client.delete(f"{API}/files/{gone_id}", headers=alice)).status_code == 204

    r = await client.get(f"{ADMIN}/cluster", headers=admin)
    assert r.status_code == 200, r.text
    body = r.json()
    t = body["totals"]
    assert (t["users"], t["active_users"], t["active_admins"]) == (3, 3, 1)
    assert (t["files"], t["versions"]) == (3, 4)
    assert t["logical_bytes"] == 2 * len(shared) + len(v1) + len(v2)
    assert t["current_bytes"] == 2 * len(shared) + len(v2)
    used = [(await ctx.files.usage(u.id)).used for u in (await ctx.admin.list_users()).items]
    assert sum(used) == t["logical_bytes"]

    # Distinct bytes: what the chunk table holds (the deleted file's chunks wait for GC).
    from sqlalchemy import func, select

    from dfms.metadata.models import Chunk, ChunkReplica

    async with ctx.db.read() as s:
        chunks, unique = (await s.execute(select(func.count(), func.sum(Chunk.size)))).one()
        replicas = (await s.execute(select(func.count()).select_from(ChunkReplica))).scalar_one()
    assert (t["chunks"], t["unique_bytes"]) == (chunks, unique)
    assert replicas == 2 * chunks
    assert t["stored_bytes"] == 2 * t["unique_bytes"]
    assert t["unique_bytes"] < t["logical_bytes"]  # dedup saved something
    assert t["dedup_ratio"] == round(t["logical_bytes"] / t["unique_bytes"], 4)
    assert t["dedup_ratio"] > 1.3

    nodes = body["nodes"]
    assert [n["id"] for n in nodes] == ["node-1", "node-2", "node-3"]
    for n in nodes:
        assert n["zone"] == "default" and n["weight"] == 1.0 and n["state"] == "up"
        assert n["reachable"] is True
        assert n["capacity"] >= n["free"] > 0
    assert sum(n["chunk_count"] for n in nodes) == 2 * chunks
    assert sum(n["used"] for n in nodes) == t["stored_bytes"]


async def test_cluster_reports_an_unreachable_node(
    cluster_client: tuple[httpx.AsyncClient, AppContext], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A node whose stat() fails is listed as unreachable with null figures; the rest answer."""
    from dfms.errors import StoreUnavailable

    client, ctx = cluster_client
    admin = await admin_headers(client, ctx)

    async def broken() -> Any:
        raise StoreUnavailable("disk on fire")

    monkeypatch.setattr(ctx.stores["node-2"], "stat", broken)
    r = await client.get(f"{ADMIN}/cluster", headers=admin)
    assert r.status_code == 200, r.text
    nodes = {n["id"]: n for n in r.json()["nodes"]}
    assert nodes["node-2"]["reachable"] is False
    assert nodes["node-2"]["capacity"] is None and nodes["node-2"]["chunk_count"] is None
    assert nodes["node-1"]["reachable"] is True and nodes["node-1"]["capacity"] > 0
    assert r.json()["totals"]["dedup_ratio"] is None  # nothing stored yet


async def test_empty_cluster_and_password_login_unaffected(
    client: httpx.AsyncClient, ctx: AppContext
) -> None:
    """An admin account is an ordinary account too: it logs in with its password and has its
    own files; totals on an empty system are zero."""
    admin = await admin_headers(client, ctx)
    r = await client.get(f"{ADMIN}/cluster", headers=admin)
    t = r.json()["totals"]
    assert (t["files"], t["logical_bytes"], t["stored_bytes"], t["dedup_ratio"]) == (0, 0, 0, None)
    r = await client.get(f"{API}/files", headers=admin)
    assert r.status_code == 200 and r.json()["total"] == 0
    await login(client, "root@example.com", PASSWORD)


def test_spec_declares_the_admin_api() -> None:
    """Every admin operation declares its response model and the 401/403 error envelopes."""
    import json

    from dfms.api.openapi import spec

    paths = spec()["paths"]
    expected = {
        ("get", f"{ADMIN}/users"): "AdminUserListOut",
        ("get", f"{ADMIN}/users/{{user_id}}"): "AdminUserEnvelope",
        ("patch", f"{ADMIN}/users/{{user_id}}"): "AdminUserEnvelope",
        ("get", f"{ADMIN}/cluster"): "ClusterOut",
    }
    for (method, path), model in expected.items():
        op = paths[path][method]
        assert model in json.dumps(op["responses"]["200"]), (method, path)
        for status in ("401", "403", "400"):
            assert "ErrorResponse" in json.dumps(op["responses"][status]), (method, path, status)
    patch = paths[f"{ADMIN}/users/{{user_id}}"]["patch"]
    assert "AdminUserPatchIn" in json.dumps(patch["requestBody"])
    assert "409" in patch["responses"]
