"""Property tests: whatever the input, verification returns claims or raises AuthTokenInvalid."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from jwt.algorithms import ECAlgorithm

from dfms.auth.keys import KeyRing, generate_key, load_keyring
from dfms.auth.tokens import TokenService, parse_bearer
from dfms.errors import AuthTokenInvalid, AuthTokenMissing
from tests.unit.auth._auth_helpers import START, FakeClock

FUZZ = settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.fixture(scope="module")
def ring(tmp_path_factory: pytest.TempPathFactory) -> KeyRing:
    directory: Path = tmp_path_factory.mktemp("fuzz-keys")
    generate_key(directory)
    return load_keyring(directory)


@pytest.fixture(scope="module")
def svc(ring: KeyRing) -> TokenService:
    return TokenService(ring, clock=FakeClock())


@pytest.fixture(scope="module")
def valid_access(svc: TokenService) -> str:
    return svc.issue_pair("user-1", "user").access_token


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _check(svc: TokenService, token: Any) -> None:
    for verify in (svc.verify_access, svc.verify_refresh):
        try:
            verify(token)
        except AuthTokenInvalid as exc:
            assert type(exc) is AuthTokenInvalid
        # Any other exception type fails the test.


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)

CLAIM_NAMES = ["sub", "role", "typ", "fam", "iss", "aud", "iat", "nbf", "exp", "jti", "kid"]


def _plausible(name: str) -> st.SearchStrategy[Any]:
    now = int(START)
    good: dict[str, st.SearchStrategy[Any]] = {
        "sub": st.just("user-1"),
        "role": st.sampled_from(["user", "admin"]),
        "typ": st.sampled_from(["access", "refresh"]),
        "fam": st.just("family"),
        "iss": st.just("dfms-auth"),
        "aud": st.just("dfms-api"),
        "iat": st.integers(now - 1000, now + 1000),
        "nbf": st.integers(now - 1000, now + 1000),
        "exp": st.integers(now - 1000, now + 1000),
        "jti": st.just("jti-1"),
    }
    return good.get(name, st.nothing()) | json_values


claims_strategy = st.fixed_dictionaries(
    {},
    optional={name: _plausible(name) for name in CLAIM_NAMES},
)


@FUZZ
@given(token=st.text(max_size=600))
@example(token="\ud800.\udfff.x")
@example(token="a.b.c")
@example(token="e30.e30.e30")
def test_arbitrary_text_is_rejected(svc: TokenService, token: str) -> None:
    _check(svc, token)


@FUZZ
@given(
    header=st.binary(max_size=200) | json_values.map(lambda v: json.dumps(v).encode()),
    payload=st.binary(max_size=300) | json_values.map(lambda v: json.dumps(v).encode()),
    signature=st.binary(max_size=80),
)
def test_arbitrary_segments_are_rejected(
    svc: TokenService, header: bytes, payload: bytes, signature: bytes
) -> None:
    _check(svc, f"{_b64(header)}.{_b64(payload)}.{_b64(signature)}")


header_strategy = st.builds(
    lambda alg, extra: {"alg": alg, **extra},
    st.sampled_from(["ES256", "ES256", "none", "HS256"]) | json_values,
    st.dictionaries(
        st.sampled_from(["kid", "typ", "crit", "b64", "jku", "x5u"]), json_values, max_size=3
    ),
)


@settings(FUZZ, max_examples=60)
@given(header=header_strategy, claims=claims_strategy)
def test_tokens_signed_by_our_key_with_arbitrary_contents(
    svc: TokenService, ring: KeyRing, header: dict[str, Any], claims: dict[str, Any]
) -> None:
    # Even with a valid signature, odd headers and claims only ever yield AuthTokenInvalid.
    header = {"kid": ring.signing_kid, **header}
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
    signature = ECAlgorithm(ECAlgorithm.SHA256).sign(signing_input.encode(), ring.signing_key)
    _check(svc, f"{signing_input}.{_b64(signature)}")


@FUZZ
@given(data=st.data())
def test_any_single_character_change_is_rejected(
    svc: TokenService, valid_access: str, data: st.DataObject
) -> None:
    position = data.draw(st.integers(0, len(valid_access) - 1))
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_."
    replacement = data.draw(st.sampled_from(alphabet).filter(lambda c: c != valid_access[position]))
    token = valid_access[:position] + replacement + valid_access[position + 1 :]
    with pytest.raises(AuthTokenInvalid):
        svc.verify_access(token)


@FUZZ
@given(value=st.none() | st.text(max_size=80))
def test_parse_bearer_only_raises_auth_errors(value: str | None) -> None:
    try:
        token = parse_bearer(value)
    except (AuthTokenMissing, AuthTokenInvalid):
        return
    assert value is not None
    assert value == f"{value[:7]}{token}"
    assert value[:7].lower() == "bearer "
    assert token and not any(c.isspace() for c in token)
