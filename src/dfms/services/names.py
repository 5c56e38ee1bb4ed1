"""Validation of user-supplied names and ids (shared by every service)."""

from __future__ import annotations

import unicodedata
import uuid

from dfms.errors import InvalidFileName, NotFound

MAX_NAME_BYTES = 255


def validate_name(name: str | None, *, what: str = "file name") -> str:
    """Return ``name`` NFC-normalised, or raise :class:`InvalidFileName` saying why.

    Refused: empty, over 255 bytes in UTF-8, ``/`` or ``\\``, NUL or any control character,
    ``.`` and ``..``, leading or trailing whitespace.
    """
    if name is None or name == "":
        raise InvalidFileName(f"{what} must not be empty")
    name = unicodedata.normalize("NFC", name)
    if len(name.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES:
        raise InvalidFileName(f"{what} must be at most {MAX_NAME_BYTES} bytes in UTF-8")
    if "/" in name or "\\" in name:
        raise InvalidFileName(f"{what} must not contain '/' or '\\'")
    if any(unicodedata.category(c) in ("Cc", "Cs") for c in name):
        raise InvalidFileName(f"{what} must not contain control characters")
    if name in (".", ".."):
        raise InvalidFileName(f"{what} must not be '.' or '..'")
    if name != name.strip():
        raise InvalidFileName(f"{what} must not start or end with whitespace")
    return name


def bad_chars(value: str, *, allow_newlines: bool) -> bool:
    """NUL, lone surrogates (neither can be stored: PostgreSQL refuses NUL, UTF-8 cannot encode
    a lone surrogate), and unless allowed other control characters."""
    for c in value:
        cat = unicodedata.category(c)
        if c == "\x00" or cat == "Cs":
            return True
        if cat == "Cc" and not (allow_newlines and c in "\t\n\r"):
            return True
    return False


def parse_id(value: str | uuid.UUID | None, error: type[NotFound]) -> uuid.UUID:
    """Parse an object id; a malformed one answers exactly like a missing object."""
    if isinstance(value, uuid.UUID):
        return value
    try:
        return uuid.UUID(str(value))
    except (ValueError, TypeError, AttributeError) as exc:
        raise error() from exc
