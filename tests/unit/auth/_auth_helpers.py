"""Helpers shared by the auth tests (unit tests of the token service and API-level tests)."""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any

import jwt
from jwt.algorithms import ECAlgorithm

from dfms.auth.keys import KeyRing

START = 1_800_000_000.0


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self, now: float = START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64json(obj: Any) -> str:
    return b64(json.dumps(obj, separators=(",", ":")).encode())


def unb64json(segment: str) -> Any:
    return json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))


def make_claims(*, now: int = int(START), **overrides: Any) -> dict[str, Any]:
    """The claims of a valid access token issued at ``now``; ``None`` overrides drop a claim."""
    claims: dict[str, Any] = {
        "sub": "user-1",
        "role": "user",
        "typ": "access",
        "fam": "family-1",
        "iss": "dfms-auth",
        "aud": "dfms-api",
        "iat": now,
        "nbf": now,
        "exp": now + 900,
        "jti": uuid.uuid4().hex,
    }
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


def sign_token(keyring: KeyRing, claims: dict[str, Any], **headers: Any) -> str:
    """A token with these claims signed (ES256) by the ring's signing key."""
    headers.setdefault("kid", keyring.signing_kid)
    return jwt.encode(claims, keyring.signing_key, algorithm="ES256", headers=headers)


def forge(keyring: KeyRing, header: dict[str, Any], claims: dict[str, Any]) -> str:
    """An ES256 token signed by our key with any header (PyJWT refuses to build some)."""
    signing_input = f"{b64json(header)}.{b64json(claims)}"
    signature = ECAlgorithm(ECAlgorithm.SHA256).sign(signing_input.encode(), keyring.signing_key)
    return f"{signing_input}.{b64(signature)}"
