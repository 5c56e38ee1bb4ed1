"""``/files/upload/multipart``: resumable uploads in parts (init, part, status, complete, abort).
Only the session's owner may touch it; anyone else gets 404 as for a missing session."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request, Response

from dfms.api.deps import Ctx, CurrentUser
from dfms.api.routers.files import (
    CHECKSUM_HEADERS,
    _body,
    declared_sha256,
    refuse_declared_oversize,
)
from dfms.api.routers.files import _out as file_out
from dfms.api.schemas import (
    FileEnvelope,
    MultipartInitIn,
    MultipartInitOut,
    MultipartStatusOut,
    PartOut,
    PartUploadOut,
    error_responses,
)
from dfms.services.multipart import MAX_PARTS, PartView

router = APIRouter(prefix="/files/upload/multipart", tags=["multipart"])
E = error_responses(400, 401, 404, 408, 409, 413, 429, 503)


def _part(p: PartView) -> PartOut:
    return PartOut(
        number=p.number,
        size=p.size,
        checksum=p.checksum,
        chunk_count=p.chunk_count,
        created_at=p.created_at,
    )


@router.post("/init", status_code=201, response_model=MultipartInitOut, responses=E)
async def init(body: MultipartInitIn, ctx: Ctx, user: CurrentUser) -> MultipartInitOut:
    s = await ctx.multipart.init(
        user.user_id,
        file_name=body.file_name,
        mime_type=body.mime_type,
        file_size=body.file_size,
        sha256=body.sha256,
        folder_id=body.folder_id or None,
    )
    return MultipartInitOut(upload_id=s.upload_id, file_name=s.file_name, expires_at=s.expires_at)


@router.put(
    "/{upload_id}/part/{number}",
    response_model=PartUploadOut,
    responses=E,
    openapi_extra={
        "parameters": CHECKSUM_HEADERS,
        "requestBody": {
            "required": True,
            "content": {
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
            },
        },
    },
    summary="Upload part n (raw body); sending a part again replaces it",
)
async def put_part(
    upload_id: str,
    number: Annotated[int, Path(ge=1, le=MAX_PARTS)],
    request: Request,
    ctx: Ctx,
    user: CurrentUser,
) -> PartUploadOut:
    refuse_declared_oversize(request, ctx.settings.upload.max_size)
    expected = declared_sha256(request, form=False)
    receipt = await ctx.multipart.put_part(
        user.user_id,
        upload_id,
        number,
        _body(request, ctx.settings.server.read_timeout),
        expected_sha256=expected,
    )
    return PartUploadOut(
        upload_id=receipt.upload_id,
        part=_part(receipt.part),
        new_chunks=receipt.new_chunks,
        dedup_chunks=receipt.dedup_chunks,
    )


@router.get("/{upload_id}", response_model=MultipartStatusOut, responses=E)
async def status(upload_id: str, ctx: Ctx, user: CurrentUser) -> MultipartStatusOut:
    s = await ctx.multipart.status(user.user_id, upload_id)
    return MultipartStatusOut(
        upload_id=s.upload_id,
        file_name=s.file_name,
        folder_id=s.folder_id,
        mime_type=s.mime_type,
        file_size=s.file_size,
        sha256=s.sha256,
        created_at=s.created_at,
        expires_at=s.expires_at,
        parts=[_part(p) for p in s.parts],
        received_bytes=s.received_bytes,
    )


@router.post(
    "/{upload_id}/complete",
    status_code=201,
    response_model=FileEnvelope,
    responses=E,
    summary="Assemble parts 1..n into the file (a new version when the name exists)",
)
async def complete(upload_id: str, ctx: Ctx, user: CurrentUser) -> FileEnvelope:
    return FileEnvelope(file=file_out(await ctx.multipart.complete(user.user_id, upload_id)))


@router.delete("/{upload_id}", status_code=204, responses=E, summary="Abort: release all parts")
async def abort(upload_id: str, ctx: Ctx, user: CurrentUser) -> Response:
    await ctx.multipart.abort(user.user_id, upload_id)
    return Response(status_code=204)
