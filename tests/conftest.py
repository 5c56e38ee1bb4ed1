"""Shared fixtures: real SQLite and PostgreSQL databases, settings, an application context and an
HTTP client bound to the app.

PostgreSQL is read from ``DFMS_TEST_POSTGRES_URL`` (default: the machine's server at
127.0.0.1:5432, user postgres). Each test session creates a fresh database and drops it at the end.
When the server is unreachable the PostgreSQL cases skip with the reason, except under
``CI=true``, where they fail.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import httpx
import pytest

from dfms.config import Settings, load_settings

PG_URL = os.environ.get(
    "DFMS_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = os.environ.get("DFMS_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _reachable(url: str, default_port: int) -> bool:
    u = urlparse(url.replace("+asyncpg", ""))
    try:
        with socket.create_connection((u.hostname or "127.0.0.1", u.port or default_port), 1.0):
            return True
    except OSError:
        return False


def require_service(name: str, url: str, port: int) -> None:
    if _reachable(url, port):
        return
    msg = f"{name} not reachable at {url}"
    if IN_CI:
        pytest.fail(f"{msg} (CI=true: service tests must run)")
    pytest.skip(msg)


@contextlib.contextmanager
def fresh_pg_database(prefix: str) -> Iterator[str]:
    """Create an empty PostgreSQL database, yield its URL, drop it afterwards."""
    require_service("PostgreSQL", PG_URL, 5432)
    import asyncpg

    admin = PG_URL.replace("postgresql+asyncpg://", "postgresql://")
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"

    async def run(sql: str) -> None:
        conn = await asyncpg.connect(admin)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(run(f'CREATE DATABASE "{name}"'))
    try:
        yield f"{PG_URL.rsplit('/', 1)[0]}/{name}"
    finally:
        asyncio.run(run(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """A fresh PostgreSQL database for this test session; its URL."""
    with fresh_pg_database("dfms_test") as url:
        yield url


async def _truncate_pg(url: str) -> None:
    from sqlalchemy import text

    from dfms.metadata.db import Database
    from dfms.metadata.migrate import upgrade
    from dfms.metadata.models import Base

    db = Database.from_url(url)
    try:
        await upgrade(db)
        tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
        async with db.write() as s:
            await s.execute(text(f"TRUNCATE {tables} CASCADE"))
    finally:
        await db.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each test using this runs once on SQLite (fresh file) and once on PostgreSQL (emptied)."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'meta.db'}"
    url: str = request.getfixturevalue("pg_database")
    asyncio.run(_truncate_pg(url))
    return url


SMALL_CHUNKS = {"min_size": 4096, "avg_size": 16384, "max_size": 65536}


@pytest.fixture
def make_settings(tmp_path: Path) -> Callable[..., Settings]:
    """Build test settings: a temp data dir, cheap bcrypt, small chunks (many per small file),
    rate limiting off."""

    def make(**overrides: Any) -> Settings:
        base: dict[str, Any] = {
            "data_dir": tmp_path / "data",
            "auth": {"bcrypt_rounds": 4},
            "chunking": dict(SMALL_CHUNKS),
            "storage": {"fsync": "never"},
            # Off unless a test turns it on: suites that log in or upload many times per minute
            # would trip the default limits (tests/integration/test_api_ratelimit.py enables it).
            "ratelimit": {"enabled": False},
        }
        for k, v in overrides.items():
            if isinstance(v, dict) and isinstance(base.get(k), dict):
                base[k] = {**base[k], **v}
            else:
                base[k] = v
        return load_settings(None, overrides=base)

    return make


@pytest.fixture
async def ctx(make_settings: Callable[..., Settings], db_url: str) -> AsyncIterator[Any]:
    from dfms.context import AppContext

    context = await AppContext.open(make_settings(database={"url": db_url}))
    try:
        yield context
    finally:
        await context.aclose()


@pytest.fixture
async def client(ctx: Any) -> AsyncIterator[httpx.AsyncClient]:
    from dfms.api.app import create_app

    app = create_app(ctx=ctx)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
        yield c


async def register(
    client: httpx.AsyncClient, email: str = "alice@example.com", password: str = "securepass123"
) -> dict[str, str]:
    """Register a user; return Authorization headers."""
    r = await client.post(
        "/api/v1/auth/register",
        json={"email": email, "password": password, "display_name": email.split("@")[0]},
    )
    assert r.status_code == 201, r.text
    return {"Authorization": f"Bearer {r.json()['tokens']['access_token']}"}
