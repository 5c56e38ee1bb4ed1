"""``/files`` and ``/storage``: upload, list, details, download, delete, usage."""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import urllib.parse
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request, Response
from fastapi.responses import StreamingResponse
from starlette.requests import ClientDisconnect

from dfms.api.deps import Ctx, CurrentUser
from dfms.api.multipart import MultipartFileReader
from dfms.api.schemas import (
    NAME_RULES,
    FileEnvelope,
    FileListOut,
    FileOut,
    UsageOut,
    download_responses,
    error_responses,
)
from dfms.errors import (
    FileTooLarge,
    RangeNotSatisfiable,
    RequestTimeout,
    UploadAborted,
    ValidationFailed,
)
from dfms.services.files import Download
from dfms.services.names import parse_sha256, validate_name
from dfms.services.uploads import FileView

router = APIRouter(tags=["files"])
E = error_responses(400, 401, 404, 408, 409, 413, 416, 429, 503)


def _out(v: FileView) -> FileOut:
    return FileOut(
        id=v.id,
        name=v.name,
        folder_id=v.folder_id,
        size=v.size,
        mime_type=v.mime_type,
        checksum=v.checksum,
        version=v.version,
        chunk_count=v.chunk_count,
        new_chunks=v.new_chunks,
        dedup_chunks=v.dedup_chunks,
        created_at=v.created_at,
        updated_at=v.updated_at,
        metadata=v.metadata,
    )


def _header_text(request: Request, name: str) -> str | None:
    """A header value as text: raw UTF-8 bytes (what curl sends) or RFC 8187 ``UTF-8''...``."""
    raw = request.headers.get(name)
    if raw is None:
        return None
    try:
        if raw.lower().startswith("utf-8''"):
            return urllib.parse.unquote(raw[7:], errors="strict")
        return raw.encode("latin-1").decode("utf-8")
    except UnicodeError as exc:
        raise ValidationFailed(f"{name} is not valid UTF-8") from exc


def declared_sha256(request: Request, form: bool) -> str | None:
    """The file's SHA-256 the client declared, lowercase hex: ``X-Checksum-SHA256: <hex>`` (the
    header downloads send), or for a raw body RFC 9530 ``Content-Digest: sha-256=:<base64>:``
    (other algorithms in it are ignored). None if neither is sent."""
    hex_value = request.headers.get("x-checksum-sha256")
    digest = request.headers.get("content-digest")
    declared: set[str] = set()
    if hex_value is not None:
        declared.add(parse_sha256(hex_value, "X-Checksum-SHA256"))
    if digest is not None:
        if form:
            # a form body's Content-Digest covers the form encoding, not the file
            raise ValidationFailed("Content-Digest applies to raw uploads; use X-Checksum-SHA256")
        for item in digest.split(","):
            algorithm, eq, value = item.strip().partition("=")
            if algorithm.strip().lower() != "sha-256":
                continue
            value = value.strip()
            try:
                if not eq or len(value) < 2 or value[0] != ":" or value[-1] != ":":
                    raise ValueError
                raw = base64.b64decode(value[1:-1], validate=True)
            except (ValueError, binascii.Error):
                raise ValidationFailed("Content-Digest sha-256 must be :base64:") from None
            if len(raw) != 32:
                raise ValidationFailed("Content-Digest sha-256 must be 32 bytes")
            declared.add(raw.hex())
    if len(declared) > 1:
        raise ValidationFailed("X-Checksum-SHA256 and Content-Digest declare different SHA-256s")
    return declared.pop() if declared else None


#: OpenAPI header parameters of the uploads that check a declared SHA-256 (``declared_sha256``).
CHECKSUM_HEADERS: list[dict[str, Any]] = [
    {
        "name": "X-Checksum-SHA256",
        "in": "header",
        "required": False,
        "schema": {"type": "string", "pattern": "^[0-9a-fA-F]{64}$"},
        "description": "The SHA-256 of the bytes sent (hex): if what arrives hashes otherwise, "
        "400 CHECKSUM_MISMATCH and nothing is stored",
    },
    {
        "name": "Content-Digest",
        "in": "header",
        "required": False,
        "schema": {"type": "string"},
        "description": "Raw body only, RFC 9530: sha-256=:<base64>: is checked like "
        "X-Checksum-SHA256; other algorithms are ignored",
    },
]


