"""ES256 (ECDSA P-256) signing keys kept as PEM files in a keys directory.

Layout: one unencrypted PKCS#8 PEM private key per file, named ``<kid>.pem``. Keys made here get a
kid of the form ``20250102T030405123456Z-1a2b3c4d`` (UTC creation time to the microsecond, then
8 random hex digits), so that sorting kids sorts keys by age and the newest key is well defined;
the creation time is read back from the kid. A file dropped in by hand may have any kid made of
``A-Z a-z 0-9 . _ -``; its creation time is then the file's modification time.

Rotation: ``dfms keys generate`` adds a key; after a restart (or :func:`load_keyring`) the newest
key signs new tokens while the older ones still verify the tokens they signed. Remove an old key
file once every token it signed has expired (the refresh lifetime, 7 days by default).

Everything here is synchronous: it runs at startup and from the CLI, never on a request path.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import os
import re
import secrets
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from dfms.errors import ConfigError

log = logging.getLogger(__name__)

KEY_SUFFIX = ".pem"
ALGORITHM = "ES256"
_KID_RE = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_KID_TIME_FORMAT = "%Y%m%dT%H%M%S%fZ"
_GENERATED_KID_RE = re.compile(r"(\d{8}T\d{12}Z)-[0-9a-f]{8}")


@dataclass(frozen=True, slots=True)
class SigningKey:
    """One key of the ring: its id, creation time, file and the private key itself."""

    kid: str
    created: datetime
    path: Path
    private_key: ec.EllipticCurvePrivateKey = field(repr=False)

    @property
    def public_key(self) -> ec.EllipticCurvePublicKey:
        return self.private_key.public_key()

    def jwk(self) -> dict[str, str]:
        """The public key as an RFC 7517 / RFC 7518 JWK."""
        numbers = self.public_key.public_numbers()
        return {
            "kty": "EC",
            "crv": "P-256",
            "x": _b64url_uint(numbers.x),
            "y": _b64url_uint(numbers.y),
            "use": "sig",
            "alg": ALGORITHM,
            "kid": self.kid,
        }


@dataclass(frozen=True, slots=True)
class KeyRing:
    """All keys of a keys directory, oldest first; the newest one signs."""

    keys: tuple[SigningKey, ...]

    def __post_init__(self) -> None:
        if not self.keys:
            raise ConfigError("a key ring needs at least one signing key")
        kids = [k.kid for k in self.keys]
        if len(set(kids)) != len(kids):
            raise ConfigError("key ids in a key ring must be unique")

    @property
    def current(self) -> SigningKey:
        """The newest key: the one that signs new tokens."""
        return self.keys[-1]

    @property
    def signing_key(self) -> ec.EllipticCurvePrivateKey:
        return self.current.private_key

    @property
    def signing_kid(self) -> str:
        return self.current.kid

    @property
    def public_keys(self) -> Mapping[str, ec.EllipticCurvePublicKey]:
        """Every key's public half by kid: tokens signed by any of them verify."""
        return {k.kid: k.public_key for k in self.keys}

    def jwks(self) -> dict[str, Any]:
        """The RFC 7517 JWK set of all public keys (newest first)."""
        return {"keys": [k.jwk() for k in reversed(self.keys)]}


