"""ES256 key files, key rings and the JWK set."""

from __future__ import annotations

import base64
import os
import re
import stat
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from dfms.auth.keys import (
    KeyRing,
    ensure_keys,
    generate_key,
    kid_created,
    list_keys,
    load_key,
    load_keyring,
    new_kid,
)
from dfms.errors import ConfigError


def _b64url_decode(value: str) -> bytes:
    return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))


def _write_pem(path: Path, key: object, *, password: bytes | None = None) -> None:
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(password)
        if password
        else serialization.NoEncryption()
    )
    path.write_bytes(
        key.private_bytes(  # type: ignore[attr-defined]
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
        )
    )


def test_generate_key_writes_a_0600_p256_pem(tmp_path: Path) -> None:
    directory = tmp_path / "a" / "keys"
    kid = generate_key(directory)
    path = directory / f"{kid}.pem"
    assert path.is_file()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    assert isinstance(key.curve, ec.SECP256R1)
    # No temporary file left behind.
    assert [p.name for p in directory.iterdir()] == [path.name]


def test_generate_key_mode_is_0600_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        kid = generate_key(tmp_path)
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / f"{kid}.pem").stat().st_mode) == 0o600


def test_kid_encodes_the_creation_time() -> None:
    moment = datetime(2025, 1, 2, 3, 4, 5, 123456, tzinfo=UTC)
    kid = new_kid(moment)
    assert kid.startswith("20250102T030405123456Z-")
    assert kid_created(kid) == moment
    assert kid_created("hand-made") is None
    assert kid_created("20251399T030405123456Z-00000000") is None  # month 13


def test_kids_sort_by_age_and_the_newest_signs(tmp_path: Path) -> None:
    kids = [generate_key(tmp_path) for _ in range(5)]
    assert kids == sorted(kids)
    assert len(set(kids)) == 5
    ring = load_keyring(tmp_path)
    assert [k.kid for k in ring.keys] == kids
    assert ring.signing_kid == kids[-1]
    assert set(ring.public_keys) == set(kids)
    created = [k.created for k in ring.keys]
    assert created == sorted(created)
    assert all(abs(c - datetime.now(UTC)) < timedelta(minutes=1) for c in created)


def test_new_key_sorts_after_a_key_from_the_future(tmp_path: Path) -> None:
    # The clock went back (or a key was copied from elsewhere): the new key must still sign.
    future_kid = "29990101T000000000000Z-0000abcd"
    _write_pem(tmp_path / f"{future_kid}.pem", ec.generate_private_key(ec.SECP256R1()))
    kid = generate_key(tmp_path)
    assert kid > future_kid
    assert load_keyring(tmp_path).signing_kid == kid


def test_ensure_keys_creates_only_when_missing(tmp_path: Path) -> None:
    directory = tmp_path / "keys"
    ensure_keys(directory)
    first = sorted(directory.iterdir())
    assert len(first) == 1
    ensure_keys(directory)
    assert sorted(directory.iterdir()) == first


def test_signing_key_and_public_keys_match(keys_dir: Path) -> None:
    ring = load_keyring(keys_dir)
    assert ring.signing_key.public_key().public_numbers() == (
        ring.public_keys[ring.signing_kid].public_numbers()
    )
    assert ring.current.path == keys_dir / f"{ring.signing_kid}.pem"
    assert "private_key" not in repr(ring.current)


def test_jwks_content(tmp_path: Path) -> None:
    kids = [generate_key(tmp_path), generate_key(tmp_path)]
    ring = load_keyring(tmp_path)
    jwks = ring.jwks()
    assert [k["kid"] for k in jwks["keys"]] == list(reversed(kids))
    for jwk in jwks["keys"]:
        assert set(jwk) == {"kty", "crv", "x", "y", "use", "alg", "kid"}
        assert (jwk["kty"], jwk["crv"], jwk["use"], jwk["alg"]) == ("EC", "P-256", "sig", "ES256")
        assert "d" not in jwk
        assert len(_b64url_decode(jwk["x"])) == 32
        assert len(_b64url_decode(jwk["y"])) == 32
        assert "=" not in jwk["x"] + jwk["y"]
        numbers = ring.public_keys[jwk["kid"]].public_numbers()
        assert int.from_bytes(_b64url_decode(jwk["x"]), "big") == numbers.x
        assert int.from_bytes(_b64url_decode(jwk["y"]), "big") == numbers.y
        # A standard JWK consumer rebuilds the same key from it.
        rebuilt = jwt.PyJWK(jwk).key
        assert rebuilt.public_numbers() == numbers


