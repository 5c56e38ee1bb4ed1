"""Password hashing (bcrypt), password rules and e-mail normalisation.

bcrypt only looks at the first 72 bytes of a password. Rather than let longer passwords be
silently truncated (two passwords sharing a 72-byte prefix would then be equivalent), passwords
are limited to 72 bytes of UTF-8 by :func:`validate_password` and refused beyond.

Hashing and checking are deliberately slow (about 250 ms at cost 12): async code must use
:meth:`PasswordHasher.hash_async` / :meth:`PasswordHasher.verify_async`, which run bcrypt in a
worker thread so that the event loop is never blocked.
"""

from __future__ import annotations

import asyncio
import contextlib
import re

import bcrypt

from dfms.errors import ConfigError, ValidationFailed

#: Fewest characters (code points) a password may have.
MIN_PASSWORD_CHARS = 8
#: Most bytes (UTF-8) a password may have: bcrypt ignores everything past this.
MAX_PASSWORD_BYTES = 72
DEFAULT_ROUNDS = 12
MIN_ROUNDS = 4
MAX_ROUNDS = 31

# A well-formed bcrypt salt + digest (53 characters after "$2b$NN$") with no known preimage of
# interest; prefixed with the hasher's cost it is a dummy hash that costs exactly as much to
# check as a real one, without spending a hash computation to build it.
_DUMMY_SALT_AND_DIGEST = "QnqjcqosxqKHe6yL600djeF6NHN7l7PI0IPy0vJWMl.0ugNAL8o7q"
_HASH_RE = re.compile(r"\$2[abxy]\$(\d\d)\$[./A-Za-z0-9]{53}")

_MAX_EMAIL_LENGTH = 254
_MAX_LOCAL_LENGTH = 64
_LOCAL_RE = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+")
_DOMAIN_LABEL_RE = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")


def validate_password(password: str) -> None:
    """Check the password rules; raise :class:`ValidationFailed` explaining the first one broken.

    Rules: a string of at least 8 characters and at most 72 bytes once encoded in UTF-8 (bcrypt's
    limit; never silently truncated), with no NUL character.
    """
    if not isinstance(password, str):
        raise ValidationFailed("password must be a string", field="password")
    if len(password) < MIN_PASSWORD_CHARS:
        raise ValidationFailed(
            f"password must be at least {MIN_PASSWORD_CHARS} characters", field="password"
        )
    try:
        encoded = password.encode("utf-8")
    except UnicodeEncodeError as exc:  # lone surrogates
        raise ValidationFailed("password is not valid Unicode text", field="password") from exc
    if len(encoded) > MAX_PASSWORD_BYTES:
        raise ValidationFailed(
            f"password must be at most {MAX_PASSWORD_BYTES} bytes in UTF-8 "
            f"(this one is {len(encoded)} bytes)",
            field="password",
        )
    if "\x00" in password:
        raise ValidationFailed("password must not contain a NUL character", field="password")


def normalize_email(email: str) -> str:
    """Return the canonical form of an e-mail address (stripped, lower case).

    Only a basic syntax check is made (one ``@``, a plausible local part and domain, no
    whitespace, RFC 5321 lengths); anything else raises :class:`ValidationFailed`.
    """
    if not isinstance(email, str):
        raise ValidationFailed("email must be a string", field="email")
    normalized = email.strip().lower()
    if not normalized:
        raise ValidationFailed("email must not be empty", field="email")
    if len(normalized) > _MAX_EMAIL_LENGTH:
        raise ValidationFailed(
            f"email must be at most {_MAX_EMAIL_LENGTH} characters", field="email"
        )
    local, sep, domain = normalized.rpartition("@")
    if not sep or not local or not domain:
        raise ValidationFailed("email must look like name@domain", field="email")
    if (
        len(local) > _MAX_LOCAL_LENGTH
        or not _LOCAL_RE.fullmatch(local)
        or local.startswith(".")
        or local.endswith(".")
        or ".." in local
    ):
        raise ValidationFailed("email has an invalid name part", field="email")
    labels = domain.split(".")
    if not all(_DOMAIN_LABEL_RE.fullmatch(label) for label in labels):
        raise ValidationFailed("email has an invalid domain", field="email")
    return normalized


class PasswordHasher:
    """bcrypt hashing at a fixed cost (``rounds``, 4..31; 12 by default)."""

    def __init__(self, rounds: int = DEFAULT_ROUNDS) -> None:
        if isinstance(rounds, bool) or not isinstance(rounds, int):
            raise ConfigError("bcrypt rounds must be an integer")
        if not MIN_ROUNDS <= rounds <= MAX_ROUNDS:
            raise ConfigError(f"bcrypt rounds must be between {MIN_ROUNDS} and {MAX_ROUNDS}")
        self.rounds = rounds
        self._dummy_hash = f"$2b${rounds:02d}${_DUMMY_SALT_AND_DIGEST}".encode("ascii")

    def hash(self, password: str) -> str:
        """Validate ``password`` (:func:`validate_password`) and return its bcrypt hash."""
        validate_password(password)
        return bcrypt.hashpw(password.encode("utf-8"), bcrypt.gensalt(self.rounds)).decode("ascii")

    def verify(self, password: str, hashed: str) -> bool:
        """True if ``password`` matches ``hashed``.

        Never raises for bad input: a password that could never have been stored (too long, not
        encodable) or a malformed stored hash simply does not match.
        """
        try:
            return bcrypt.checkpw(password.encode("utf-8"), hashed.encode("ascii"))
        except (ValueError, TypeError, AttributeError):
            # ValueError: malformed hash or a password beyond 72 bytes (UnicodeError included).
            return False

    def verify_dummy(self, password: str) -> bool:
        """Spend the time of a real check, then return False.

        Called when no account matches the e-mail so that a failed login takes the same time
        whether or not the account exists.
        """
        with contextlib.suppress(ValueError, TypeError, AttributeError):
            candidate = password.encode("utf-8", "surrogatepass")[:MAX_PASSWORD_BYTES]
            bcrypt.checkpw(candidate, self._dummy_hash)
        return False

    def needs_rehash(self, hashed: str) -> bool:
        """True if ``hashed`` is not a bcrypt hash at this hasher's cost (rehash after login)."""
        match = _HASH_RE.fullmatch(hashed) if isinstance(hashed, str) else None
        return match is None or int(match.group(1)) != self.rounds

    async def hash_async(self, password: str) -> str:
        """:meth:`hash` in a worker thread."""
        return await asyncio.to_thread(self.hash, password)

    async def verify_async(self, password: str, hashed: str) -> bool:
        """:meth:`verify` in a worker thread."""
        return await asyncio.to_thread(self.verify, password, hashed)

    async def verify_dummy_async(self, password: str) -> bool:
        """:meth:`verify_dummy` in a worker thread."""
        return await asyncio.to_thread(self.verify_dummy, password)
