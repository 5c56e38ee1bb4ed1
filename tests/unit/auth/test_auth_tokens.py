"""Issuing and verifying access/refresh tokens, and parsing Bearer headers."""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from dfms.auth.keys import KeyRing, generate_key, load_keyring
from dfms.auth.tokens import (
    MAX_TOKEN_LENGTH,
    AccessClaims,
    RefreshClaims,
    TokenService,
    parse_bearer,
)
from dfms.config import AuthSettings
from dfms.errors import AuthTokenInvalid, AuthTokenMissing, ConfigError
from tests.unit.auth._auth_helpers import (
    START,
    FakeClock,
    b64,
    b64json,
    forge,
    make_claims,
    sign_token,
    unb64json,
)


def _assert_invalid(
    service: TokenService, token: Any, *, refresh: bool = False
) -> AuthTokenInvalid:
    verify = service.verify_refresh if refresh else service.verify_access
    with pytest.raises(AuthTokenInvalid) as info:
        verify(token)
    assert type(info.value) is AuthTokenInvalid
    return info.value


# ---- issuing and the round trip ----


def test_roundtrip(service: TokenService, keyring: KeyRing) -> None:
    pair = service.issue_pair("user-1", "admin")
    assert pair.token_type == "Bearer"
    assert pair.expires_in == 900
    assert pair.refresh_expires_at == datetime.fromtimestamp(int(START) + 604800, UTC)
    assert pair.access_expires_at == datetime.fromtimestamp(int(START) + 900, UTC)
    assert len(pair.family_id) == 32
    assert pair.refresh_jti != pair.access_jti

    access = service.verify_access(pair.access_token)
    assert access == AccessClaims(
        user_id="user-1",
        role="admin",
        jti=pair.access_jti,
        family_id=pair.family_id,
        issued_at=datetime.fromtimestamp(int(START), UTC),
        expires_at=pair.access_expires_at,
        kid=keyring.signing_kid,
    )
    refresh = service.verify_refresh(pair.refresh_token)
    assert refresh == RefreshClaims(
        user_id="user-1",
        role="admin",
        jti=pair.refresh_jti,
        family_id=pair.family_id,
        issued_at=datetime.fromtimestamp(int(START), UTC),
        expires_at=pair.refresh_expires_at,
        kid=keyring.signing_kid,
    )


def test_token_contents(service: TokenService, keyring: KeyRing) -> None:
    pair = service.issue_pair("user-1", "user")
    header = jwt.get_unverified_header(pair.access_token)
    assert header["alg"] == "ES256"
    assert header["kid"] == keyring.signing_kid
    access = unb64json(pair.access_token.split(".")[1])
    refresh = unb64json(pair.refresh_token.split(".")[1])
    for claims, typ, ttl in ((access, "access", 900), (refresh, "refresh", 604800)):
        assert claims["typ"] == typ
        assert claims["sub"] == "user-1"
        assert claims["role"] == "user"
        assert claims["iss"] == "dfms-auth"
        assert claims["aud"] == "dfms-api"
        assert claims["iat"] == claims["nbf"] == int(START)
        assert claims["exp"] == int(START) + ttl
        assert claims["fam"] == pair.family_id
        assert uuid.UUID(hex=claims["jti"]).version == 4
    assert refresh["jti"] == pair.refresh_jti


def test_rotation_keeps_the_family_and_the_given_role(service: TokenService) -> None:
    first = service.issue_pair("user-1", "admin")
    claims = service.verify_refresh(first.refresh_token)
    second = service.issue_pair(claims.user_id, claims.role, family_id=claims.family_id)
    assert second.family_id == first.family_id
    assert second.refresh_jti != first.refresh_jti
    assert service.verify_access(second.access_token).role == "admin"
    assert service.issue_pair("user-1", "user").family_id != first.family_id


@pytest.mark.parametrize(
    ("user_id", "role", "family_id"),
    [("", "user", None), ("u", "", None), ("u", "user", ""), (None, "user", None)],
)
def test_issue_pair_rejects_empty_arguments(
    service: TokenService, user_id: Any, role: Any, family_id: Any
) -> None:
    with pytest.raises(ValueError):
        service.issue_pair(user_id, role, family_id=family_id)