def _b64url_uint(value: int) -> str:
    # RFC 7518 section 6.2.1.2: coordinates are the full-length (32 bytes for P-256) big endian.
    raw = value.to_bytes(32, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def new_kid(now: datetime | None = None) -> str:
    """A fresh kid: UTC time to the microsecond plus 8 random hex digits."""
    moment = (now or datetime.now(UTC)).astimezone(UTC)
    return f"{moment.strftime(_KID_TIME_FORMAT)}-{secrets.token_hex(4)}"


def kid_created(kid: str) -> datetime | None:
    """The creation time encoded in a kid made by :func:`new_kid`, or None for other kids."""
    match = _GENERATED_KID_RE.fullmatch(kid)
    if match is None:
        return None
    try:
        return datetime.strptime(match.group(1), _KID_TIME_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        return None


def _key_files(directory: Path) -> list[Path]:
    try:
        entries = list(directory.iterdir())
    except FileNotFoundError as exc:
        raise ConfigError(
            f"keys directory {directory} does not exist; create a key with `dfms keys generate`"
        ) from exc
    except NotADirectoryError as exc:
        raise ConfigError(f"keys path {directory} is not a directory") from exc
    except OSError as exc:
        raise ConfigError(f"cannot read keys directory {directory}: {exc.strerror}") from exc
    return sorted(
        p
        for p in entries
        if p.name.endswith(KEY_SUFFIX) and not p.name.startswith(".") and p.is_file()
    )


def generate_key(directory: Path) -> str:
    """Write a new P-256 private key into ``directory`` (created if needed) and return its kid.

    The file is written under a temporary name with mode 0600, flushed to disk and then renamed
    into place, so that a crash never leaves a partial key file behind. The new kid always sorts
    after the kids already there, so the new key becomes the signing key.
    """
    directory = Path(directory)
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create keys directory {directory}: {exc.strerror}") from exc

    now = datetime.now(UTC)
    existing = [kid_created(p.name[: -len(KEY_SUFFIX)]) for p in _key_files(directory)]
    latest = max((c for c in existing if c is not None), default=None)
    if latest is not None and latest >= now:  # same microsecond, or the clock went back
        now = latest + timedelta(microseconds=1)
    kid = new_kid(now)

    private_key = ec.generate_private_key(ec.SECP256R1())
    pem = private_key.private_bytes(
        encoding=serialization.Encoding.PEM,
        format=serialization.PrivateFormat.PKCS8,
        encryption_algorithm=serialization.NoEncryption(),
    )
    target = directory / f"{kid}{KEY_SUFFIX}"
    fd, tmp_name = tempfile.mkstemp(prefix=f".{kid}.", suffix=".tmp", dir=directory)
    tmp = Path(tmp_name)
    try:
        try:
            os.fchmod(fd, 0o600)
            os.write(fd, pem)
            os.fsync(fd)
        finally:
            os.close(fd)
        if target.exists():  # pragma: no cover - 32 random bits in the same microsecond
            raise ConfigError(f"key file {target} already exists")
        os.replace(tmp, target)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise ConfigError(f"cannot write key file {target}: {exc.strerror}") from exc
    _fsync_dir(directory)
    return kid


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def ensure_keys(directory: Path) -> None:
    """Create a first signing key if ``directory`` holds none (first start of ``dfms serve``)."""
    directory = Path(directory)
    if directory.exists() and _key_files(directory):
        return
    kid = generate_key(directory)
    log.info("generated signing key %s in %s", kid, directory)


def load_key(path: Path) -> SigningKey:
    """Read one ``<kid>.pem`` file; :class:`ConfigError` naming the file if it is not usable."""
    path = Path(path)
    kid = path.name[: -len(KEY_SUFFIX)] if path.name.endswith(KEY_SUFFIX) else path.name
    if not _KID_RE.fullmatch(kid):
        raise ConfigError(
            f"key file {path}: the name must be <kid>.pem with a kid of 1 to 64 characters "
            "A-Z a-z 0-9 . _ -"
        )
    try:
        data = path.read_bytes()
        mode = path.stat().st_mode
    except OSError as exc:
        raise ConfigError(f"cannot read key file {path}: {exc.strerror}") from exc
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError as exc:  # encrypted PEM
        raise ConfigError(f"key file {path} is encrypted; keys must be unencrypted PEM") from exc
    except (ValueError, UnsupportedAlgorithm) as exc:  # not PEM, corrupt, unsupported type
        raise ConfigError(f"key file {path} is not a valid PEM private key") from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise ConfigError(f"key file {path} is not an EC P-256 private key (ES256 needs one)")
    if mode & 0o077:
        log.warning("key file %s is readable by other users (mode %o)", path, mode & 0o777)
    created = kid_created(kid)
    if created is None:
        created = datetime.fromtimestamp(path.stat().st_mtime, UTC)
    return SigningKey(kid=kid, created=created, path=path, private_key=key)


def list_keys(directory: Path) -> list[SigningKey]:
    """All keys of ``directory``, oldest first (the last one signs). Empty if there are none."""
    keys = [load_key(p) for p in _key_files(Path(directory))]
    keys.sort(key=lambda k: (k.created, k.kid))
    return keys


def load_keyring(directory: Path) -> KeyRing:
    """Load every key of ``directory``; :class:`ConfigError` if there is none or one is bad."""
    keys = list_keys(directory)
    if not keys:
        raise ConfigError(
            f"no signing keys (*.pem) in {directory}; create one with `dfms keys generate`"
        )
    return KeyRing(tuple(keys))
