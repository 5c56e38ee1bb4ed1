"""``/files/{id}/versions``: history, download of a version, delete, restore (rollback)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request, Response

from dfms.api.deps import Ctx, CurrentUser
from dfms.api.routers.files import DownloadConditions, download_response
from dfms.api.routers.files import _out as file_out
from dfms.api.schemas import (
    FileEnvelope,
    VersionListOut,
    VersionOut,
    download_responses,
    error_responses,
)
from dfms.errors import FileNotFound
from dfms.services.names import parse_id

router = APIRouter(tags=["versions"])
E = error_responses(400, 401, 404, 413, 429)
Number = Annotated[int, Path(ge=1, le=2_000_000_000)]
DOWNLOAD_ERRORS = error_responses(400, 401, 404, 416, 429, 503)


@router.get("/files/{file_id}/versions", response_model=VersionListOut, responses=E)
async def list_versions(file_id: str, ctx: Ctx, user: CurrentUser) -> VersionListOut:
    versions = await ctx.versions.list(user.user_id, file_id)
    return VersionListOut(
        file_id=parse_id(file_id, FileNotFound),
        versions=[
            VersionOut(
                number=v.number,
                size=v.size,
                checksum=v.checksum,
                mime_type=v.mime_type,
                chunk_count=v.chunk_count,
                created_at=v.created_at,
                current=v.current,
            )
            for v in versions
        ],
    )


@router.get(
    "/files/{file_id}/versions/{number}/download",
    responses={**DOWNLOAD_ERRORS, **download_responses("The version's bytes")},
    response_class=Response,
)
@router.head(
    "/files/{file_id}/versions/{number}/download",
    responses={**DOWNLOAD_ERRORS, **download_responses("No body: the headers a GET would send")},
    response_class=Response,
    summary="A version download's headers, reading no chunk",
)
async def download_version(
    request: Request,
    file_id: str,
    number: Number,
    ctx: Ctx,
    user: CurrentUser,
    cond: DownloadConditions,
) -> Response:
    d = await ctx.files.open_download(user.user_id, file_id, version=number)
    return await download_response(ctx, d, cond, head=request.method == "HEAD")


@router.delete(
    "/files/{file_id}/versions/{number}",
    status_code=204,
    responses=E,
    summary="Delete a version (the previous one becomes current; the only one deletes the file)",
)
async def delete_version(file_id: str, number: Number, ctx: Ctx, user: CurrentUser) -> Response:
    await ctx.versions.delete(user.user_id, file_id, number)
    return Response(status_code=204)


@router.post(
    "/files/{file_id}/versions/{number}/restore",
    status_code=201,
    response_model=FileEnvelope,
    responses=E,
    summary="Make a new current version with this version's content (no bytes copied)",
)
async def restore_version(
    file_id: str, number: Number, ctx: Ctx, user: CurrentUser
) -> FileEnvelope:
    return FileEnvelope(file=file_out(await ctx.versions.restore(user.user_id, file_id, number)))
