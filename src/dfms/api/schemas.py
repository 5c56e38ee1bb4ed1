"""Request and response models of the public API (they are the OpenAPI spec)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, field_validator

from dfms.auth.passwords import MIN_PASSWORD_CHARS


def _storable(value: Any) -> Any:
    """Refuse NUL and lone surrogates anywhere in a request body's strings: neither can be
    stored (PostgreSQL refuses NUL; UTF-8 cannot encode a lone surrogate), so they are bad
    input (400), not a database error."""
    if isinstance(value, str):
        if "\x00" in value or any("\ud800" <= c <= "\udfff" for c in value):
            raise ValueError("must not contain NUL or lone surrogate characters")
    elif isinstance(value, dict):
        for k, v in value.items():
            _storable(k)
            _storable(v)
    elif isinstance(value, list | tuple):
        for v in value:
            _storable(v)
    return value


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", str_max_length=10_000)

    @field_validator("*", mode="after")
    @classmethod
    def _no_unstorable_characters(cls, value: Any) -> Any:
        return _storable(value)


class ErrorBody(BaseModel):
    code: str
    message: str
    request_id: str


class ErrorResponse(BaseModel):
    error: ErrorBody


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries declaring the error envelope for each status code."""
    return {code: {"model": ErrorResponse} for code in codes}


_BYTES: dict[str, Any] = {"*/*": {"schema": {"type": "string", "format": "binary"}}}