def test_hand_made_kid_uses_file_mtime(tmp_path: Path) -> None:
    generated = generate_key(tmp_path)
    path = tmp_path / "imported-key.pem"
    _write_pem(path, ec.generate_private_key(ec.SECP256R1()))
    old = time.time() - 86400
    os.utime(path, (old, old))
    keys = list_keys(tmp_path)
    assert [k.kid for k in keys] == ["imported-key", generated]
    assert keys[0].created == datetime.fromtimestamp(old, UTC)


def test_other_files_are_ignored(tmp_path: Path) -> None:
    kid = generate_key(tmp_path)
    (tmp_path / "README.txt").write_text("not a key")
    (tmp_path / ".partial.pem").write_text("temp")
    (tmp_path / "sub.pem").mkdir()
    assert [k.kid for k in list_keys(tmp_path)] == [kid]


def test_group_readable_key_is_loaded_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    kid = generate_key(tmp_path)
    (tmp_path / f"{kid}.pem").chmod(0o644)
    assert load_keyring(tmp_path).signing_kid == kid
    assert "readable by other users" in caplog.text


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"not a pem at all", "not a valid PEM private key"),
        (b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", "not a valid PEM"),
        (b"", "not a valid PEM"),
    ],
)
def test_invalid_pem_names_the_file(tmp_path: Path, content: bytes, message: str) -> None:
    generate_key(tmp_path)
    bad = tmp_path / "broken.pem"
    bad.write_bytes(content)
    with pytest.raises(ConfigError, match=message) as info:
        load_keyring(tmp_path)
    assert str(bad) in info.value.message


def test_public_key_pem_is_rejected(tmp_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    path = tmp_path / "public.pem"
    path.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    with pytest.raises(ConfigError, match=re.escape("public.pem")):
        load_key(path)


def test_encrypted_pem_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "locked.pem"
    _write_pem(path, ec.generate_private_key(ec.SECP256R1()), password=b"secret")
    with pytest.raises(ConfigError, match=re.escape("locked.pem is encrypted")):
        load_key(path)


@pytest.mark.parametrize(
    "key",
    [ec.generate_private_key(ec.SECP384R1()), ed25519.Ed25519PrivateKey.generate()],
    ids=["p384", "ed25519"],
)
def test_wrong_key_type_is_rejected(tmp_path: Path, key: object) -> None:
    path = tmp_path / "other.pem"
    _write_pem(path, key)
    with pytest.raises(ConfigError, match=re.escape("other.pem is not an EC P-256")):
        load_key(path)


def test_bad_kid_file_name_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "bad name.pem"
    _write_pem(path, ec.generate_private_key(ec.SECP256R1()))
    with pytest.raises(ConfigError, match=re.escape("bad name.pem")):
        load_keyring(tmp_path)


def test_unreadable_key_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read key file"):
        load_key(tmp_path / "missing.pem")


def test_missing_or_empty_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_keyring(tmp_path / "nope")
    with pytest.raises(ConfigError, match="no signing keys"):
        load_keyring(tmp_path)
    assert list_keys(tmp_path) == []
    file = tmp_path / "file"
    file.write_text("x")
    with pytest.raises(ConfigError, match="not a directory"):
        load_keyring(file)


def test_generate_into_an_unusable_directory(tmp_path: Path) -> None:
    file = tmp_path / "file"
    file.write_text("x")
    with pytest.raises(ConfigError, match="cannot create keys directory"):
        generate_key(file / "keys")


def test_failed_write_leaves_no_partial_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_space(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("dfms.auth.keys.os.fsync", no_space)
    with pytest.raises(ConfigError, match=r"cannot write key file .*No space left"):
        generate_key(tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_keyring_invariants(keyring: KeyRing) -> None:
    with pytest.raises(ConfigError):
        KeyRing(())
    with pytest.raises(ConfigError, match="unique"):
        KeyRing((keyring.current, keyring.current))


def test_unreadable_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def denied(self: Path) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "iterdir", denied)
    with pytest.raises(ConfigError, match=r"cannot read keys directory .*Permission denied"):
        load_keyring(tmp_path)