def test_custom_settings(keyring: KeyRing, clock: FakeClock) -> None:
    settings = AuthSettings(issuer="me", audience="them", access_ttl=60, refresh_ttl=120, leeway=0)
    service = TokenService.from_settings(keyring, settings, clock=clock)
    pair = service.issue_pair("u", "user")
    assert pair.expires_in == 60
    assert service.verify_access(pair.access_token).expires_at.timestamp() == int(START) + 60
    default = TokenService(keyring, clock=clock)
    _assert_invalid(default, pair.access_token)  # other issuer and audience
    assert service.jwks() == keyring.jwks()
    assert service.keyring is keyring


@pytest.mark.parametrize(
    "kwargs",
    [{"issuer": ""}, {"audience": ""}, {"access_ttl": 0}, {"refresh_ttl": -1}, {"leeway": -1}],
)
def test_invalid_service_settings(keyring: KeyRing, kwargs: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        TokenService(keyring, **kwargs)


# ---- rejections ----


def test_alg_none_is_rejected(service: TokenService, keyring: KeyRing) -> None:
    token = jwt.encode(make_claims(), None, algorithm="none", headers={"kid": keyring.signing_kid})
    error = _assert_invalid(service, token)
    assert isinstance(error.__cause__, jwt.PyJWTError)
    # The same with a dummy signature segment added.
    _assert_invalid(service, token + "c2ln")


@pytest.mark.parametrize("alg", ["none", "None", "NONE"])
def test_alg_none_variants_are_rejected(service: TokenService, keyring: KeyRing, alg: str) -> None:
    token = f"{b64json({'alg': alg, 'kid': keyring.signing_kid})}.{b64json(make_claims())}.c2ln"
    _assert_invalid(service, token)


def test_hs256_signed_with_the_public_key_is_rejected(
    service: TokenService, keyring: KeyRing
) -> None:
    # Algorithm confusion: an attacker who knows the public key signs with HMAC, hoping the
    # verifier uses the public key PEM (or its JWK form) as the HMAC secret.
    public_pem = keyring.public_keys[keyring.signing_kid].public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    for secret in (public_pem, json.dumps(keyring.jwks()["keys"][0]).encode()):
        signing_input = f"{b64json({'alg': 'HS256', 'typ': 'JWT', 'kid': keyring.signing_kid})}"
        signing_input += f".{b64json(make_claims(role='admin'))}"
        signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
        error = _assert_invalid(service, f"{signing_input}.{b64(signature)}")
        assert isinstance(error.__cause__, jwt.InvalidAlgorithmError)


def test_signed_by_an_unknown_key_is_rejected(service: TokenService, keyring: KeyRing) -> None:
    stranger = ec.generate_private_key(ec.SECP256R1())
    # Same kid as ours: the signature does not verify.
    token = jwt.encode(
        make_claims(), stranger, algorithm="ES256", headers={"kid": keyring.signing_kid}
    )
    error = _assert_invalid(service, token)
    assert isinstance(error.__cause__, jwt.InvalidSignatureError)


@pytest.mark.parametrize("kid", ["20200101T000000000000Z-deadbeef", "", None])
def test_unknown_or_missing_kid_is_rejected(
    service: TokenService, keyring: KeyRing, kid: Any
) -> None:
    headers: dict[str, Any] = {"kid": kid} if kid is not None else {}
    token = jwt.encode(make_claims(), keyring.signing_key, algorithm="ES256", headers=headers)
    error = _assert_invalid(service, token)
    assert isinstance(error.__cause__, jwt.InvalidKeyError)


@pytest.mark.parametrize("kid", [7, ["x"], {"a": 1}, True])
def test_non_string_kid_is_rejected(service: TokenService, keyring: KeyRing, kid: Any) -> None:
    token = forge(keyring, {"alg": "ES256", "kid": kid}, make_claims())
    error = _assert_invalid(service, token)
    assert isinstance(error.__cause__, jwt.PyJWTError)


def test_forged_token_with_our_key_verifies(service: TokenService, keyring: KeyRing) -> None:
    # Sanity check of _forge, so that the rejections above are about the header alone.
    token = forge(keyring, {"alg": "ES256", "kid": keyring.signing_kid}, make_claims())
    assert service.verify_access(token).user_id == "user-1"


def test_wrong_issuer_is_rejected(service: TokenService, keyring: KeyRing) -> None:
    error = _assert_invalid(service, sign_token(keyring, make_claims(iss="someone-else")))
    assert isinstance(error.__cause__, jwt.InvalidIssuerError)


@pytest.mark.parametrize("aud", ["other-api", ["dfms-api", "other-api"], ["dfms-api"]])
def test_wrong_audience_is_rejected(service: TokenService, keyring: KeyRing, aud: Any) -> None:
    error = _assert_invalid(service, sign_token(keyring, make_claims(aud=aud)))
    assert isinstance(error.__cause__, jwt.InvalidAudienceError)


def test_expired_is_rejected_after_the_leeway(service: TokenService, clock: FakeClock) -> None:
    pair = service.issue_pair("user-1", "user")
    clock.advance(900 + 9)  # within the 10 s leeway
    service.verify_access(pair.access_token)
    clock.advance(1)
    error = _assert_invalid(service, pair.access_token)
    assert error.message == "token expired"
    assert error.details == {"reason": "expired"}
    assert isinstance(error.__cause__, jwt.ExpiredSignatureError)
    # The refresh token lives longer...
    service.verify_refresh(pair.refresh_token)
    clock.advance(604800)
    # ...but not forever.
    _assert_invalid(service, pair.refresh_token, refresh=True)


def test_not_yet_valid_is_rejected_beyond_the_leeway(
    keyring: KeyRing, service: TokenService, clock: FakeClock
) -> None:
    future_clock = FakeClock(clock.now + 10)
    within = TokenService(keyring, clock=future_clock).issue_pair("user-1", "user")
    service.verify_access(within.access_token)  # nbf 10 s ahead: tolerated
    future_clock.advance(1)
    beyond = TokenService(keyring, clock=future_clock).issue_pair("user-1", "user")
    error = _assert_invalid(service, beyond.access_token)
    assert error.details == {"reason": "not_yet_valid"}
    assert isinstance(error.__cause__, jwt.ImmatureSignatureError)
    clock.advance(1)
    service.verify_access(beyond.access_token)


def test_iat_in_the_future_is_rejected(service: TokenService, keyring: KeyRing) -> None:
    token = sign_token(keyring, make_claims(iat=int(START) + 3600))
    error = _assert_invalid(service, token)
    assert isinstance(error.__cause__, jwt.ImmatureSignatureError)


def test_tampered_payload_is_rejected(service: TokenService) -> None:
    pair = service.issue_pair("user-1", "user")
    header, payload, signature = pair.access_token.split(".")
    claims = unb64json(payload)
    claims["role"] = "admin"
    error = _assert_invalid(service, f"{header}.{b64json(claims)}.{signature}")
    assert isinstance(error.__cause__, jwt.InvalidSignatureError)


def test_tampered_header_is_rejected(service: TokenService, keyring: KeyRing) -> None:
    generate_key(keyring.current.path.parent)
    ring = load_keyring(keyring.current.path.parent)
    service = TokenService(ring, clock=service._clock)
    pair = service.issue_pair("user-1", "user")
    _, payload, signature = pair.access_token.split(".")
    other_kid = ring.keys[0].kid
    header = b64json({"alg": "ES256", "typ": "JWT", "kid": other_kid})
    _assert_invalid(service, f"{header}.{payload}.{signature}")


def test_refresh_used_as_access_and_the_reverse_are_rejected(service: TokenService) -> None:
    pair = service.issue_pair("user-1", "user")
    _assert_invalid(service, pair.refresh_token)
    _assert_invalid(service, pair.access_token, refresh=True)


@pytest.mark.parametrize(
    "overrides",
    [
        {"sub": None},
        {"sub": ""},
        {"sub": 42},
        {"role": None},
        {"role": ["admin"]},
        {"jti": None},
        {"jti": 5},
        {"typ": None},
        {"typ": "id"},
        {"exp": None},
        {"iat": None},
        {"nbf": None},
        {"exp": "1900000000"},
        {"exp": 1.9e9},
        {"exp": True},
        {"exp": 10**30},
        {"nbf": -1},
        {"iss": None},
        {"aud": None},
        {"fam": 12},
    ],
)
def test_bad_claims_are_rejected(
    service: TokenService, keyring: KeyRing, overrides: dict[str, Any]
) -> None:
    _assert_invalid(service, sign_token(keyring, make_claims(**overrides)))


def test_refresh_needs_a_family(service: TokenService, keyring: KeyRing) -> None:
    _assert_invalid(
        service, sign_token(keyring, make_claims(typ="refresh", fam=None)), refresh=True
    )
    _assert_invalid(service, sign_token(keyring, make_claims(typ="refresh", fam="")), refresh=True)
    claims = service.verify_refresh(sign_token(keyring, make_claims(typ="refresh")))
    assert claims.family_id == "family-1"


def test_access_without_family_is_accepted(service: TokenService, keyring: KeyRing) -> None:
    assert service.verify_access(sign_token(keyring, make_claims(fam=None))).family_id is None


@pytest.mark.parametrize(
    "token",
    [
        None,
        b"bytes.are.refused",
        "",
        "abc",
        "a.b",
        "a.b.c.d",
        "..",
        "a..c",
        "é.b.c",
        "a b.c.d",
        "a.b.c=",
        "x" * (MAX_TOKEN_LENGTH + 1),
        "eyJ" * 200 + ".e30.c2ln",
        b64json(["not", "an", "object"]) + ".e30.c2ln",
        b64(b"\xff\xfe") + ".e30.c2ln",
        b64(b"[" * 300) + ".e30.c2ln",
        "A.e30.c2ln",
    ],
)
def test_garbage_is_rejected(service: TokenService, token: Any) -> None:
    _assert_invalid(service, token)
    _assert_invalid(service, token, refresh=True)


# ---- key rotation ----


def test_rotation_old_tokens_verify_and_new_tokens_use_the_newest_kid(
    keys_dir: Path, clock: FakeClock
) -> None:
    old_ring = load_keyring(keys_dir)
    old_pair = TokenService(old_ring, clock=clock).issue_pair("user-1", "user")

    new_kid = generate_key(keys_dir)
    new_ring = load_keyring(keys_dir)
    assert new_ring.signing_kid == new_kid != old_ring.signing_kid
    service = TokenService(new_ring, clock=clock)

    assert service.verify_access(old_pair.access_token).kid == old_ring.signing_kid
    assert service.verify_refresh(old_pair.refresh_token).kid == old_ring.signing_kid
    new_pair = service.issue_pair("user-1", "user")
    assert jwt.get_unverified_header(new_pair.access_token)["kid"] == new_kid
    assert jwt.get_unverified_header(new_pair.refresh_token)["kid"] == new_kid
    assert service.verify_access(new_pair.access_token).kid == new_kid

    # A verifier still on the old ring does not know the new key.
    _assert_invalid(TokenService(old_ring, clock=clock), new_pair.access_token)

    # Once the old key file is removed, its tokens stop verifying.
    (keys_dir / f"{old_ring.signing_kid}.pem").unlink()
    pruned = TokenService(load_keyring(keys_dir), clock=clock)
    _assert_invalid(pruned, old_pair.access_token)
    pruned.verify_access(new_pair.access_token)


# ---- Bearer headers ----


@pytest.mark.parametrize(
    ("value", "token"),
    [
        ("Bearer abc.def.ghi", "abc.def.ghi"),
        ("bearer abc", "abc"),
        ("BEARER abc", "abc"),
        ("BeArEr a-b_c.d~e+f/g==", "a-b_c.d~e+f/g=="),
    ],
)
def test_parse_bearer(value: str, token: str) -> None:
    assert parse_bearer(value) == token
    assert TokenService.parse_bearer(value) == token


@pytest.mark.parametrize("value", [None, ""])
def test_parse_bearer_missing(value: str | None) -> None:
    with pytest.raises(AuthTokenMissing):
        parse_bearer(value)


@pytest.mark.parametrize(
    "value",
    [
        "Bearer",
        "Bearer ",
        "Bearer  x",
        " Bearer x",
        "Bearer x ",
        "Bearer x  ",
        "Bearer\tx",
        "Bearer x y",
        "Bearer x\n",
        "Basic x",
        "Bearerx",
        "Token x",
        "   ",
        "Bearer é",
        "Bearer =abc",
        b"Bearer x",
    ],
)
def test_parse_bearer_malformed(value: Any) -> None:
    with pytest.raises(AuthTokenInvalid) as info:
        parse_bearer(value)
    assert type(info.value) is AuthTokenInvalid


def test_unexpected_library_errors_still_map_to_invalid(
    service: TokenService, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = service.issue_pair("user-1", "user").access_token

    def broken(*args: Any, **kwargs: Any) -> dict[str, Any]:
        raise TypeError("unexpected")

    monkeypatch.setattr("dfms.auth.tokens.jwt.decode", broken)
    error = _assert_invalid(service, token)
    assert isinstance(error.__cause__, TypeError)
