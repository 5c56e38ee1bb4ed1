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
from dfms.api.middleware import RequestContextMiddleware
from dfms.api.routers import auth, files, folders, health, multipart_uploads, search, versions
from dfms.config import Settings, load_settings
from dfms.context import AppContext
from dfms.observability import configure_logging
from dfms.workers.gc import scheduled_gc

API_PREFIX = "/api/v1"
SETTINGS_ENV = "DFMS_SERVE_SETTINGS"


def create_app(settings: Settings | None = None, *, ctx: AppContext | None = None) -> FastAPI:
    """Build the app. With ``ctx`` the caller owns the context; otherwise the app opens one from
    ``settings`` at startup and closes it at shutdown."""
    settings = settings or (ctx.settings if ctx else load_settings())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if ctx is not None:
            app.state.ctx = ctx
            yield
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
    app.add_middleware(RequestContextMiddleware)
    if settings.server.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.server.cors_origins,
            allow_credentials="*" not in settings.server.cors_origins,
            allow_methods=["*"],
            allow_headers=["*"],
            expose_headers=["ETag", "Content-Range", "X-Request-ID", "X-Checksum-SHA256"],
        )
    app.include_router(health.router, include_in_schema=False)
    api = APIRouter(prefix=API_PREFIX)
    api.include_router(health.router)
    api.include_router(auth.router)
    api.include_router(multipart_uploads.router)
    api.include_router(files.router)
    api.include_router(versions.router)
    api.include_router(folders.router)
    api.include_router(search.router)
    app.include_router(api)
    return app


def settings_to_env(settings: Settings) -> str:
    return json.dumps(settings.model_dump(mode="json"))


def app_from_env() -> FastAPI:
    """Factory for the ASGI server's worker: settings arrive as JSON in ``DFMS_SERVE_SETTINGS``."""
    raw = os.environ.get(SETTINGS_ENV)
    data: dict[str, Any] = json.loads(raw) if raw else {}
    settings = Settings(**data) if data else load_settings()
    configure_logging(settings.logging.level, settings.logging.format)
    return create_app(settings)
