"""Validation of user-supplied names and ids (shared by every service)."""

from __future__ import annotations

import mimetypes
import re
import unicodedata
import uuid

from dfms.errors import InvalidFileName, NotFound, ValidationFailed

MAX_NAME_BYTES = 255
DEFAULT_MIME = "application/octet-stream"
#: Longest media type stored (the column's width).
MAX_MIME = 255
_TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_MEDIA_TYPE = re.compile(rf"{_TOKEN}/{_TOKEN}")
_PARAMS = re.compile(r"[\x20-\x7e]*")


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


def media_type(value: str | None, name: str) -> str:
    """The media type to store for (and serve with) a file called ``name``.

    ``value`` (what the client sent) is kept if it is a valid ``type/subtype`` (RFC 9110 tokens),
    with its parameters (``; charset=utf-8``) when they are plain printable ASCII and the whole
    fits in 255 characters; otherwise the parameters are dropped. A missing, generic
    (``application/octet-stream``) or invalid type is guessed from the name's extension, else
    ``application/octet-stream``. What this returns is always a valid header value, so a
    download can always send it.
    """
    base, sep, params = (value or "").partition(";")
    base = base.strip()
    if (
        base
        and base.lower() != DEFAULT_MIME
        and _MEDIA_TYPE.fullmatch(base)
        and len(base) <= MAX_MIME
    ):
        whole = f"{base};{params}" if sep else base
        if sep and _PARAMS.fullmatch(params) and len(whole) <= MAX_MIME:
            return whole
        return base
    return mimetypes.guess_type(name)[0] or DEFAULT_MIME


def parse_sha256(value: str, what: str) -> str:
    """A declared SHA-256 as lowercase hex; ValidationFailed unless it is 64 hex digits."""
    normalized = value.strip().lower()
    if len(normalized) != 64 or any(c not in "0123456789abcdef" for c in normalized):
        raise ValidationFailed(f"{what} must be 64 hexadecimal digits")
    return normalized


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