def download_responses(what: str) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` of a download: the bytes in the file's own MIME type."""
    return {
        200: {"content": _BYTES, "description": f"{what} (Content-Type: the file's MIME type)"},
        206: {"content": _BYTES, "description": "The requested byte range"},
        304: {"description": "Not modified (If-None-Match, or If-Modified-Since without it)"},
    }


#: What the server checks in a file or folder name (JSON Schema cannot say all of it).
NAME_RULES = (
    "1 to 255 bytes in UTF-8 (NFC); no '/', '\\', NUL or control characters; not '.' or '..'; "
    "no leading or trailing whitespace"
)


class HealthOut(BaseModel):
    status: Literal["ok"]
    version: str


class ReadyOut(BaseModel):
    status: Literal["ready", "not_ready"]
    checks: dict[str, str]


class RegisterIn(_In):
    email: str = Field(min_length=3, max_length=320, json_schema_extra={"format": "email"})
    password: str = Field(min_length=MIN_PASSWORD_CHARS, max_length=1024)
    display_name: str = Field(min_length=1, max_length=100)


class LoginIn(_In):
    email: str = Field(max_length=320)
    password: str = Field(max_length=1024)


class RefreshIn(_In):
    refresh_token: str = Field(min_length=1, max_length=8192)


class UserOut(BaseModel):
    id: uuid.UUID
    email: str
    display_name: str
    role: str


class TokensOut(BaseModel):
    access_token: str
    refresh_token: str
    expires_in: int
    token_type: Literal["Bearer"] = "Bearer"


class AuthOut(BaseModel):
    user: UserOut
    tokens: TokensOut


class RefreshOut(BaseModel):
    tokens: TokensOut


class FileOut(BaseModel):
    id: uuid.UUID
    name: str
    folder_id: uuid.UUID | None
    size: int
    mime_type: str
    checksum: str = Field(description="SHA-256 of the content, lowercase hex")
    version: int
    chunk_count: int
    new_chunks: int
    dedup_chunks: int
    created_at: datetime
    updated_at: datetime
    metadata: dict[str, str] = Field(
        default_factory=dict, description="User metadata (PUT /files/{id}/metadata)"
    )


class FileEnvelope(BaseModel):
    file: FileOut


class FileListOut(BaseModel):
    files: list[FileOut]
    total: int
    page: int
    page_size: int
    total_pages: int


class UsageOut(BaseModel):
    used: int
    quota: int
    available: int
    used_pct: float


# ---- folders, versions, search, multipart ----


class FolderCreateIn(_In):
    name: str = Field(min_length=1, max_length=255, description=NAME_RULES)
    parent_id: str | None = Field(default=None, description="Parent folder; null: the root")


class RenameIn(_In):
    name: str = Field(min_length=1, max_length=255, description=NAME_RULES)


class MoveIn(_In):
    new_parent_id: str | None = Field(description="Target folder; null: the root")


class FolderOut(BaseModel):
    id: uuid.UUID
    name: str = Field(description="Empty for the root folder")
    parent_id: uuid.UUID | None = Field(description="null for the root folder")
    created_at: datetime
    updated_at: datetime


class FolderEnvelope(BaseModel):
    folder: FolderOut


class EntryOut(BaseModel):
    """A file or a folder in a listing or a search result."""

    id: uuid.UUID
    type: Literal["file", "folder"]
    name: str
    parent_id: uuid.UUID | None
    size: int
    mime_type: str | None
    checksum: str | None = Field(description="SHA-256 of the current version (files)")
    version: int | None = Field(description="Current version number (files)")
    metadata: dict[str, str]
    created_at: datetime
    updated_at: datetime


class FolderContentsOut(BaseModel):
    folder: FolderOut
    entries: list[EntryOut] = Field(description="Folders first, then files; each by name")
    total: int
    page: int
    page_size: int
    total_pages: int


class VersionOut(BaseModel):
    number: int
    size: int
    checksum: str
    mime_type: str
    chunk_count: int
    created_at: datetime
    current: bool


class VersionListOut(BaseModel):
    file_id: uuid.UUID
    versions: list[VersionOut] = Field(description="Newest first")


class SearchOut(BaseModel):
    results: list[EntryOut]
    total: int = Field(description="Matches, counted up to 500 (see total_exact)")
    total_exact: bool = Field(
        description="False when more than `total` entries match (the count stops at 500; "
        "every page can still be fetched)"
    )
    page: int
    page_size: int
    total_pages: int


class MultipartInitIn(_In):
    file_name: str = Field(min_length=1, max_length=255, description=NAME_RULES)
    mime_type: str | None = Field(default=None, max_length=255)
    file_size: int | None = Field(
        default=None, ge=0, description="Announced size; completion checks it"
    )
    sha256: str | None = Field(
        default=None,
        pattern="^[0-9a-fA-F]{64}$",
        description="The whole file's SHA-256 (hex); completion refuses other bytes with 400 "
        "CHECKSUM_MISMATCH and keeps the session, so a bad part can be sent again",
    )
    folder_id: str | None = Field(default=None, description="Target folder; null: the root")


class MultipartInitOut(BaseModel):
    upload_id: uuid.UUID
    file_name: str
    expires_at: datetime


class PartOut(BaseModel):
    number: int
    size: int
    checksum: str = Field(description="SHA-256 of the part")
    chunk_count: int
    created_at: datetime


class PartUploadOut(BaseModel):
    upload_id: uuid.UUID
    part: PartOut
    new_chunks: int
    dedup_chunks: int


class MultipartStatusOut(BaseModel):
    upload_id: uuid.UUID
    file_name: str
    folder_id: uuid.UUID | None
    mime_type: str | None
    file_size: int | None
    sha256: str | None = Field(description="The SHA-256 announced at init, if any")
    created_at: datetime
    expires_at: datetime
    parts: list[PartOut]
    received_bytes: int


# ---- signing keys, admin API ----


class JWKOut(BaseModel):
    """One public signing key (RFC 7517 / RFC 7518, EC P-256)."""

    kty: Literal["EC"]
    crv: Literal["P-256"]
    x: str
    y: str
    use: Literal["sig"]
    alg: Literal["ES256"]
    kid: str


class JWKSOut(BaseModel):
    keys: list[JWKOut] = Field(description="Every key that verifies tokens; newest (signing) first")


class AdminUserOut(BaseModel):
    id: uuid.UUID
    email: str
    display_name: str
    role: str = Field(description="admin or user")
    is_active: bool
    quota: int = Field(description="Quota in bytes")
    used: int = Field(description="Logical bytes of every stored version of the user's files")
    created_at: datetime
    updated_at: datetime


class AdminUserEnvelope(BaseModel):
    user: AdminUserOut


class AdminUserListOut(BaseModel):
    users: list[AdminUserOut] = Field(description="Ordered by email")
    total: int
    page: int
    page_size: int
    total_pages: int


class AdminUserPatchIn(_In):
    """Any of the fields; absent or null leaves it unchanged."""

    is_active: StrictBool | None = Field(
        default=None, description="false disables the account (refresh tokens are revoked)"
    )
    quota: StrictInt | None = Field(default=None, ge=0, le=2**62, description="Quota in bytes")
    role: Literal["admin", "user"] | None = Field(
        default=None, description="In the account's tokens from its next refresh"
    )


class NodeOut(BaseModel):
    id: str
    address: str
    zone: str
    weight: float
    state: str
    reachable: bool = Field(description="false: stat() failed or timed out; figures are null")
    capacity: int | None = Field(description="Bytes")
    free: int | None = Field(description="Bytes")
    used: int | None = Field(description="Bytes of chunk files on the node")
    chunk_count: int | None


class ClusterTotalsOut(BaseModel):
    users: int
    active_users: int
    active_admins: int
    files: int = Field(description="Live files")
    versions: int = Field(description="Stored versions of live files")
    logical_bytes: int = Field(
        description="Sum of the sizes of ALL stored versions of live files (what quotas count)"
    )
    current_bytes: int = Field(description="Sum of the sizes of live files' current versions")
    chunks: int = Field(description="Distinct chunks recorded (including garbage awaiting GC)")
    unique_bytes: int = Field(description="Sum of the distinct chunks' sizes (each once)")
    stored_bytes: int = Field(description="Sum over distinct chunks of size x recorded replicas")
    dedup_ratio: float | None = Field(
        description="logical_bytes / unique_bytes; null while nothing is stored"
    )


class ClusterOut(BaseModel):
    nodes: list[NodeOut]
    totals: ClusterTotalsOut
