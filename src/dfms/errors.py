"""One exception hierarchy for all of DFMS.

Every error has a stable ``code`` (part of the public API, never renamed) and the HTTP ``status``
it maps to. Only ``dfms.api.errors`` turns them into HTTP responses; nothing below the API layer
knows about HTTP beyond this number.

::

    DFMSError (INTERNAL_ERROR, 500)
    ├── ValidationFailed (VALIDATION_FAILED, 400)
    │   ├── InvalidFileName (VALIDATION_FAILED, 400)
    │   └── ChecksumMismatch (CHECKSUM_MISMATCH, 400)
    ├── ConfigError (CONFIG_INVALID, 500)
    ├── AuthError (401)
    │   ├── AuthTokenMissing (AUTH_TOKEN_MISSING)
    │   ├── AuthTokenInvalid (AUTH_TOKEN_INVALID)
    │   └── AuthInvalidCredentials (AUTH_INVALID_CREDENTIALS)
    ├── AuthForbidden (AUTH_FORBIDDEN, 403)
    ├── NotFound (NOT_FOUND, 404)
    │   ├── FileNotFound (FILE_NOT_FOUND)
    │   ├── FolderNotFound (FOLDER_NOT_FOUND)
    │   ├── VersionNotFound (VERSION_NOT_FOUND)
    │   ├── UploadNotFound (UPLOAD_NOT_FOUND)
    │   └── UserNotFound (USER_NOT_FOUND)
    ├── Conflict (CONFLICT, 409)
    │   ├── UserExists (AUTH_USER_EXISTS)
    │   ├── NameConflict (NAME_CONFLICT)
    │   ├── UploadConflict (UPLOAD_CONFLICT)
    │   └── LastActiveAdmin (LAST_ACTIVE_ADMIN)
    ├── PayloadTooLarge (413)
    │   ├── FileTooLarge (FILE_TOO_LARGE)
    │   └── QuotaExceeded (QUOTA_EXCEEDED)
    ├── RangeNotSatisfiable (RANGE_NOT_SATISFIABLE, 416)
    ├── RateLimitExceeded (RATE_LIMIT_EXCEEDED, 429)
    ├── RateLimitUnavailable (RATE_LIMIT_UNAVAILABLE, 503)
    ├── UploadAborted (UPLOAD_ABORTED, 400)
    ├── RequestTimeout (REQUEST_TIMEOUT, 408)
    └── StorageError (STORAGE_ERROR, 503)
        ├── ChunkNotFound (CHUNK_NOT_FOUND)
        ├── ChunkCorrupt (CHUNK_CORRUPT)
        ├── ChunkHashMismatch (CHUNK_HASH_MISMATCH)
        ├── StoreUnavailable (STORE_UNAVAILABLE)
        ├── QuorumNotReached (QUORUM_NOT_REACHED)
        └── ChunkUnavailable (CHUNK_UNAVAILABLE)
"""

from __future__ import annotations

from typing import Any, ClassVar


class DFMSError(Exception):
    """Base of every DFMS error. ``code`` is stable; ``status`` is the HTTP status it maps to."""

    code: ClassVar[str] = "INTERNAL_ERROR"
    status: ClassVar[int] = 500
    default_message: ClassVar[str] = "internal error"

    def __init__(self, message: str | None = None, **details: Any) -> None:
        self.message = message or self.default_message
        self.details = details
        super().__init__(self.message)


class ValidationFailed(DFMSError):
    code = "VALIDATION_FAILED"
    status = 400
    default_message = "invalid request"


class InvalidFileName(ValidationFailed):
    default_message = "invalid file name"


class ChecksumMismatch(ValidationFailed):
    """The body received does not hash to the SHA-256 the client declared; nothing was
    committed."""

    code = "CHECKSUM_MISMATCH"
    default_message = "the uploaded bytes do not match the declared SHA-256"


class UploadAborted(DFMSError):
    """The client went away or the body ended early; nothing was committed."""

    code = "UPLOAD_ABORTED"
    status = 400
    default_message = "upload aborted before the body was complete"


class RequestTimeout(DFMSError):
    """The client stopped sending the body for longer than the configured read timeout."""

    code = "REQUEST_TIMEOUT"
    status = 408
    default_message = "the client took too long to send the request body"


class ConfigError(DFMSError):
    code = "CONFIG_INVALID"
    status = 500
    default_message = "invalid configuration"


class SchemaOutdated(ConfigError):
    """The metadata database is not at the schema revision this version needs."""

    code = "SCHEMA_OUTDATED"


