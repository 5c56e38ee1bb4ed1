"""Request and response models of the public API (they are the OpenAPI spec)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", str_max_length=10_000)


class ErrorBody(BaseModel):
    code: str
    message: str
    request_id: str


class ErrorResponse(BaseModel):
    error: ErrorBody


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries declaring the error envelope for each status code."""
    return {code: {"model": ErrorResponse} for code in codes}


class HealthOut(BaseModel):
    status: Literal["ok"]
    version: str


class ReadyOut(BaseModel):
    status: Literal["ready", "not_ready"]
    checks: dict[str, str]


class RegisterIn(_In):
    email: str = Field(min_length=3, max_length=320)
    password: str = Field(min_length=1, max_length=1024)
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
