"""Accounts and sessions: register, login, refresh-token rotation with reuse detection, logout,
and the per-request account check (active flag and role, cached per process for a few seconds)."""

from __future__ import annotations

import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy.exc import IntegrityError

from dfms.auth.passwords import PasswordHasher, normalize_email, validate_password
from dfms.auth.tokens import TokenPair, TokenService
from dfms.errors import AuthInvalidCredentials, AuthTokenInvalid, UserExists, ValidationFailed
from dfms.metadata.db import Database
from dfms.metadata.models import Entry, User
from dfms.metadata.repositories import EntryRepository, RefreshTokenRepository, UserRepository

ROLES = ("user", "admin")
#: The role a request falls back to when its token's role is no longer the account's.
LEAST_ROLE = "user"


@dataclass(frozen=True, slots=True)
class UserView:
    id: uuid.UUID
    email: str
    display_name: str
    role: str
    is_active: bool
    quota: int
    used: int

    @classmethod
    def of(cls, u: User) -> UserView:
        return cls(u.id, u.email, u.display_name, u.role, u.is_active, u.quota_bytes, u.used_bytes)


@dataclass(frozen=True, slots=True)
class Session:
    user: UserView
    tokens: TokenPair


@dataclass(frozen=True, slots=True)
class AccountState:
    is_active: bool
    role: str


class AccountStateCache:
    """Users' active flag and role as the database has them, read at most once per ``ttl``
    seconds per user and process (``ttl`` 0: on every call). ``forget`` drops a user's entry
    (this process changed the account); a read that raced with it is not cached."""

    def __init__(
        self,
        db: Database,
        ttl: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_entries: int = 65536,
    ) -> None:
        self.db = db
        self.ttl = ttl
        self.clock = clock
        self.max_entries = max_entries
        self._entries: OrderedDict[uuid.UUID, tuple[float, AccountState | None]] = OrderedDict()
        self._generation = 0

    async def get(self, user_id: uuid.UUID) -> AccountState | None:
        """The account's state; None when no such account exists."""
        now = self.clock()
        hit = self._entries.get(user_id)
        if hit is not None and hit[0] > now:
            return hit[1]
        generation = self._generation
        async with self.db.read() as s:
            user = await UserRepository(s).get(user_id)
        state = AccountState(user.is_active, user.role) if user is not None else None
        if self.ttl > 0 and generation == self._generation:
            self._entries[user_id] = (now + self.ttl, state)
            self._entries.move_to_end(user_id)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
        return state

    def forget(self, user_id: uuid.UUID) -> None:
        self._generation += 1
        self._entries.pop(user_id, None)


class UserService:
    def __init__(
        self,
        db: Database,
        tokens: TokenService,
        hasher: PasswordHasher,
        *,
        default_quota: int,
        active_cache_ttl: float = 0.0,
    ) -> None:
        self.db = db
        self.tokens = tokens
        self.hasher = hasher
        self.default_quota = default_quota
        self.accounts = AccountStateCache(db, active_cache_ttl)

    async def authorize(self, user_id: uuid.UUID, token_role: str) -> str:
        """The role a request holding a valid access token of ``user_id`` acts with.

        A disabled or deleted account gets :class:`AuthTokenInvalid` (within the cache TTL of
        the change). Least privilege: the token's role counts only while the account still has
        it, so a demotion takes effect within the cache TTL and a promotion with the next
        refresh (which issues tokens with the account's current role).
        """
        state = await self.accounts.get(user_id)
        if state is None or not state.is_active:
            raise AuthTokenInvalid()
        return token_role if token_role == state.role else LEAST_ROLE

    async def create_user(
        self, email: str, password: str, display_name: str | None = None, *, role: str = "user"
    ) -> UserView:
        """Create an account and its root folder in one transaction."""
        email = normalize_email(email)
        validate_password(password)
        name = (display_name if display_name is not None else email.split("@")[0]).strip()
        if not 1 <= len(name) <= 100:
            raise ValidationFailed("display_name must be 1 to 100 characters")
        if role not in ROLES:
            raise ValidationFailed(f"role must be one of {', '.join(ROLES)}")
        hashed = await self.hasher.hash_async(password)
        try:
            async with self.db.write() as s:
                users = UserRepository(s)
                if await users.by_email(email) is not None:
                    raise UserExists()
                user = await users.add(
                    User(
                        email=email,
                        password_hash=hashed,
                        display_name=name,
                        role=role,
                        quota_bytes=self.default_quota,
                        used_bytes=0,
                        is_active=True,
                    )
                )
                await EntryRepository(s).add(
                    Entry(owner_id=user.id, parent_id=None, kind="folder", name="")
                )
                return UserView.of(user)
        except IntegrityError as exc:  # a concurrent registration won the race
            raise UserExists() from exc

    async def register(self, email: str, password: str, display_name: str) -> Session:
        user = await self.create_user(email, password, display_name)
        return Session(user, await self._issue(user))

    async def login(self, email: str, password: str) -> Session:
        try:
            email = normalize_email(email)
        except ValidationFailed:
            email = ""
        async with self.db.read() as s:
            user = await UserRepository(s).by_email(email) if email else None
        if user is None:
            await self.hasher.verify_dummy_async(password)
            raise AuthInvalidCredentials()
        if not await self.hasher.verify_async(password, user.password_hash) or not user.is_active:
            raise AuthInvalidCredentials()
        view = UserView.of(user)
        return Session(view, await self._issue(view))

    async def refresh(self, refresh_token: str) -> Session:
        """Rotate a refresh token. A token presented twice revokes its whole family."""
        claims = self.tokens.verify_refresh(refresh_token)
        async with self.db.write() as s:
            repo = RefreshTokenRepository(s)
            record = await repo.get(claims.jti)
            if record is None or record.family_id != claims.family_id:
                raise AuthTokenInvalid()
            if record.used_at is not None or record.revoked_at is not None:
                await repo.revoke_family(record.family_id)
                refused: AuthTokenInvalid | None = AuthTokenInvalid(
                    "refresh token already used; please log in again"
                )
            else:
                refused = None
                await repo.mark_used(claims.jti)
                # Defect 7 of the reference: the new pair carries the account's current role
                # (from here, not from the presented token), and a disabled account gets none.
                user = await UserRepository(s).get(record.user_id)
                if user is None or not user.is_active:
                    await repo.revoke_family(record.family_id)
                    refused = AuthTokenInvalid()
        if refused is not None:
            raise refused
        assert user is not None
        view = UserView.of(user)
        return Session(view, await self._issue(view, family_id=record.family_id))

    async def logout(self, refresh_token: str) -> None:
        claims = self.tokens.verify_refresh(refresh_token)
        async with self.db.write() as s:
            await RefreshTokenRepository(s).revoke_family(claims.family_id)

    async def get(self, user_id: uuid.UUID) -> UserView | None:
        async with self.db.read() as s:
            user = await UserRepository(s).get(user_id)
        return UserView.of(user) if user else None

    async def _issue(self, user: UserView, *, family_id: str | None = None) -> TokenPair:
        pair = self.tokens.issue_pair(str(user.id), user.role, family_id=family_id)
        async with self.db.write() as s:
            await RefreshTokenRepository(s).add(
                pair.refresh_jti, user.id, pair.family_id, pair.refresh_expires_at
            )
        return pair
