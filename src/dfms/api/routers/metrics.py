"""``GET /metrics``: the context's Prometheus metrics in the text exposition format."""

from __future__ import annotations

from fastapi import APIRouter, Response

from dfms.api.deps import Ctx

router = APIRouter(tags=["metrics"])


@router.get("/metrics", include_in_schema=False)
async def metrics(ctx: Ctx) -> Response:
    return Response(ctx.metrics.render(), media_type=ctx.metrics.content_type)
