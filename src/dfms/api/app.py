"""The FastAPI application factory. Routers stay thin: parse, call a service, serialise."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, FastAPI

from dfms import __version__
from dfms.api.errors import install_error_handlers
from dfms.api.limits import RequestLimitsMiddleware
from dfms.api.middleware import RequestContextMiddleware
from dfms.api.paths import API_PREFIX
from dfms.api.ratelimit import RATE_LIMIT_HEADERS, RateLimitMiddleware
from dfms.api.routers import (
    admin,
    auth,
    files,
    folders,
    health,
    metrics,
    multipart_uploads,
    search,
    versions,
    wellknown,
)
from dfms.api.schemas import error_responses
from dfms.config import ROLE_ENV, SETTINGS_ENV, ServerRole, Settings, load_settings
from dfms.context import AppContext
from dfms.observability import configure_logging
from dfms.workers.gc import scheduled_gc

#: What every rate-limited API route can also answer: a body stalled (408) or over
#: upload.max_json_body (413) and oversized headers (431), from RequestLimitsMiddleware; and a
#: rate limit that cannot be checked with ratelimit.fail_open false (503).
LIMITED = error_responses(408, 413, 431, 503)


def create_app(
    settings: Settings | None = None, *, ctx: AppContext | None = None, role: ServerRole = "serve"
) -> FastAPI:
    """Build the app. With ``ctx`` the caller owns the context; otherwise the app opens one from
    ``settings`` at startup and closes it at shutdown."""
    settings = settings or (ctx.settings if ctx else load_settings())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if ctx is not None:
            app.state.ctx = ctx
            yield
            return
        if role == "gateway":
            opened = await AppContext.open(settings, migrate=False, create_keys=False)
            app.state.ctx = opened
            try:
                yield
            finally:
                await opened.aclose()
            return
        opened = await AppContext.open(settings)
        app.state.ctx = opened
        try:
            # GC passes on a schedule (gc.interval), cancelled cleanly at shutdown.
            async with scheduled_gc(opened.gc, opened.settings.gc) as task:
                app.state.gc_task = task
                yield
        finally:
            await opened.aclose()

    app = FastAPI(
        title="DFMS",
        version=__version__,
        description="Distributed file storage: content-defined chunking, dedup, replication.",
        lifespan=lifespan,
        docs_url="/docs",
        openapi_url="/openapi.json",
        redoc_url=None,
    )
    if ctx is not None:
        app.state.ctx = ctx
    install_error_handlers(app)
    # Innermost first: size/time limits, then rate limits, then the request context (so the
    # 413/431/429 answers of the inner ones carry the request id and security headers).
    app.add_middleware(
        RequestLimitsMiddleware,
        max_header_bytes=settings.server.max_header_bytes,
        max_body=settings.upload.max_json_body,
        read_timeout=settings.server.read_timeout,
    )
    # Global and per-IP auth rate limits, X-RateLimit-* headers (dfms.api.ratelimit).
    app.add_middleware(RateLimitMiddleware)
    app.add_middleware(RequestContextMiddleware)
    if settings.server.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.server.cors_origins,
            allow_credentials="*" not in settings.server.cors_origins,
            allow_methods=["*"],
            allow_headers=["*"],
            expose_headers=[
                "ETag",
                "Content-Range",
                "X-Request-ID",
                "X-Checksum-SHA256",
                *RATE_LIMIT_HEADERS,
            ],
        )
    app.include_router(health.router, include_in_schema=False)
    app.include_router(metrics.router)
    app.include_router(wellknown.router)
    api = APIRouter(prefix=API_PREFIX)
    api.include_router(health.router)
    api.include_router(auth.router, responses=LIMITED)
    api.include_router(multipart_uploads.router, responses=LIMITED)
    api.include_router(files.router, responses=LIMITED)
    api.include_router(versions.router, responses=LIMITED)
    api.include_router(folders.router, responses=LIMITED)
    api.include_router(search.router, responses=LIMITED)
    api.include_router(admin.router, responses=LIMITED)
    app.include_router(api)
    return app


def app_from_env() -> FastAPI:
    """Factory for the ASGI server's worker: settings arrive as JSON in ``DFMS_SERVE_SETTINGS``."""
    raw = os.environ.get(SETTINGS_ENV)
    data: dict[str, Any] = json.loads(raw) if raw else {}
    settings = Settings(**data) if data else load_settings()
    configure_logging(settings.logging.level, settings.logging.format)
    role: ServerRole = "gateway" if os.environ.get(ROLE_ENV) == "gateway" else "serve"
    return create_app(settings, role=role)