def refuse_declared_oversize(request: Request, max_size: int) -> None:
    """413 before reading a body whose Content-Length already exceeds the upload cap."""
    length = request.headers.get("content-length")
    if length is not None and length.isascii() and length.isdigit() and int(length) > max_size:
        raise FileTooLarge(f"file exceeds the maximum upload size of {max_size} bytes")


async def _body(request: Request, read_timeout: float) -> AsyncIterator[bytes]:
    """The request body; a client that sends nothing for ``read_timeout`` seconds gets 408 and
    one that disconnects aborts the upload (nothing is committed either way)."""
    pieces = request.stream()
    try:
        while True:
            try:
                async with asyncio.timeout(read_timeout):
                    piece = await anext(pieces)
            except StopAsyncIteration:
                return
            yield piece
    except ClientDisconnect as exc:
        raise UploadAborted() from exc
    except TimeoutError as exc:
        raise RequestTimeout() from exc
    finally:
        await pieces.aclose()


@router.post(
    "/files/upload",
    status_code=201,
    response_model=FileEnvelope,
    responses=E,
    openapi_extra={
        "parameters": [
            {
                "name": "X-File-Name",
                "in": "header",
                "required": False,
                "schema": {"type": "string", "minLength": 1},
                "description": "Raw body: the file name, UTF-8 or RFC 8187 (UTF-8''...); "
                + NAME_RULES,
            },
            {
                "name": "X-Folder-ID",
                "in": "header",
                "required": False,
                "schema": {"type": "string"},
                "description": "Raw body: the target folder's id; absent or empty: the root",
            },
            *CHECKSUM_HEADERS,
        ],
        "requestBody": {
            "required": True,
            "content": {
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "required": ["file"],
                        "properties": {
                            "file": {"type": "string", "format": "binary"},
                            "folder_id": {
                                "type": "string",
                                "description": "Target folder's id; absent or empty: the root",
                            },
                        },
                    }
                },
            },
        },
    },
    summary="Upload a file (raw body with X-File-Name, or multipart/form-data field `file`)",
)
async def upload(request: Request, ctx: Ctx, user: CurrentUser) -> FileEnvelope:
    refuse_declared_oversize(request, ctx.settings.upload.max_size)
    ctype = request.headers.get("content-type", "")
    uploads = ctx.uploads
    form = ctype.lower().startswith("multipart/form-data")
    expected = declared_sha256(request, form)
    if form:
        reader = MultipartFileReader(_body(request, ctx.settings.server.read_timeout), ctype)
        await reader.open()
        name = reader.filename or ""
        validate_name(name)
        if "folder_id" in reader.fields:
            await uploads.check_target(user.user_id, reader.fields["folder_id"] or None)
        staged = await uploads.stage(user.user_id, reader.file_bytes())
        folder = reader.fields.get("folder_id") or None
        mime = reader.content_type
    else:
        name = _header_text(request, "x-file-name") or ""
        validate_name(name)
        folder = request.headers.get("x-folder-id") or None
        await uploads.check_target(user.user_id, folder)
        staged = await uploads.stage(user.user_id, _body(request, ctx.settings.server.read_timeout))
        # curl -d/--data-binary without -H sends this for any file: no information
        mime = None if ctype.lower().startswith("application/x-www-form-urlencoded") else ctype
    view = await uploads.commit(
        user.user_id,
        staged,
        name=name,
        folder_id=folder,
        mime_type=mime,
        expected_sha256=expected,
    )
    return FileEnvelope(file=_out(view))


@router.get("/files", response_model=FileListOut, responses=E)
async def list_files(
    ctx: Ctx,
    user: CurrentUser,
    page: Annotated[int, Query(ge=1, le=1_000_000)] = 1,
    page_size: Annotated[int, Query(ge=1, le=1000)] = 50,
) -> FileListOut:
    p = await ctx.files.list_files(user.user_id, page, page_size)
    return FileListOut(
        files=[_out(v) for v in p.items],
        total=p.total,
        page=p.page,
        page_size=p.page_size,
        total_pages=p.total_pages,
    )


@router.get("/files/{file_id}", response_model=FileEnvelope, responses=E)
async def get_file(file_id: str, ctx: Ctx, user: CurrentUser) -> FileEnvelope:
    return FileEnvelope(file=_out(await ctx.files.get(user.user_id, file_id)))


