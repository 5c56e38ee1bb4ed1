"""``/folders`` and the tree operations on files: create, browse, rename, move, delete."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response

from dfms.api.deps import Ctx, CurrentUser
from dfms.api.routers.files import _out as file_out
from dfms.api.schemas import (
    EntryOut,
    FileEnvelope,
    FolderContentsOut,
    FolderCreateIn,
    FolderEnvelope,
    FolderOut,
    MoveIn,
    RenameIn,
    error_responses,
)
from dfms.services.folders import EntryView, FolderPage, FolderView

router = APIRouter(tags=["folders"])
E = error_responses(400, 401, 404, 409, 429)

Page = Annotated[int, Query(ge=1, le=1_000_000)]
PageSize = Annotated[int, Query(ge=1, le=1000)]


def folder_out(f: FolderView) -> FolderOut:
    return FolderOut(
        id=f.id,
        name=f.name,
        parent_id=f.parent_id,
        created_at=f.created_at,
        updated_at=f.updated_at,
    )


def entry_out(e: EntryView) -> EntryOut:
    return EntryOut(
        id=e.id,
        type="folder" if e.type == "folder" else "file",
        name=e.name,
        parent_id=e.parent_id,
        size=e.size,
        mime_type=e.mime_type,
        checksum=e.checksum,
        version=e.version,
        metadata=e.metadata,
        created_at=e.created_at,
        updated_at=e.updated_at,
    )


def _contents(p: FolderPage) -> FolderContentsOut:
    return FolderContentsOut(
        folder=folder_out(p.folder),
        entries=[entry_out(e) for e in p.entries],
        total=p.total,
        page=p.page,
        page_size=p.page_size,
        total_pages=p.total_pages,
    )


@router.post("/folders", status_code=201, response_model=FolderEnvelope, responses=E)
async def create_folder(body: FolderCreateIn, ctx: Ctx, user: CurrentUser) -> FolderEnvelope:
    folder = await ctx.folders.create(user.user_id, body.name, body.parent_id or None)
    return FolderEnvelope(folder=folder_out(folder))


@router.get(
    "/folders/root",
    response_model=FolderContentsOut,
    responses=E,
    summary="The user's root folder (its id) and a page of its contents",
)
async def root_folder(
    ctx: Ctx, user: CurrentUser, page: Page = 1, page_size: PageSize = 100
) -> FolderContentsOut:
    return _contents(await ctx.folders.contents(user.user_id, None, page, page_size))


@router.get(
    "/folders/{folder_id}/contents",
    response_model=FolderContentsOut,
    responses=E,
    summary="A page of a folder's entries: folders first, then files, each by name",
)
async def folder_contents(
    folder_id: str, ctx: Ctx, user: CurrentUser, page: Page = 1, page_size: PageSize = 100
) -> FolderContentsOut:
    target = None if folder_id == "root" else folder_id
    return _contents(await ctx.folders.contents(user.user_id, target, page, page_size))


@router.patch("/folders/{folder_id}", response_model=FolderEnvelope, responses=E)
async def rename_folder(
    folder_id: str, body: RenameIn, ctx: Ctx, user: CurrentUser
) -> FolderEnvelope:
    folder = await ctx.folders.rename_folder(user.user_id, folder_id, body.name)
    return FolderEnvelope(folder=folder_out(folder))


@router.put("/folders/{folder_id}/move", response_model=FolderEnvelope, responses=E)
async def move_folder(folder_id: str, body: MoveIn, ctx: Ctx, user: CurrentUser) -> FolderEnvelope:
    folder = await ctx.folders.move_folder(user.user_id, folder_id, body.new_parent_id or None)
    return FolderEnvelope(folder=folder_out(folder))


@router.delete(
    "/folders/{folder_id}",
    status_code=204,
    responses=E,
    summary="Delete a folder and everything in it (requires confirm=true)",
)
async def delete_folder(
    folder_id: str, ctx: Ctx, user: CurrentUser, confirm: bool = False
) -> Response:
    await ctx.folders.delete(user.user_id, folder_id, confirm=confirm)
    return Response(status_code=204)


@router.patch("/files/{file_id}", response_model=FileEnvelope, responses=E, tags=["files"])
async def rename_file(file_id: str, body: RenameIn, ctx: Ctx, user: CurrentUser) -> FileEnvelope:
    return FileEnvelope(
        file=file_out(await ctx.folders.rename_file(user.user_id, file_id, body.name))
    )


@router.put("/files/{file_id}/move", response_model=FileEnvelope, responses=E, tags=["files"])
async def move_file(file_id: str, body: MoveIn, ctx: Ctx, user: CurrentUser) -> FileEnvelope:
    view = await ctx.folders.move_file(user.user_id, file_id, body.new_parent_id or None)
    return FileEnvelope(file=file_out(view))