class AuthError(DFMSError):
    status = 401


class AuthTokenMissing(AuthError):
    code = "AUTH_TOKEN_MISSING"
    default_message = "authorization token missing"


class AuthTokenInvalid(AuthError):
    code = "AUTH_TOKEN_INVALID"
    default_message = "authorization token invalid or expired"


class AuthInvalidCredentials(AuthError):
    code = "AUTH_INVALID_CREDENTIALS"
    default_message = "invalid email or password"


class AuthForbidden(DFMSError):
    code = "AUTH_FORBIDDEN"
    status = 403
    default_message = "forbidden"


class NotFound(DFMSError):
    code = "NOT_FOUND"
    status = 404
    default_message = "not found"


class FileNotFound(NotFound):
    code = "FILE_NOT_FOUND"
    default_message = "file not found"


class FolderNotFound(NotFound):
    code = "FOLDER_NOT_FOUND"
    default_message = "folder not found"


class VersionNotFound(NotFound):
    code = "VERSION_NOT_FOUND"
    default_message = "version not found"


class UploadNotFound(NotFound):
    code = "UPLOAD_NOT_FOUND"
    default_message = "upload session not found"


class UserNotFound(NotFound):
    """An account id or email that no account has (admin API, ``dfms user``)."""

    code = "USER_NOT_FOUND"
    default_message = "user not found"


class Conflict(DFMSError):
    code = "CONFLICT"
    status = 409
    default_message = "conflict"


class UserExists(Conflict):
    code = "AUTH_USER_EXISTS"
    default_message = "a user with this email already exists"


class NameConflict(Conflict):
    code = "NAME_CONFLICT"
    default_message = "an entry with this name already exists in the folder"


class UploadConflict(Conflict):
    """A multipart upload changed while it was being completed."""

    code = "UPLOAD_CONFLICT"
    default_message = "the upload's parts changed while it was being completed; retry"


class LastActiveAdmin(Conflict):
    """A change that would leave no active admin (demoting or disabling the last one)."""

    code = "LAST_ACTIVE_ADMIN"
    default_message = (
        "this is the last active admin: promote or enable another admin before demoting or "
        "disabling it"
    )


class PayloadTooLarge(DFMSError):
    code = "PAYLOAD_TOO_LARGE"
    status = 413
    default_message = "payload too large"


class RequestHeadersTooLarge(DFMSError):
    code = "REQUEST_HEADERS_TOO_LARGE"
    status = 431
    default_message = "request headers too large"


class FileTooLarge(PayloadTooLarge):
    code = "FILE_TOO_LARGE"
    default_message = "file exceeds the maximum upload size"


class QuotaExceeded(PayloadTooLarge):
    code = "QUOTA_EXCEEDED"
    default_message = "storage quota exceeded"


class RangeNotSatisfiable(DFMSError):
    code = "RANGE_NOT_SATISFIABLE"
    status = 416
    default_message = "requested range not satisfiable"


class RateLimitExceeded(DFMSError):
    code = "RATE_LIMIT_EXCEEDED"
    status = 429
    default_message = "rate limit exceeded"


class RateLimitUnavailable(DFMSError):
    """The rate-limit storage failed and ``ratelimit.fail_open`` is false."""

    code = "RATE_LIMIT_UNAVAILABLE"
    status = 503
    default_message = "rate limiting is unavailable; retry later"


class StorageError(DFMSError):
    code = "STORAGE_ERROR"
    status = 503
    default_message = "storage error"


class ChunkNotFound(StorageError):
    code = "CHUNK_NOT_FOUND"
    default_message = "chunk not found on this store"


class ChunkCorrupt(StorageError):
    code = "CHUNK_CORRUPT"
    default_message = "stored chunk does not match its hash"


class ChunkHashMismatch(StorageError):
    """Bytes handed to ``put`` do not hash to the claimed id (caller bug or corrupt transfer)."""

    code = "CHUNK_HASH_MISMATCH"
    status = 400
    default_message = "chunk bytes do not match the given hash"


class StoreUnavailable(StorageError):
    code = "STORE_UNAVAILABLE"
    default_message = "storage node unavailable"


class QuorumNotReached(StorageError):
    code = "QUORUM_NOT_REACHED"
    default_message = "not enough storage nodes acknowledged the write"


class ChunkUnavailable(StorageError):
    code = "CHUNK_UNAVAILABLE"
    default_message = "no replica of a chunk could be read and verified"
