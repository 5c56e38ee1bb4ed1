"""Accounts and sessions: register, login, refresh-token rotation with reuse detection, logout."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy.exc import IntegrityError

from dfms.auth.passwords import PasswordHasher, normalize_email, validate_password
from dfms.auth.tokens import TokenPair, TokenService
from dfms.errors import AuthInvalidCredentials, AuthTokenInvalid, UserExists, ValidationFailed
from dfms.metadata.db import Database
from dfms.metadata.models import Entry, User
from dfms.metadata.repositories import EntryRepository, RefreshTokenRepository, UserRepository

ROLES = ("user", "admin")


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


class UserService:
    def __init__(
        self,
        db: Database,
        tokens: TokenService,
        hasher: PasswordHasher,
        *,
        default_quota: int,
    ) -> None:
        self.db = db
        self.tokens = tokens
        self.hasher = hasher
        self.default_quota = default_quota

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
                reuse = True
            else:
                reuse = False
                await repo.mark_used(claims.jti)
                user = await UserRepository(s).get(record.user_id)
                if user is None or not user.is_active:
                    await repo.revoke_family(record.family_id)
                    reuse = True
        if reuse:
            raise AuthTokenInvalid("refresh token already used; please log in again")
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