@router.delete("/files/{file_id}", status_code=204, responses=E)
async def delete_file(file_id: str, ctx: Ctx, user: CurrentUser) -> Response:
    await ctx.files.delete(user.user_id, file_id)
    return Response(status_code=204)


def content_disposition(name: str) -> str:
    """RFC 6266: an ASCII fallback plus the exact UTF-8 name in ``filename*``."""
    fallback = "".join(c if 32 <= ord(c) < 127 and c not in '"\\' else "_" for c in name)
    quoted = urllib.parse.quote(name, safe="")
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quoted}"


@dataclass(frozen=True, slots=True)
class Conditions:
    """The request headers a download answers to."""

    range: str | None
    if_none_match: str | None
    if_range: str | None
    if_modified_since: str | None


def _conditions(
    range_header: Annotated[str | None, Header(alias="Range")] = None,
    if_none_match: Annotated[str | None, Header(alias="If-None-Match")] = None,
    if_modified_since: Annotated[
        str | None,
        Header(alias="If-Modified-Since", description="Ignored when If-None-Match is sent"),
    ] = None,
    if_range: Annotated[
        str | None,
        Header(
            alias="If-Range",
            description="An ETag or HTTP date: Range applies only if the file still matches it "
            "(else the whole file, 200)",
        ),
    ] = None,
) -> Conditions:
    return Conditions(range_header, if_none_match, if_range, if_modified_since)


DownloadConditions = Annotated[Conditions, Depends(_conditions)]


async def download_response(
    ctx: Ctx, d: Download, cond: Conditions, *, head: bool = False
) -> Response:
    """The response of a download (GET) or of its headers alone (HEAD: same status and headers,
    Content-Length included, no chunk is read)."""
    headers = {
        "ETag": d.etag,
        "Accept-Ranges": "bytes",
        "X-Checksum-SHA256": d.sha256,
        "Content-Disposition": content_disposition(d.name),
        "Last-Modified": d.modified.strftime("%a, %d %b %Y %H:%M:%S GMT"),
        "Cache-Control": "private, no-cache",
    }
    if ctx.files.not_modified(d, cond.if_none_match, cond.if_modified_since):
        return Response(status_code=304, headers=headers)
    range_header = cond.range
    if cond.if_range is not None and not ctx.files.if_range_matches(cond.if_range, d):
        range_header = None  # the file changed since the client's partial copy: send it whole
    try:
        rng = ctx.files.resolve_range(range_header, d.size)
    except RangeNotSatisfiable as exc:
        raise RangeNotSatisfiable(size=d.size) from exc
    start, end = rng if rng else (0, d.size - 1)
    status = 206 if rng else 200
    if rng:
        headers["Content-Range"] = f"bytes {start}-{end}/{d.size}"
    headers["Content-Length"] = str(max(0, end - start + 1))
    if head:
        return Response(status_code=status, headers=headers, media_type=d.mime_type)
    body = ctx.files.stream(d, start, end)
    # Fetch and verify the first chunk before committing to a 200: a file with no readable
    # replica then gets a clean 503 instead of a truncated body.
    first = b""
    with contextlib.suppress(StopAsyncIteration):
        first = await anext(body)

    async def rest() -> AsyncIterator[bytes]:
        if first:
            yield first
        async for piece in body:
            yield piece

    return StreamingResponse(rest(), status_code=status, headers=headers, media_type=d.mime_type)


@router.get(
    "/files/{file_id}/download",
    responses={**E, **download_responses("The file's bytes")},
    response_class=Response,
)
@router.head(
    "/files/{file_id}/download",
    responses={**E, **download_responses("No body: the headers a GET would send")},
    response_class=Response,
    summary="A download's headers (size, type, checksum, ETag), reading no chunk",
)
async def download(
    request: Request, file_id: str, ctx: Ctx, user: CurrentUser, cond: DownloadConditions
) -> Response:
    d = await ctx.files.open_download(user.user_id, file_id)
    return await download_response(ctx, d, cond, head=request.method == "HEAD")


@router.get("/storage/usage", response_model=UsageOut, responses=E, tags=["storage"])
async def usage(ctx: Ctx, user: CurrentUser) -> UsageOut:
    u = await ctx.files.usage(user.user_id)
    return UsageOut(used=u.used, quota=u.quota, available=u.available, used_pct=u.used_pct)
