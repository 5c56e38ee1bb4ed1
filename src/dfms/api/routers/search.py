"""``/search`` and ``PUT /files/{id}/metadata`` (user metadata is what search matches besides
names)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Body, Query

from dfms.api.deps import Ctx, CurrentUser
from dfms.api.routers.files import _out as file_out
from dfms.api.routers.folders import entry_out
from dfms.api.schemas import FileEnvelope, SearchOut, error_responses
from dfms.services.search import MAX_META_KEY, MAX_META_KEYS, MAX_META_VALUE, MAX_SIZE

router = APIRouter(tags=["search"])
E = error_responses(400, 401, 404, 429)


@router.get("/search", response_model=SearchOut, responses=E)
async def search(
    ctx: Ctx,
    user: CurrentUser,
    q: Annotated[
        str | None,
        Query(
            max_length=1024,
            description="Case-insensitive substring of the name or the metadata (% and _ literal)",
        ),
    ] = None,
    type: Annotated[
        str | None,
        Query(
            max_length=255,
            description="file, folder, a MIME type (image/png) or a top-level type (image)",
        ),
    ] = None,
    min_size: Annotated[
        int | None, Query(ge=0, le=MAX_SIZE, description="Files of at least this size")
    ] = None,
    max_size: Annotated[
        int | None, Query(ge=0, le=MAX_SIZE, description="Files of at most this size")
    ] = None,
    after: Annotated[
        datetime | None, Query(description="Modified at or after (ISO 8601; UTC if no zone)")
    ] = None,
    before: Annotated[
        datetime | None, Query(description="Modified before (ISO 8601; UTC if no zone)")
    ] = None,
    folder_id: Annotated[
        str | None, Query(description="Only entries inside this folder's subtree")
    ] = None,
    page: Annotated[int, Query(ge=1, le=1_000_000)] = 1,
    page_size: Annotated[int, Query(ge=1, le=1000)] = 50,
) -> SearchOut:
    p = await ctx.search.search(
        user.user_id,
        q=q,
        entry_type=type,
        min_size=min_size,
        max_size=max_size,
        after=after,
        before=before,
        folder_id=folder_id,
        page=page,
        page_size=page_size,
    )
    return SearchOut(
        results=[entry_out(e) for e in p.items],
        total=p.total,
        total_exact=p.total_exact,
        page=p.page,
        page_size=p.page_size,
        total_pages=p.total_pages,
    )


@router.put(
    "/files/{file_id}/metadata",
    response_model=FileEnvelope,
    responses=E,
    tags=["files"],
    summary="Replace a file's user metadata (string keys and values; {} clears it)",
)
async def set_metadata(
    file_id: str,
    metadata: Annotated[
        dict[str, str],
        Body(
            description="At most 64 keys; keys 1-128 characters, values up to 1024; no NUL "
            "or lone surrogates, no control characters in keys",
            examples=[{"project": "apollo", "owner": "alice"}],
            json_schema_extra={
                "maxProperties": MAX_META_KEYS,
                "propertyNames": {"minLength": 1, "maxLength": MAX_META_KEY},
                "additionalProperties": {"type": "string", "maxLength": MAX_META_VALUE},
            },
        ),
    ],
    ctx: Ctx,
    user: CurrentUser,
) -> FileEnvelope:
    return FileEnvelope(
        file=file_out(await ctx.search.set_metadata(user.user_id, file_id, metadata))
    )
