"""Token hardening at the API: every forged, stale or misused token and every malformed
Authorization header gets 401 in the error envelope; the JWK set serves the verifying keys; a
token signed by an older key still verifies after a new key is added and the gateway restarts.

Authorization scheme: ``Bearer`` is matched case-insensitively (RFC 7235 section 2.1: the
auth-scheme is case-insensitive), followed by exactly one space and the token (RFC 6750
``b64token``); anything else is ``AUTH_TOKEN_INVALID``, a missing or empty header
``AUTH_TOKEN_MISSING``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from dfms.api.app import create_app
from dfms.auth.keys import KeyRing, generate_key
from dfms.context import AppContext
from tests.unit.auth._auth_helpers import (
    b64,
    b64json,
    make_claims,
    sign_token,
    unb64json,
)

API = "/api/v1"
PROBE = f"{API}/storage/usage"  # any authenticated route


async def signup(client: httpx.AsyncClient, email: str = "tok@example.com") -> dict[str, Any]:
    r = await client.post(
        f"{API}/auth/register",
        json={"email": email, "password": "securepass123", "display_name": "Tok"},
    )
    assert r.status_code == 201, r.text
    body: dict[str, Any] = r.json()
    return body


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def assert_401(r: httpx.Response, code: str = "AUTH_TOKEN_INVALID") -> None:
    assert r.status_code == 401, r.text
    body = r.json()
    assert set(body) == {"error"}
    assert body["error"]["code"] == code
    assert body["error"]["request_id"] == r.headers["x-request-id"]
    assert r.headers["www-authenticate"] == "Bearer"


def now() -> int:
    return int(time.time())


def _alg_none(ring: KeyRing, sub: str) -> str:
    return jwt.encode(
        make_claims(now=now(), sub=sub, role="admin"),
        None,
        algorithm="none",
        headers={"kid": ring.signing_kid},
    )


def _hs256_public_key(ring: KeyRing, sub: str) -> str:
    # Algorithm confusion: HMAC keyed with the public key PEM, hoping the verifier uses it.
    secret = ring.public_keys[ring.signing_kid].public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    signing_input = (
        f"{b64json({'alg': 'HS256', 'typ': 'JWT', 'kid': ring.signing_kid})}."
        f"{b64json(make_claims(now=now(), sub=sub, role='admin'))}"
    )
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(signature)}"


def _stranger_same_kid(ring: KeyRing, sub: str) -> str:
    stranger = ec.generate_private_key(ec.SECP256R1())
    return jwt.encode(
        make_claims(now=now(), sub=sub),
        stranger,
        algorithm="ES256",
        headers={"kid": ring.signing_kid},
    )


def _stranger_own_kid(ring: KeyRing, sub: str) -> str:
    stranger = ec.generate_private_key(ec.SECP256R1())
    return jwt.encode(
        make_claims(now=now(), sub=sub),
        stranger,
        algorithm="ES256",
        headers={"kid": "20200101T000000000000Z-deadbeef"},
    )


FORGERIES: dict[str, Callable[[KeyRing, str], str]] = {
    "alg_none": _alg_none,
    "hs256_signed_with_public_key": _hs256_public_key,
    "unknown_key_with_our_kid": _stranger_same_kid,
    "unknown_key_and_kid": _stranger_own_kid,
    "wrong_issuer": lambda ring, sub: sign_token(
        ring, make_claims(now=now(), sub=sub, iss="someone-else")
    ),
    "wrong_audience": lambda ring, sub: sign_token(
        ring, make_claims(now=now(), sub=sub, aud="other-api")
    ),
    "expired": lambda ring, sub: sign_token(
        ring, make_claims(now=now() - 3600, sub=sub, exp=now() - 60)
    ),
    "not_yet_valid": lambda ring, sub: sign_token(
        ring, make_claims(now=now(), sub=sub, nbf=now() + 3600, exp=now() + 4500)
    ),
    "issued_in_the_future": lambda ring, sub: sign_token(
        ring, make_claims(now=now() + 3600, sub=sub)
    ),
    "refresh_type_claim": lambda ring, sub: sign_token(
        ring, make_claims(now=now(), sub=sub, typ="refresh")
    ),
    "subject_not_a_uuid": lambda ring, sub: sign_token(
        ring, make_claims(now=now(), sub="not-a-uuid")
    ),
    "subject_no_such_user": lambda ring, sub: sign_token(
        ring, make_claims(now=now(), sub=str(uuid.uuid4()))
    ),
}


async def test_well_formed_token_is_accepted(client: httpx.AsyncClient, ctx: AppContext) -> None:
    """Control for the rejections below: a token built by the same helpers with valid claims
    for a real user works, so each rejection is due to the one thing that was changed."""
    user = (await signup(client))["user"]
    token = sign_token(ctx.keyring, make_claims(now=now(), sub=user["id"]))
    r = await client.get(PROBE, headers=bearer(token))
    assert r.status_code == 200, r.text


@pytest.mark.parametrize("name", sorted(FORGERIES))
async def test_forged_or_stale_tokens_get_401(
    client: httpx.AsyncClient, ctx: AppContext, name: str
) -> None:
    """alg none, HS256 keyed with the public key, unknown keys, wrong iss/aud, expired, not yet
    valid, wrong type, bad or unknown subject: 401 AUTH_TOKEN_INVALID in the envelope."""
    user = (await signup(client))["user"]
    token = FORGERIES[name](ctx.keyring, user["id"])
    assert_401(await client.get(PROBE, headers=bearer(token)))
    assert_401(await client.get(f"{API}/admin/cluster", headers=bearer(token)))


async def test_tampered_payload_gets_401(client: httpx.AsyncClient) -> None:
    """A real token whose payload was edited (role -> admin) no longer verifies."""
    tokens = (await signup(client))["tokens"]
    header, payload, signature = tokens["access_token"].split(".")
    claims = unb64json(payload)
    claims["role"] = "admin"
    tampered = f"{header}.{b64json(claims)}.{signature}"
    assert_401(await client.get(f"{API}/admin/users", headers=bearer(tampered)))
    # The untouched token still works (and is not an admin's).
    r = await client.get(f"{API}/admin/users", headers=bearer(tokens["access_token"]))
    assert r.status_code == 403


async def test_refresh_and_access_tokens_are_not_interchangeable(
    client: httpx.AsyncClient,
) -> None:
    """A refresh token is refused as an access token, and an access token as a refresh token
    (which leaves the real refresh token usable)."""
    tokens = (await signup(client))["tokens"]
    assert_401(await client.get(PROBE, headers=bearer(tokens["refresh_token"])))
    r = await client.post(f"{API}/auth/refresh", json={"refresh_token": tokens["access_token"]})
    assert_401(r)
    r = await client.post(f"{API}/auth/logout", json={"refresh_token": tokens["access_token"]})
    assert_401(r)
    r = await client.post(f"{API}/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert r.status_code == 200


@pytest.mark.parametrize(
    ("template", "code"),
    [
        ("{token}", "AUTH_TOKEN_INVALID"),  # scheme missing
        ("Bearer  {token}", "AUTH_TOKEN_INVALID"),  # two spaces
        ("Bearer {token} ", "AUTH_TOKEN_INVALID"),  # trailing space
        ("Bearer\t{token}", "AUTH_TOKEN_INVALID"),
        ("Bearer {token} extra", "AUTH_TOKEN_INVALID"),
        ("Bearer", "AUTH_TOKEN_INVALID"),
        ("Bearer ", "AUTH_TOKEN_INVALID"),
        ("Basic dXNlcjpwYXNzd29yZA==", "AUTH_TOKEN_INVALID"),
        ("Token {token}", "AUTH_TOKEN_INVALID"),
        ("Bearer {token}{token}", "AUTH_TOKEN_INVALID"),  # not a JWT any more
        ("", "AUTH_TOKEN_MISSING"),
    ],
)
async def test_malformed_authorization_headers_get_401(
    client: httpx.AsyncClient, template: str, code: str
) -> None:
    """Anything but ``Bearer <token>`` with one space is refused; an empty header counts as
    missing."""
    token = (await signup(client))["tokens"]["access_token"]
    value = template.format(token=token)
    assert_401(await client.get(PROBE, headers={"Authorization": value}), code)


async def test_missing_header_gets_401(client: httpx.AsyncClient) -> None:
    assert_401(await client.get(PROBE), "AUTH_TOKEN_MISSING")


@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER", "bEaReR"])
async def test_scheme_is_case_insensitive(client: httpx.AsyncClient, scheme: str) -> None:
    """RFC 7235: the auth-scheme is case-insensitive, so ``bearer`` works like ``Bearer``."""
    token = (await signup(client))["tokens"]["access_token"]
    r = await client.get(PROBE, headers={"Authorization": f"{scheme} {token}"})
    assert r.status_code == 200, r.text


# ---- the JWK set and key rotation ----


async def test_jwks_serves_the_verifying_key(client: httpx.AsyncClient, ctx: AppContext) -> None:
    """/.well-known/jwks.json lists the public key (kid, ES256, use sig) and that key verifies
    the tokens the gateway issues; no private material is served."""
    r = await client.get("/.well-known/jwks.json")
    assert r.status_code == 200
    assert "max-age" in r.headers["cache-control"]
    keys = r.json()["keys"]
    assert [k["kid"] for k in keys] == [ctx.keyring.signing_kid]
    jwk = keys[0]
    assert {k: jwk[k] for k in ("kty", "crv", "alg", "use")} == {
        "kty": "EC",
        "crv": "P-256",
        "alg": "ES256",
        "use": "sig",
    }
    assert "d" not in jwk
    token = (await signup(client))["tokens"]["access_token"]
    claims = jwt.decode(
        token,
        jwt.PyJWK(jwk).key,
        algorithms=["ES256"],
        audience="dfms-api",
        issuer="dfms-auth",
    )
    assert claims["typ"] == "access"
    assert jwt.get_unverified_header(token)["kid"] == jwk["kid"]


async def test_key_rotation_across_a_restart(client: httpx.AsyncClient, ctx: AppContext) -> None:
    """After `dfms keys generate` and a restart on the same keys dir the newest key signs,
    every key verifies (tokens signed by the older key keep working, refresh included), and
    the JWK set lists both, newest first."""
    old = await signup(client)
    old_kid = ctx.keyring.signing_kid
    assert jwt.get_unverified_header(old["tokens"]["access_token"])["kid"] == old_kid

    new_kid = generate_key(ctx.settings.keys_dir)
    restarted = await AppContext.open(ctx.settings)
    try:
        assert restarted.keyring.signing_kid == new_kid != old_kid
        app = create_app(ctx=restarted)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as c2:
            jwks = (await c2.get("/.well-known/jwks.json")).json()
            assert [k["kid"] for k in jwks["keys"]] == [new_kid, old_kid]

            # The old key's tokens still verify...
            r = await c2.get(PROBE, headers=bearer(old["tokens"]["access_token"]))
            assert r.status_code == 200, r.text
            r = await c2.post(
                f"{API}/auth/refresh", json={"refresh_token": old["tokens"]["refresh_token"]}
            )
            assert r.status_code == 200, r.text
            # ...and what the restarted gateway issues is signed by the new key.
            refreshed = r.json()["tokens"]
            assert jwt.get_unverified_header(refreshed["access_token"])["kid"] == new_kid
            assert jwt.get_unverified_header(refreshed["refresh_token"])["kid"] == new_kid
            r = await c2.post(
                f"{API}/auth/login",
                json={"email": "tok@example.com", "password": "securepass123"},
            )
            fresh = r.json()["tokens"]["access_token"]
            assert jwt.get_unverified_header(fresh)["kid"] == new_kid
            assert (await c2.get(PROBE, headers=bearer(fresh))).status_code == 200

        # A gateway not restarted yet does not know the new key.
        assert_401(await client.get(PROBE, headers=bearer(fresh)))
    finally:
        await restarted.aclose()


def test_jwks_is_declared_in_the_spec() -> None:
    """The JWK set route is in the OpenAPI spec with its response model."""
    from dfms.api.openapi import spec

    op = spec()["paths"]["/.well-known/jwks.json"]["get"]
    assert "JWKSOut" in json.dumps(op["responses"]["200"])
