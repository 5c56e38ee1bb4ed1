"""File name and id validation."""

from __future__ import annotations

import uuid

import pytest

from dfms.errors import FileNotFound, InvalidFileName
from dfms.services.names import parse_id, validate_name


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
