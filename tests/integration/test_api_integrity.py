"""Downloads never serve a byte that does not verify; replicas fall back; repair is reported."""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import register
from tests.integration.test_api_files import API, upload


def chunk_paths(ctx: Any) -> dict[str, list[Path]]:
    out: dict[str, list[Path]] = {}
    for n in ctx.settings.node_list():
        for p in Path(n.path).rglob("*"):
            if p.is_file() and len(p.name) == 64:
                out.setdefault(p.name, []).append(p)
    return out


def flip(path: Path, at: int = 10) -> None:
    raw = bytearray(path.read_bytes())
    raw[at] ^= 0xFF
    path.write_bytes(bytes(raw))


async def manifest_hashes(ctx: Any, file_id: str) -> list[str]:
    d = await ctx.files.open_download(next(iter([u async for u in _user_ids(ctx)])), file_id)
    from dfms.metadata.repositories import ManifestRepository

    async with ctx.db.read() as s:
        rows = await ManifestRepository(s).chunks(d.manifest_id, limit=10_000)
    return [r.chunk_hash for r in rows]


async def _user_ids(ctx: Any) -> Any:
    from sqlalchemy import select

    from dfms.metadata.models import User

    async with ctx.db.read() as s:
        for uid in (await s.execute(select(User.id))).scalars():
            yield uid


async def test_corrupt_first_chunk_single_replica_is_503(
    client: httpx.AsyncClient, ctx: Any
) -> None:
    """RF 1: when the first chunk's only copy is corrupt the download is a clean 503, not bytes."""
    auth = await register(client)
    data = os.urandom(200_000)
    f = (await upload(client, auth, data)).json()["file"]
    hashes = await manifest_hashes(ctx, f["id"])
    flip(chunk_paths(ctx)[hashes[0]][0])
    r = await client.get(f"{API}/files/{f['id']}/download", headers=auth)
    assert r.status_code == 503
    assert r.json()["error"]["code"] == "CHUNK_UNAVAILABLE"
    assert hashes[0] in ctx.repair


@pytest.fixture
async def ctx3(make_settings: Any, db_url: str) -> Any:
    from dfms.context import AppContext

    c = await AppContext.open(
        make_settings(database={"url": db_url}, storage={"node_count": 3, "replication": 3})
    )
    yield c
    await c.aclose()


async def test_one_bad_replica_never_fails_a_download(ctx3: Any) -> None:
    """RF 3: with one replica of every chunk corrupt or deleted, downloads stay byte-exact and the
    bad replicas are reported for repair."""
    from dfms.api.app import create_app

    app = create_app(ctx=ctx3)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        auth = await register(c)
        data = os.urandom(250_000)
        f = (await upload(c, auth, data)).json()["file"]
        paths = chunk_paths(ctx3)
        assert all(len(p) == 3 for p in paths.values())
        for i, (_h, copies) in enumerate(sorted(paths.items())):
            if i % 2:
                flip(copies[i % 3])
            else:
                copies[i % 3].unlink()
        r = await c.get(f"{API}/files/{f['id']}/download", headers=auth)
        assert r.status_code == 200 and r.content == data
        r = await c.get(
            f"{API}/files/{f['id']}/download", headers={**auth, "Range": "bytes=1000-200000"}
        )
        assert r.status_code == 206 and r.content == data[1000:200001]
        reported = {h for h in paths if h in ctx3.repair}
        assert reported, "bad replicas were not reported for repair"


async def test_head_download_reads_no_chunk(client: httpx.AsyncClient, ctx: Any) -> None:
    """HEAD answers with exactly the headers of the GET (size, type, checksum, ETag, range) and
    no body, without reading a chunk: with every chunk file gone it still answers 200 (the GET
    is a 503), and a version's HEAD likewise. Missing files are 404 with no body."""
    auth = await register(client)
    data = os.urandom(300_000)
    f = (await upload(client, auth, data, name="head.pdf")).json()["file"]
    url = f"{API}/files/{f['id']}/download"
    get = await client.get(url, headers=auth)
    for paths in chunk_paths(ctx).values():
        for p in paths:
            p.unlink()
    head = await client.head(url, headers=auth)
    assert head.status_code == 200 and head.content == b""
    for name in ("content-length", "content-type", "etag", "x-checksum-sha256", "last-modified"):
        assert head.headers[name] == get.headers[name], name
    assert head.headers["content-length"] == str(len(data))
    ranged = await client.head(url, headers={**auth, "Range": "bytes=10-19"})
    assert (
        ranged.status_code == 206 and ranged.headers["content-range"] == f"bytes 10-19/{len(data)}"
    )
    assert ranged.headers["content-length"] == "10"
    cached = await client.head(url, headers={**auth, "If-None-Match": get.headers["etag"]})
    assert cached.status_code == 304
    version = await client.head(f"{API}/files/{f['id']}/versions/1/download", headers=auth)
    assert version.status_code == 200 and version.headers["content-length"] == str(len(data))
    assert (await client.get(url, headers=auth)).status_code == 503
    missing = await client.head(f"{API}/files/{uuid.uuid4()}/download", headers=auth)
    assert missing.status_code == 404 and missing.content == b""
    assert (await client.head(url)).status_code == 401
