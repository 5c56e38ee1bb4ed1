"""Search over a user's files and folders, and the user metadata it also matches.

``q`` is a case-insensitive substring of the name or of the metadata (keys and values); ``%``
and ``_`` are ordinary characters. ``type`` is ``file``, ``folder``, a MIME type
(``image/png``) or a top-level MIME type (``image`` or ``image/*``). Sizes select files only;
``after``/``before`` bound the last-modified time (``after <= updated_at < before``);
``folder_id`` limits the search to that folder's subtree.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime

from dfms.errors import FileNotFound, ValidationFailed
from dfms.metadata.db import Database
from dfms.metadata.repositories import EntryRepository, VersionRepository
from dfms.metadata.search_repository import SearchFilter, SearchRepository
from dfms.services.files import _view as file_view
from dfms.services.folders import EntryView, entry_view, resolve_folder
from dfms.services.names import bad_chars, parse_id
from dfms.services.paging import Page
from dfms.services.uploads import FileView

MAX_META_KEYS = 64
MAX_META_KEY = 128
MAX_META_VALUE = 1024
MAX_QUERY = 1024
#: Largest size filter: sizes are stored as signed 64-bit integers.
MAX_SIZE = 2**63 - 1

_MIME_TOKEN = r"[a-z0-9][a-z0-9!#$&^_.+-]{0,126}"
_MIME = re.compile(rf"^({_MIME_TOKEN})(?:/({_MIME_TOKEN}|\*))?$")


def _utc(value: datetime | None, name: str) -> datetime | None:
    """``value`` in UTC (naive means UTC); a time whose UTC equivalent falls outside the years
    1-9999 (``0001-01-01T00:00+01:00``) is invalid input, not a server error."""
    if value is None:
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValidationFailed(f"{name} is out of range once converted to UTC") from None


def parse_type(value: str | None) -> tuple[str | None, str | None, str | None]:
    """``type`` as (kind, exact MIME type, MIME prefix); ValidationFailed if malformed."""
    if not value:
        return None, None, None
    v = value.strip().lower()
    if v in ("file", "folder"):
        return v, None, None
    m = _MIME.match(v)
    if m is None:
        raise ValidationFailed(
            "type must be 'file', 'folder', a MIME type (image/png) or a top-level type (image)"
        )
    if m.group(2) in (None, "*"):
        return None, None, m.group(1) + "/"
    return None, v, None


def validate_metadata(metadata: Mapping[str, str]) -> dict[str, str]:
    """Check the bounds of user metadata; return it as a plain dict."""
    if len(metadata) > MAX_META_KEYS:
        raise ValidationFailed(f"metadata may have at most {MAX_META_KEYS} keys")
    out: dict[str, str] = {}
    for key, value in metadata.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise ValidationFailed("metadata keys and values must be strings")
        if not key or len(key) > MAX_META_KEY:
            raise ValidationFailed(f"metadata keys must be 1 to {MAX_META_KEY} characters")
        if key != key.strip() or bad_chars(key, allow_newlines=False):
            raise ValidationFailed(
                "metadata keys must not contain control characters or surrounding whitespace"
            )
        if len(value) > MAX_META_VALUE:
            raise ValidationFailed(f"metadata values must be at most {MAX_META_VALUE} characters")
        if bad_chars(value, allow_newlines=True):
            raise ValidationFailed("metadata values must not contain NUL or control characters")
        out[key] = value
    return out


def flatten_metadata(metadata: Mapping[str, str]) -> str | None:
    """The text the search indexes see: one ``key: value`` line per entry."""
    if not metadata:
        return None
    return "\n".join(f"{k}: {v}" for k, v in sorted(metadata.items()))


#: Matches counted at most (a broad query's cost stays bounded; the API reports the count as
#: a lower bound beyond it, like search engines do).
COUNT_CAP = 500


class SearchService:
    def __init__(self, db: Database, *, count_cap: int = COUNT_CAP) -> None:
        self.db = db
        self.count_cap = count_cap
        self._fts: bool | None = None

    async def search(
        self,
        user_id: uuid.UUID,
        *,
        q: str | None = None,
        entry_type: str | None = None,
        min_size: int | None = None,
        max_size: int | None = None,
        after: datetime | None = None,
        before: datetime | None = None,
        folder_id: str | uuid.UUID | None = None,
        page: int = 1,
        page_size: int = 50,
    ) -> Page[EntryView]:
        if q is not None and len(q) > MAX_QUERY:
            raise ValidationFailed(f"q must be at most {MAX_QUERY} characters")
        if q is not None and bad_chars(q, allow_newlines=False):
            raise ValidationFailed("q must not contain control characters")
        for name, size in (("min_size", min_size), ("max_size", max_size)):
            if size is not None and not 0 <= size <= MAX_SIZE:
                raise ValidationFailed(f"{name} must be between 0 and {MAX_SIZE}")
        if min_size is not None and max_size is not None and min_size > max_size:
            raise ValidationFailed("min_size must not exceed max_size")
        after, before = _utc(after, "after"), _utc(before, "before")
        if after is not None and before is not None and after > before:
            raise ValidationFailed("after must not be later than before")
        kind, mime_exact, mime_prefix = parse_type(entry_type)
        async with self.db.read() as s:
            repo = SearchRepository(s)
            if self._fts is None:
                self._fts = await repo.has_fts()
            folder = None
            if folder_id is not None and folder_id != "":
                folder = (await resolve_folder(s, user_id, folder_id)).id
            f = SearchFilter(
                owner_id=user_id,
                q=q or None,
                kind=kind,
                mime_exact=mime_exact,
                mime_prefix=mime_prefix,
                min_size=min_size,
                max_size=max_size,
                after=after,
                before=before,
                folder_id=folder,
            )
            rows, total, exact = await repo.search(
                f,
                offset=(page - 1) * page_size,
                limit=page_size,
                fts=self._fts,
                count_cap=self.count_cap,
            )
            return Page([entry_view(e, v) for e, v in rows], total, page, page_size, exact)

    async def set_metadata(
        self, user_id: uuid.UUID, file_id: str | uuid.UUID, metadata: Mapping[str, str]
    ) -> FileView:
        """Replace a file's user metadata (an empty object clears it)."""
        clean = validate_metadata(metadata)
        async with self.db.write() as s:
            entry = await EntryRepository(s).get(user_id, parse_id(file_id, FileNotFound), "file")
            if entry is None:
                raise FileNotFound()
            await SearchRepository(s).set_metadata(entry, clean, flatten_metadata(clean))
            version = (
                await VersionRepository(s).get(entry.current_version_id)
                if entry.current_version_id
                else None
            )
            return file_view(entry, version)
