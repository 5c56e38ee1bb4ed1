"""Pure parsing and validation behind /search and user metadata."""

from __future__ import annotations

import pytest

from dfms.errors import ValidationFailed
from dfms.metadata.search_repository import escape_like, fts_phrase, like_pattern
from dfms.services.search import flatten_metadata, parse_type, validate_metadata


def test_like_wildcards_and_escape_character_are_escaped() -> None:
    """%, _ and the escape character itself match only themselves."""
    assert escape_like("100%_a\\b") == "100\\%\\_a\\\\b"
    assert like_pattern("a_b") == "%a\\_b%"


def test_fts_phrase_doubles_quotes() -> None:
    """A query becomes one FTS5 phrase whatever quotes or operators it holds."""
    assert fts_phrase('say "hi" OR x*') == '"say ""hi"" OR x*"'


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, (None, None, None)),
        ("", (None, None, None)),
        ("file", ("file", None, None)),
        ("FOLDER", ("folder", None, None)),
        ("image", (None, None, "image/")),
        ("image/*", (None, None, "image/")),
        ("Image/PNG", (None, "image/png", None)),
        ("application/vnd.ms-excel", (None, "application/vnd.ms-excel", None)),
    ],
)
def test_type_parsing(value: str | None, expected: tuple[str | None, ...]) -> None:
    """type is a kind, an exact MIME type or a top-level MIME type."""
    assert parse_type(value) == expected


@pytest.mark.parametrize("value", ["a/b/c", "no spaces", "*/png", "image/", "%", "x" * 300])
def test_bad_types_refused(value: str) -> None:
    """Anything else is a validation error, not silently ignored."""
    with pytest.raises(ValidationFailed):
        parse_type(value)


def test_metadata_flattened_for_the_indexes() -> None:
    """Metadata is indexed as sorted "key: value" lines; empty metadata as nothing."""
    assert flatten_metadata({"b": "2", "a": "1"}) == "a: 1\nb: 2"
    assert flatten_metadata({}) is None


def test_metadata_bounds_at_the_limits() -> None:
    """64 keys of 128 characters with values of 1024 are accepted; one more is not."""
    ok = {f"{i:02d}".ljust(128, "k"): "v" * 1024 for i in range(64)}
    assert validate_metadata(ok) == ok
    with pytest.raises(ValidationFailed):
        validate_metadata({**ok, "extra": "v"})
    with pytest.raises(ValidationFailed):
        validate_metadata({"k" * 129: "v"})
    with pytest.raises(ValidationFailed):
        validate_metadata({"k": "v" * 1025})
    with pytest.raises(ValidationFailed):
        validate_metadata({"k": "\ud800"})  # a lone surrogate cannot be stored as UTF-8
    assert validate_metadata({"notes": "two\nlines\ttabbed"}) == {"notes": "two\nlines\ttabbed"}
