"""``/admin``: account administration and cluster statistics (role admin; 403 otherwise).

Admins manage accounts; no route here (or anywhere) lets them read other users' files."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from dfms.api.deps import AdminUser, Ctx
from dfms.api.schemas import (
    AdminUserEnvelope,
    AdminUserListOut,
    AdminUserOut,
    AdminUserPatchIn,
    ClusterOut,
    ClusterTotalsOut,
    NodeOut,
    error_responses,
)
from dfms.services.admin import AccountView, ClusterView

router = APIRouter(prefix="/admin", tags=["admin"])
E = error_responses(400, 401, 403, 404, 409, 429)


def user_out(u: AccountView) -> AdminUserOut:
    return AdminUserOut(
        id=u.id,
        email=u.email,
        display_name=u.display_name,
        role=u.role,
        is_active=u.is_active,
        quota=u.quota,
        used=u.used,
        created_at=u.created_at,
        updated_at=u.updated_at,
    )


def cluster_out(c: ClusterView) -> ClusterOut:
    return ClusterOut(
        nodes=[
            NodeOut(
                id=n.id,
                address=n.address,
                zone=n.zone,
                weight=n.weight,
                state=n.state,
                reachable=n.reachable,
                capacity=n.capacity,
                free=n.free,
                used=n.used,
                chunk_count=n.chunk_count,
            )
            for n in c.nodes
        ],
        totals=ClusterTotalsOut(
            users=c.users,
            active_users=c.active_users,
            active_admins=c.active_admins,
            files=c.files,
            versions=c.versions,
            logical_bytes=c.logical_bytes,
            current_bytes=c.current_bytes,
            chunks=c.chunks,
            unique_bytes=c.unique_bytes,
            stored_bytes=c.stored_bytes,
            dedup_ratio=c.dedup_ratio,
        ),
    )


@router.get(
    "/users",
    response_model=AdminUserListOut,
    responses=E,
    summary="A page of accounts ordered by email, optionally filtered by an email substring",
)
async def list_users(
    ctx: Ctx,
    admin: AdminUser,
    q: Annotated[
        str | None, Query(max_length=320, description="Substring of the email (literal)")
    ] = None,
    page: Annotated[int, Query(ge=1, le=1_000_000)] = 1,
    page_size: Annotated[int, Query(ge=1, le=1000)] = 50,
) -> AdminUserListOut:
    p = await ctx.admin.list_users(q, page, page_size)
    return AdminUserListOut(
        users=[user_out(u) for u in p.items],
        total=p.total,
        page=p.page,
        page_size=p.page_size,
        total_pages=p.total_pages,
    )


@router.get("/users/{user_id}", response_model=AdminUserEnvelope, responses=E)
async def get_user(user_id: str, ctx: Ctx, admin: AdminUser) -> AdminUserEnvelope:
    return AdminUserEnvelope(user=user_out(await ctx.admin.get_user(user_id)))


@router.patch(
    "/users/{user_id}",
    response_model=AdminUserEnvelope,
    responses=E,
    summary="Change an account's is_active, quota and/or role",
    description=(
        "Disabling revokes the account's refresh tokens; its access tokens stop working within "
        "auth.active_cache_ttl seconds. A new role is in the tokens of the account's next "
        "refresh (a demotion also takes effect within auth.active_cache_ttl). A change that "
        "would leave no active admin is refused with 409 LAST_ACTIVE_ADMIN."
    ),
)
async def patch_user(
    user_id: str, body: AdminUserPatchIn, ctx: Ctx, admin: AdminUser
) -> AdminUserEnvelope:
    view = await ctx.admin.update_user(
        user_id, is_active=body.is_active, quota=body.quota, role=body.role
    )
    return AdminUserEnvelope(user=user_out(view))


@router.get(
    "/cluster",
    response_model=ClusterOut,
    responses=E,
    summary="Storage nodes (with each store's stat()) and totals: users, files, bytes, dedup",
)
async def cluster(ctx: Ctx, admin: AdminUser) -> ClusterOut:
    return cluster_out(await ctx.admin.cluster())
