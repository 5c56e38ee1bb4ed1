"""Access and refresh tokens: ES256 JWTs signed by the key ring's newest key.

Both tokens of a pair carry ``sub`` (user id), ``role``, ``typ`` (``access`` / ``refresh``),
``iss``, ``aud``, ``iat``, ``nbf``, ``exp``, ``jti`` (random uuid4 hex) and ``fam`` (the refresh
family: every pair issued by rotating a refresh token keeps the family of the token it replaced,
so that the metadata layer can revoke a whole family when a used refresh token shows up again).
The header names the signing key in ``kid``.

Verification is strict and fails closed: any problem, whatever the input, raises
:class:`~dfms.errors.AuthTokenInvalid` (chained from the PyJWT error that describes it).

Defect 7 of the reference: ``role`` in a refresh token is only what it was at issue time. On
refresh, the API layer must issue the new pair with the user's *current* role from the database
(neither demoting admins nor keeping a revoked role), and must check the refresh ``jti`` against
its store (revocation, reuse detection) before rotating.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import jwt
from cryptography.hazmat.primitives.asymmetric import ec

from dfms.auth.keys import ALGORITHM, KeyRing
from dfms.config import AuthSettings
from dfms.errors import AuthTokenInvalid, AuthTokenMissing, ConfigError

TokenType = Literal["access", "refresh"]

#: Longest token accepted (ours are about 450 characters); longer input is refused unparsed.
MAX_TOKEN_LENGTH = 4096
# A JOSE header of ours is ~90 characters; a short cap also bounds JSON nesting before parsing.
_MAX_HEADER_SEGMENT = 512
_SEGMENT_RE = re.compile(r"[A-Za-z0-9_-]+")
_BEARER_RE = re.compile(r"[Bb][Ee][Aa][Rr][Ee][Rr] ([A-Za-z0-9\-._~+/]+=*)")
# NumericDate claims are accepted between the epoch and the end of year 9999.
_MAX_TIMESTAMP = 253_402_300_799
_REQUIRED_CLAIMS = ["exp", "iat", "nbf", "iss", "aud", "sub", "jti", "typ", "role"]


@dataclass(frozen=True, slots=True, kw_only=True)
class TokenPair:
    """A freshly issued access + refresh token pair.

    ``refresh_jti``, ``family_id`` and ``refresh_expires_at`` are what the metadata layer stores
    to revoke refresh tokens and detect their reuse.
    """

    access_token: str
    refresh_token: str
    expires_in: int
    refresh_jti: str
    family_id: str
    refresh_expires_at: datetime
    access_jti: str
    access_expires_at: datetime
    token_type: str = "Bearer"


@dataclass(frozen=True, slots=True, kw_only=True)
class AccessClaims:
    """The verified claims of an access token."""

    user_id: str
    role: str
    jti: str
    family_id: str | None
    issued_at: datetime
    expires_at: datetime
    kid: str


@dataclass(frozen=True, slots=True, kw_only=True)
class RefreshClaims:
    """The verified claims of a refresh token."""

    user_id: str
    role: str
    jti: str
    family_id: str
    issued_at: datetime
    expires_at: datetime
    kid: str


def parse_bearer(header_value: str | None) -> str:
    """The token of an ``Authorization: Bearer <token>`` header value.

    Missing or empty -> :class:`AuthTokenMissing`. Anything but exactly ``Bearer`` (any case), one
    space and a non-empty RFC 6750 token -> :class:`AuthTokenInvalid`.
    """
    if header_value is None or header_value == "":
        raise AuthTokenMissing()
    if not isinstance(header_value, str):
        raise AuthTokenInvalid("malformed Authorization header", reason="malformed_header")
    match = _BEARER_RE.fullmatch(header_value)
    if match is None:
        raise AuthTokenInvalid(
            "Authorization header must be 'Bearer <token>'", reason="malformed_header"
        )
    return match.group(1)


def _utc(timestamp: int) -> datetime:
    return datetime.fromtimestamp(timestamp, UTC)


class TokenService:
    """Issues and verifies token pairs with the keys of a :class:`KeyRing`.

    ``clock`` (seconds since the epoch) is used both to stamp new tokens and to check
    ``exp`` / ``nbf`` / ``iat``, within ``leeway`` seconds of clock skew.
    """

    def __init__(
        self,
        keyring: KeyRing,
        *,
        issuer: str = "dfms-auth",
        audience: str = "dfms-api",
        access_ttl: int = 900,
        refresh_ttl: int = 604800,
        leeway: int = 10,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not issuer or not audience:
            raise ConfigError("token issuer and audience must not be empty")
        if access_ttl <= 0 or refresh_ttl <= 0:
            raise ConfigError("token lifetimes must be positive")
        if leeway < 0:
            raise ConfigError("token leeway must not be negative")
        self._keyring = keyring
        self._public_keys: Mapping[str, ec.EllipticCurvePublicKey] = keyring.public_keys
        self.issuer = issuer
        self.audience = audience
        self.access_ttl = access_ttl
        self.refresh_ttl = refresh_ttl
        self.leeway = leeway
        self._clock = clock

    @classmethod
    def from_settings(
        cls,
        keyring: KeyRing,
        settings: AuthSettings,
        *,
        clock: Callable[[], float] = time.time,
    ) -> TokenService:
        """A service configured from the ``auth`` section of the settings."""
        return cls(
            keyring,
            issuer=settings.issuer,
            audience=settings.audience,
            access_ttl=settings.access_ttl,
            refresh_ttl=settings.refresh_ttl,
            leeway=settings.leeway,
            clock=clock,
        )

    @property
    def keyring(self) -> KeyRing:
        return self._keyring

    def jwks(self) -> dict[str, Any]:
        """The public keys that verify this service's tokens, as a JWK set."""
        return self._keyring.jwks()

    parse_bearer = staticmethod(parse_bearer)

    # ---- issuing ----
    def issue_pair(self, user_id: str, role: str, *, family_id: str | None = None) -> TokenPair:
        """Sign a new access + refresh pair for ``user_id`` with ``role``.

        Pass the ``family_id`` of the refresh token being rotated to keep the family; None starts
        a new family (login, registration).
        """
        if not isinstance(user_id, str) or not user_id:
            raise ValueError("user_id must be a non-empty string")
        if not isinstance(role, str) or not role:
            raise ValueError("role must be a non-empty string")
        if family_id is not None and (not isinstance(family_id, str) or not family_id):
            raise ValueError("family_id must be a non-empty string or None")
        family = family_id or uuid.uuid4().hex
        now = int(self._clock())
        access_jti = uuid.uuid4().hex
        refresh_jti = uuid.uuid4().hex
        access_exp = now + self.access_ttl
        refresh_exp = now + self.refresh_ttl
        access = self._sign(user_id, role, "access", access_jti, family, now, access_exp)
        refresh = self._sign(user_id, role, "refresh", refresh_jti, family, now, refresh_exp)
        return TokenPair(
            access_token=access,
            refresh_token=refresh,
            expires_in=self.access_ttl,
            refresh_jti=refresh_jti,
            family_id=family,
            refresh_expires_at=_utc(refresh_exp),
            access_jti=access_jti,
            access_expires_at=_utc(access_exp),
        )

    def _sign(
        self,
        user_id: str,
        role: str,
        typ: TokenType,
        jti: str,
        family: str,
        now: int,
        exp: int,
    ) -> str:
        payload: dict[str, Any] = {
            "sub": user_id,
            "role": role,
            "typ": typ,
            "fam": family,
            "iss": self.issuer,
            "aud": self.audience,
            "iat": now,
            "nbf": now,
            "exp": exp,
            "jti": jti,
        }
        current = self._keyring.current
        return jwt.encode(
            payload, current.private_key, algorithm=ALGORITHM, headers={"kid": current.kid}
        )

    # ---- verifying ----
    def verify_access(self, token: str) -> AccessClaims:
        """Verify an access token; :class:`AuthTokenInvalid` on any problem."""
        payload, kid = self._verify(token, "access")
        family = payload.get("fam")
        return AccessClaims(
            user_id=payload["sub"],
            role=payload["role"],
            jti=payload["jti"],
            family_id=family if isinstance(family, str) and family else None,
            issued_at=_utc(payload["iat"]),
            expires_at=_utc(payload["exp"]),
            kid=kid,
        )

    def verify_refresh(self, token: str) -> RefreshClaims:
        """Verify a refresh token's signature and claims; :class:`AuthTokenInvalid` otherwise.

        Revocation and reuse are not checked here: the caller looks ``jti`` up in its store.
        """
        payload, kid = self._verify(token, "refresh")
        return RefreshClaims(
            user_id=payload["sub"],
            role=payload["role"],
            jti=payload["jti"],
            family_id=payload["fam"],
            issued_at=_utc(payload["iat"]),
            expires_at=_utc(payload["exp"]),
            kid=kid,
        )

    def _verify(self, token: str, expected: TokenType) -> tuple[dict[str, Any], str]:
        try:
            kid = self._check_shape(token)
            key = self._public_keys.get(kid)
            if key is None:
                raise jwt.InvalidKeyError("unknown key id")
            payload = jwt.decode(
                token,
                key,
                algorithms=[ALGORITHM],
                issuer=self.issuer,
                audience=self.audience,
                options={
                    "require": list(_REQUIRED_CLAIMS),
                    "strict_aud": True,
                    # Times are checked below against our own clock.
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                },
            )
            self._check_times(payload)
            self._check_claims(payload, expected)
        except jwt.ExpiredSignatureError as exc:
            raise AuthTokenInvalid("token expired", reason="expired") from exc
        except jwt.ImmatureSignatureError as exc:
            raise AuthTokenInvalid("token not yet valid", reason="not_yet_valid") from exc
        except jwt.PyJWTError as exc:
            raise AuthTokenInvalid(reason="invalid") from exc
        except (ValueError, TypeError, OverflowError, RecursionError) as exc:
            # Defence in depth: PyJWT maps malformed input to its own errors, but nothing
            # else may escape verification.
            raise AuthTokenInvalid(reason="invalid") from exc
        return payload, kid

    @staticmethod
    def _check_shape(token: str) -> str:
        """Cheap structural checks before any parsing; returns the header's kid."""
        if not isinstance(token, str):
            raise jwt.DecodeError("token must be a string")
        if not token or len(token) > MAX_TOKEN_LENGTH or not token.isascii():
            raise jwt.DecodeError("token empty, too long or not ASCII")
        segments = token.split(".")
        if len(segments) != 3 or not all(_SEGMENT_RE.fullmatch(s) for s in segments):
            raise jwt.DecodeError("token must be three base64url segments")
        if len(segments[0]) > _MAX_HEADER_SEGMENT:
            raise jwt.DecodeError("token header too long")
        header = jwt.get_unverified_header(token)
        if header.get("alg") != ALGORITHM:
            raise jwt.InvalidAlgorithmError("the specified alg value is not allowed")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise jwt.InvalidKeyError("token header has no key id")
        return kid

    def _check_times(self, payload: dict[str, Any]) -> None:
        for claim in ("exp", "iat", "nbf"):
            value = payload[claim]
            if type(value) is not int or not 0 <= value <= _MAX_TIMESTAMP:
                raise jwt.DecodeError(f"{claim} must be an integer timestamp")
        now = self._clock()
        if payload["exp"] <= now - self.leeway:
            raise jwt.ExpiredSignatureError("token has expired")
        if payload["nbf"] > now + self.leeway:
            raise jwt.ImmatureSignatureError("token is not yet valid (nbf)")
        if payload["iat"] > now + self.leeway:
            raise jwt.ImmatureSignatureError("token is not yet valid (iat)")

    @staticmethod
    def _check_claims(payload: dict[str, Any], expected: TokenType) -> None:
        if payload["typ"] != expected:
            raise jwt.InvalidTokenError(f"token type must be {expected!r}")
        for claim in ("sub", "role", "jti"):
            value = payload[claim]
            if not isinstance(value, str) or not value:
                raise jwt.InvalidTokenError(f"{claim} must be a non-empty string")
        family = payload.get("fam")
        if expected == "refresh" and (not isinstance(family, str) or not family):
            raise jwt.MissingRequiredClaimError("fam")
        if family is not None and not isinstance(family, str):
            raise jwt.InvalidTokenError("fam must be a string")
