"""Password rules, bcrypt hashing and e-mail normalisation."""

from __future__ import annotations

import asyncio

import bcrypt
import pytest

from dfms.auth.passwords import (
    DEFAULT_ROUNDS,
    PasswordHasher,
    normalize_email,
    validate_password,
)
from dfms.errors import ConfigError, ValidationFailed

# ---- validate_password ----


def test_password_of_exactly_72_multibyte_bytes_is_accepted(hasher: PasswordHasher) -> None:
    password = "é" * 36  # 2 bytes each: 36 characters, 72 bytes
    assert len(password.encode("utf-8")) == 72
    validate_password(password)
    hashed = hasher.hash(password)
    assert hasher.verify(password, hashed)


def test_password_of_73_bytes_is_rejected_not_truncated(hasher: PasswordHasher) -> None:
    password = "é" * 36 + "a"  # 37 characters, 73 bytes
    with pytest.raises(ValidationFailed, match="at most 72 bytes in UTF-8"):
        validate_password(password)
    with pytest.raises(ValidationFailed, match="at most 72 bytes"):
        hasher.hash(password)


def test_long_four_byte_characters_count_in_bytes() -> None:
    validate_password("😀" * 18)  # 72 bytes
    with pytest.raises(ValidationFailed, match="73 bytes"):
        validate_password("😀" * 18 + "x")


def test_password_of_seven_characters_is_rejected() -> None:
    with pytest.raises(ValidationFailed, match="at least 8 characters"):
        validate_password("a" * 7)
    validate_password("a" * 8)


@pytest.mark.parametrize(
    ("password", "message"),
    [
        ("abc\x00defgh", "NUL"),
        ("abcdefgh\ud800", "not valid Unicode"),
        (12345678, "must be a string"),
    ],
)
def test_other_invalid_passwords(password: object, message: str) -> None:
    with pytest.raises(ValidationFailed, match=message) as info:
        validate_password(password)  # type: ignore[arg-type]
    assert info.value.details == {"field": "password"}


# ---- PasswordHasher ----


def test_hash_and_verify_roundtrip(hasher: PasswordHasher) -> None:
    hashed = hasher.hash("correct horse battery")
    assert hashed.startswith("$2b$04$")
    assert hasher.verify("correct horse battery", hashed)
    assert not hasher.verify("correct horse batterY", hashed)
    assert hasher.hash("correct horse battery") != hashed  # salted


def test_default_cost_is_12() -> None:
    hasher = PasswordHasher()
    assert hasher.rounds == DEFAULT_ROUNDS == 12
    hashed = hasher.hash("password-of-default-cost")
    assert hashed.startswith("$2b$12$")
    assert not hasher.needs_rehash(hashed)


@pytest.mark.parametrize("bad", ["", "not a hash", "$2b$04$short", "$2b$99$" + "a" * 53])
def test_verify_against_a_malformed_hash_is_false(hasher: PasswordHasher, bad: str) -> None:
    assert hasher.verify("whatever-password", bad) is False


def test_verify_with_unusable_password_is_false(hasher: PasswordHasher) -> None:
    hashed = hasher.hash("a" * 72)
    assert hasher.verify("a" * 73, hashed) is False  # bcrypt would raise beyond 72 bytes
    assert hasher.verify("a\ud800" * 8, hashed) is False


def test_verify_dummy_is_always_false(hasher: PasswordHasher) -> None:
    assert hasher.verify_dummy("anything-at-all") is False
    assert hasher.verify_dummy("") is False
    assert hasher.verify_dummy("x" * 500) is False
    assert hasher.verify_dummy("\ud800" * 9) is False


def test_verify_dummy_uses_the_hasher_cost() -> None:
    hasher = PasswordHasher(rounds=7)
    assert hasher._dummy_hash.startswith(b"$2b$07$")
    # A well-formed hash: bcrypt really computes it (no early "invalid salt" exit).
    assert bcrypt.checkpw(b"x", hasher._dummy_hash) is False


def test_verify_dummy_does_the_same_bcrypt_work_as_verify(monkeypatch: pytest.MonkeyPatch) -> None:
    """An unknown email costs what a wrong password costs: one real bcrypt check against a hash
    of the same cost (counted, not timed)."""
    hasher = PasswordHasher(rounds=5)
    hashed = hasher.hash("real-password")
    calls: list[bytes] = []
    real_checkpw = bcrypt.checkpw

    def counting(password: bytes, stored: bytes) -> bool:
        calls.append(stored)
        return real_checkpw(password, stored)

    monkeypatch.setattr(bcrypt, "checkpw", counting)
    assert hasher.verify("wrong-password", hashed) is False
    assert hasher.verify_dummy("wrong-password") is False
    assert len(calls) == 2
    assert calls[0][:7] == calls[1][:7] == b"$2b$05$"


def test_needs_rehash(hasher: PasswordHasher) -> None:
    hashed = hasher.hash("some-password")
    assert not hasher.needs_rehash(hashed)
    assert PasswordHasher(rounds=5).needs_rehash(hashed)
    assert hasher.needs_rehash("plaintext")


@pytest.mark.parametrize("rounds", [3, 32, True, 4.0])
def test_invalid_rounds(rounds: object) -> None:
    with pytest.raises(ConfigError):
        PasswordHasher(rounds=rounds)  # type: ignore[arg-type]


async def test_async_wrappers(hasher: PasswordHasher) -> None:
    hashed = await hasher.hash_async("async-password")
    assert await hasher.verify_async("async-password", hashed)
    assert not await hasher.verify_async("other-password", hashed)
    assert await hasher.verify_dummy_async("async-password") is False


async def test_async_hash_does_not_block_the_event_loop() -> None:
    hasher = PasswordHasher(rounds=9)  # ~40 ms of CPU
    ticks = 0
    done = asyncio.Event()

    async def ticker() -> None:
        nonlocal ticks
        while not done.is_set():
            ticks += 1
            await asyncio.sleep(0.001)

    task = asyncio.create_task(ticker())
    await hasher.hash_async("non-blocking-password")
    done.set()
    await task
    assert ticks >= 3


# ---- normalize_email ----


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("  Alice@Example.COM ", "alice@example.com"),
        ("bob.smith+tag@mail.example.org", "bob.smith+tag@mail.example.org"),
        ("admin@localhost", "admin@localhost"),
        ("\tX_Y@A-B.io\n", "x_y@a-b.io"),
    ],
)
def test_normalize_email(raw: str, expected: str) -> None:
    assert normalize_email(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "   ",
        "no-at-sign",
        "@example.com",
        "alice@",
        "a@b@example.com",
        "al ice@example.com",
        "alice@exa mple.com",
        ".alice@example.com",
        "alice.@example.com",
        "al..ice@example.com",
        "alice@example..com",
        "alice@-example.com",
        "alice@example.com.",
        "a" * 65 + "@example.com",
        "a@" + "b" * 250 + ".com",
        "alice@exämple.com",
        None,
    ],
)
def test_invalid_email(raw: str) -> None:
    with pytest.raises(ValidationFailed) as info:
        normalize_email(raw)
    assert info.value.details == {"field": "email"}
