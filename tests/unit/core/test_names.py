"""File name and id validation."""

from __future__ import annotations

import uuid

import pytest

from dfms.errors import FileNotFound, InvalidFileName
from dfms.services.names import media_type, parse_id, validate_name


@pytest.mark.parametrize(
    "bad",
    [
        None,
        "",
        ".",
        "..",
        "a/b",
        "a\\b",
        "x\x00y",
        "x\x7fy",
        "line\nbreak",
        "a" * 256,
        "€" * 86,
        " x",
        "x ",
        "\ud800",
    ],
)
def test_bad_names(bad: str | None) -> None:
    """Each refused form raises InvalidFileName (a 400)."""
    with pytest.raises(InvalidFileName):
        validate_name(bad)


@pytest.mark.parametrize(
    "good", ["a", "report.pdf", "a" * 255, "€" * 85, "東京 2024.txt", "..a", "a..b"]
)
def test_good_names(good: str) -> None:
    """Accepted names come back NFC-normalised and unchanged otherwise."""
    assert validate_name(good) == good


def test_nfc_normalisation() -> None:
    """Decomposed and composed forms of a name are the same name."""
    assert validate_name("e\u0301") == "\u00e9"


def test_parse_id() -> None:
    """Malformed ids raise the given NotFound, so they answer like missing objects."""
    u = uuid.uuid4()
    assert parse_id(str(u), FileNotFound) == u and parse_id(u, FileNotFound) == u
    for bad in ("nope", "", None, "1' OR 1=1"):
        with pytest.raises(FileNotFound):
            parse_id(bad, FileNotFound)


@pytest.mark.parametrize(
    ("sent", "name", "stored"),
    [
        ("image/png", "x.bin", "image/png"),
        ("text/plain; charset=utf-8", "x", "text/plain; charset=utf-8"),
        ("Text/Plain", "x", "Text/Plain"),
        # no information: guessed from the name
        (None, "photo.jpg", "image/jpeg"),
        ("", "notes.txt", "text/plain"),
        ("application/octet-stream", "a.pdf", "application/pdf"),
        ("  ", "unknown.zzz", "application/octet-stream"),
        # not a media type: guessed, never stored as sent
        ("text/pl\x00ain", "m.txt", "text/plain"),
        ("text/pl\x01ain\xff", "m.json", "application/json"),
        ("nonsense", "m.zzz", "application/octet-stream"),
        ("a/b/c", "m.zzz", "application/octet-stream"),
        ("image/" + "x" * 300, "p.png", "image/png"),
        # a valid type with unprintable or overlong parameters keeps the type only
        ("text/plain; charset=\x00", "m", "text/plain"),
        ("text/plain; x=" + "y" * 300, "m", "text/plain"),
    ],
)
def test_media_type_is_always_a_valid_header_value(
    sent: str | None, name: str, stored: str
) -> None:
    """Stored types are what downloads send as Content-Type, so they must be header-safe."""
    assert media_type(sent, name) == stored
