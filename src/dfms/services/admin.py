"""Account administration and cluster statistics, for the admin API and ``dfms user``.

Admins manage accounts (role, active flag, quota) and look at the cluster; nothing here reads
users' files or their names. One rule protects the system from locking itself out: a change that
would leave no active admin (demoting or disabling the last one) is refused with
:class:`~dfms.errors.LastActiveAdmin`. Active admins are locked while the rule is checked, so two
admins demoting each other at the same time cannot both succeed.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from dfms.auth.passwords import normalize_email
from dfms.errors import LastActiveAdmin, UserNotFound, ValidationFailed
from dfms.metadata.admin_repository import AdminRepository
from dfms.metadata.db import Database
from dfms.metadata.models import User
from dfms.metadata.repositories import NodeRepository, RefreshTokenRepository, UserRepository
from dfms.services.names import bad_chars, parse_id
from dfms.services.paging import Page
from dfms.services.users import ROLES, AccountStateCache, UserView
from dfms.storage.cluster import ReplicatedStore

#: Largest quota an admin may set (bytes); keeps every sum of quotas within a 64-bit integer.
MAX_QUOTA = 2**62
MAX_QUERY = 320


@dataclass(frozen=True, slots=True)
class AccountView(UserView):
    """An account as admins see it: the user's own view plus its timestamps."""

    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, u: User) -> AccountView:
        return cls(
            u.id,
            u.email,
            u.display_name,
            u.role,
            u.is_active,
            u.quota_bytes,
            u.used_bytes,
            u.created_at,
            u.updated_at,
        )


@dataclass(frozen=True, slots=True)
class NodeView:
    id: str
    address: str
    zone: str
    weight: float
    state: str
    #: False when this gateway has no store for the node or its stat() failed or timed out;
    #: the byte figures are None then.
    reachable: bool
    capacity: int | None
    free: int | None
    used: int | None
    chunk_count: int | None


@dataclass(frozen=True, slots=True)
class ClusterView:
    nodes: list[NodeView]
    users: int
    active_users: int
    active_admins: int
    files: int
    versions: int
    logical_bytes: int
    current_bytes: int
    chunks: int
    unique_bytes: int
    stored_bytes: int

    @property
    def dedup_ratio(self) -> float | None:
        """Logical bytes per byte of distinct content (None while nothing is stored)."""
        if self.unique_bytes == 0:
            return None
        return round(self.logical_bytes / self.unique_bytes, 4)


Finder = Callable[[AsyncSession], Awaitable[User | None]]


class AdminService:
    def __init__(self, db: Database, store: ReplicatedStore, accounts: AccountStateCache) -> None:
        self.db = db
        self.store = store
        self.accounts = accounts

    # ---- accounts ----

    async def list_users(
        self, query: str | None = None, page: int = 1, page_size: int = 50
    ) -> Page[AccountView]:
        """Users ordered by email, optionally those whose email contains ``query``."""
        if query is not None and len(query) > MAX_QUERY:
            raise ValidationFailed(f"q must be at most {MAX_QUERY} characters")
        if query is not None and bad_chars(query, allow_newlines=False):
            raise ValidationFailed("q must not contain control characters")
        if page < 1 or not 1 <= page_size <= 1000:
            raise ValidationFailed("page must be >= 1 and page_size 1 to 1000")
        async with self.db.read() as s:
            rows, total = await AdminRepository(s).search_users(
                query.strip() if query else None, offset=(page - 1) * page_size, limit=page_size
            )
        return Page([AccountView.of(u) for u in rows], total, page, page_size)

    async def get_user(self, user_id: str | uuid.UUID) -> AccountView:
        uid = parse_id(user_id, UserNotFound)
        async with self.db.read() as s:
            user = await UserRepository(s).get(uid)
        if user is None:
            raise UserNotFound()
        return AccountView.of(user)

    async def get_user_by_email(self, email: str) -> AccountView:
        async with self.db.read() as s:
            user = await self._by_email(email)(s)
        if user is None:
            raise UserNotFound(f"no user with email {email.strip()}")
        return AccountView.of(user)

    async def update_user(
        self,
        user_id: str | uuid.UUID,
        *,
        is_active: bool | None = None,
        quota: int | None = None,
        role: str | None = None,
    ) -> AccountView:
        """Change any of the active flag, quota and role (None: unchanged).

        Disabling an account revokes its refresh tokens; its access tokens stop working within
        ``auth.active_cache_ttl`` (at once on this gateway). A new role is in the tokens issued
        by the account's next refresh; a demotion also takes effect within the cache TTL.
        """
        uid = parse_id(user_id, UserNotFound)

        async def find(s: AsyncSession) -> User | None:
            return await UserRepository(s).lock(uid)

        return await self._update(find, None, is_active=is_active, quota=quota, role=role)

    async def update_user_by_email(
        self,
        email: str,
        *,
        is_active: bool | None = None,
        quota: int | None = None,
        role: str | None = None,
    ) -> AccountView:
        """:meth:`update_user` for the account with this email (``dfms user ...``)."""
        missing = f"no user with email {email.strip()}"
        return await self._update(
            self._by_email(email), missing, is_active=is_active, quota=quota, role=role
        )

    @staticmethod
    def _by_email(email: str) -> Finder:
        try:
            normalized = normalize_email(email)
        except ValidationFailed:
            normalized = ""

        async def find(s: AsyncSession) -> User | None:
            if not normalized:
                return None
            users = UserRepository(s)
            user = await users.by_email(normalized)
            return await users.lock(user.id) if user is not None else None

        return find

    async def _update(
        self,
        find: Finder,
        missing: str | None,
        *,
        is_active: bool | None,
        quota: int | None,
        role: str | None,
    ) -> AccountView:
        if role is not None and role not in ROLES:
            raise ValidationFailed(f"role must be one of {', '.join(ROLES)}")
        if quota is not None and (
            isinstance(quota, bool) or not isinstance(quota, int) or not 0 <= quota <= MAX_QUOTA
        ):
            raise ValidationFailed(f"quota must be an integer from 0 to {MAX_QUOTA}")
        may_drop_admin = (role is not None and role != "admin") or is_active is False
        async with self.db.write() as s:
            # Lock the active admins first (always in id order), then the account: every
            # transaction that can drop an admin takes the locks in the same order.
            admins = await AdminRepository(s).lock_active_admins() if may_drop_admin else []
            user = await find(s)
            if user is None:
                raise UserNotFound(missing)
            if (
                may_drop_admin
                and user.role == "admin"
                and user.is_active
                and not set(admins) - {user.id}
            ):
                raise LastActiveAdmin()
            if role is not None:
                user.role = role
            if quota is not None:
                user.quota_bytes = quota
            if is_active is not None:
                if user.is_active and not is_active:
                    await RefreshTokenRepository(s).revoke_user(user.id)
                user.is_active = is_active
            await s.flush()
            await s.refresh(user)
            view = AccountView.of(user)
        self.accounts.forget(view.id)
        return view

    # ---- cluster ----

    async def cluster(self) -> ClusterView:
        """Nodes (metadata plus each store's ``stat()``) and totals over the whole system."""
        async with self.db.read() as s:
            nodes = await NodeRepository(s).all()
            repo = AdminRepository(s)
            users = await repo.user_counts()
            files = await repo.file_totals()
            chunks = await repo.chunk_totals()
        stats = await self.store.stat()
        views = []
        for n in nodes:
            st = stats.get(n.id)
            views.append(
                NodeView(
                    id=n.id,
                    address=n.address,
                    zone=n.zone,
                    weight=n.weight,
                    state=n.state,
                    reachable=st is not None,
                    capacity=st.capacity if st else None,
                    free=st.free if st else None,
                    used=st.used if st else None,
                    chunk_count=st.chunk_count if st else None,
                )
            )
        return ClusterView(
            nodes=views,
            users=users.users,
            active_users=users.active,
            active_admins=users.active_admins,
            files=files.files,
            versions=files.versions,
            logical_bytes=files.logical_bytes,
            current_bytes=files.current_bytes,
            chunks=chunks.chunks,
            unique_bytes=chunks.unique_bytes,
            stored_bytes=chunks.stored_bytes,
        )
