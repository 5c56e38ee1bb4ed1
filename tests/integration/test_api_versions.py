"""File versions end to end on SQLite and PostgreSQL: history, download of a version, delete,
restore (rollback), retention, and the usage and reference accounting of each."""

from __future__ import annotations

import hashlib
import os
import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import text, update

from tests.conftest import register
from tests.integration._refcounts import assert_accounting, chunk_refs
from tests.integration.test_api_files import API, chunk_files, upload


async def versions_of(client: httpx.AsyncClient, auth: dict[str, str], fid: str) -> list[Any]:
    r = await client.get(f"{API}/files/{fid}/versions", headers=auth)
    assert r.status_code == 200, r.text
    return list(r.json()["versions"])


async def used(client: httpx.AsyncClient, auth: dict[str, str]) -> int:
    return int((await client.get(f"{API}/storage/usage", headers=auth)).json()["used"])


async def three_versions(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> tuple[str, list[bytes]]:
    datas = [os.urandom(n) for n in (70_000, 90_000, 110_000)]
    ids = {(await upload(client, auth, d, name="doc.bin")).json()["file"]["id"] for d in datas}
    assert len(ids) == 1
    return ids.pop(), datas


async def test_list_versions_and_download_each(client: httpx.AsyncClient) -> None:
    """Versions are listed newest first with the current one flagged; each downloads with its
    own ETag, Range and If-None-Match like the current version."""
    auth = await register(client)
    fid, datas = await three_versions(client, auth)
    vs = await versions_of(client, auth, fid)
    assert [v["number"] for v in vs] == [3, 2, 1]
    assert [v["current"] for v in vs] == [True, False, False]
    assert [v["size"] for v in vs] == [110_000, 90_000, 70_000]
    assert vs[2]["checksum"] == hashlib.sha256(datas[0]).hexdigest()
    for n, data in enumerate(datas, start=1):
        r = await client.get(f"{API}/files/{fid}/versions/{n}/download", headers=auth)
        assert r.status_code == 200 and r.content == data
        assert r.headers["etag"] == f'"{hashlib.sha256(data).hexdigest()}"'
        assert r.headers["content-length"] == str(len(data))
    url = f"{API}/files/{fid}/versions/2/download"
    r = await client.get(url, headers={**auth, "Range": "bytes=1000-50999"})
    assert r.status_code == 206 and r.content == datas[1][1000:51000]
    assert r.headers["content-range"] == f"bytes 1000-50999/{len(datas[1])}"
    r = await client.get(url, headers={**auth, "Range": "bytes=200000-"})
    assert r.status_code == 416 and r.headers["content-range"] == f"bytes */{len(datas[1])}"
    etag = f'"{hashlib.sha256(datas[1]).hexdigest()}"'
    r = await client.get(url, headers={**auth, "If-None-Match": etag})
    assert r.status_code == 304


async def test_version_refusals(client: httpx.AsyncClient) -> None:
    """A missing version is 404 VERSION_NOT_FOUND; a number that is not a positive integer 400;
    someone else's file 404 FILE_NOT_FOUND for every version route."""
    alice = await register(client)
    bob = await register(client, "bob@example.com")
    fid, _ = await three_versions(client, alice)
    for method, path in (
        ("GET", "/versions/9/download"),
        ("DELETE", "/versions/9"),
        ("POST", "/versions/9/restore"),
    ):
        r = await client.request(method, f"{API}/files/{fid}{path}", headers=alice)
        assert r.status_code == 404 and r.json()["error"]["code"] == "VERSION_NOT_FOUND", path
    for bad in ("0", "-1", "abc", "1.5"):
        r = await client.get(f"{API}/files/{fid}/versions/{bad}/download", headers=alice)
        assert r.status_code == 400, bad
        r = await client.delete(f"{API}/files/{fid}/versions/{bad}", headers=alice)
        assert r.status_code == 400, bad
    for target in (fid, str(uuid.uuid4()), "garbage"):
        for method, path in (
            ("GET", "/versions"),
            ("GET", "/versions/1/download"),
            ("DELETE", "/versions/1"),
            ("POST", "/versions/1/restore"),
        ):
            r = await client.request(method, f"{API}/files/{target}{path}", headers=bob)
            assert r.status_code == 404 and r.json()["error"]["code"] == "FILE_NOT_FOUND"
    assert len(await versions_of(client, alice, fid)) == 3


async def test_delete_current_version_makes_previous_current(
    client: httpx.AsyncClient, ctx: Any
) -> None:
    """Deleting the current version makes the previous one current, gives its bytes back, and
    its number is never handed out again."""
    auth = await register(client)
    fid, datas = await three_versions(client, auth)
    assert await used(client, auth) == sum(map(len, datas))
    r = await client.delete(f"{API}/files/{fid}/versions/3", headers=auth)
    assert r.status_code == 204
    f = (await client.get(f"{API}/files/{fid}", headers=auth)).json()["file"]
    assert f["version"] == 2 and f["size"] == len(datas[1])
    assert f["checksum"] == hashlib.sha256(datas[1]).hexdigest()
    assert (await client.get(f"{API}/files/{fid}/download", headers=auth)).content == datas[1]
    assert await used(client, auth) == len(datas[0]) + len(datas[1])
    await assert_accounting(ctx)
    r = await upload(client, auth, b"next", name="doc.bin")
    assert r.json()["file"]["version"] == 4
    assert [v["number"] for v in await versions_of(client, auth, fid)] == [4, 2, 1]


async def test_delete_older_version_keeps_current(client: httpx.AsyncClient, ctx: Any) -> None:
    """Deleting a version other than the current one leaves the current one alone."""
    auth = await register(client)
    fid, datas = await three_versions(client, auth)
    assert (await client.delete(f"{API}/files/{fid}/versions/1", headers=auth)).status_code == 204
    vs = await versions_of(client, auth, fid)
    assert [(v["number"], v["current"]) for v in vs] == [(3, True), (2, False)]
    assert (await client.get(f"{API}/files/{fid}/download", headers=auth)).content == datas[2]
    r = await client.get(f"{API}/files/{fid}/versions/1/download", headers=auth)
    assert r.status_code == 404
    assert await used(client, auth) == len(datas[1]) + len(datas[2])
    await assert_accounting(ctx)


async def test_delete_only_version_deletes_file(client: httpx.AsyncClient, ctx: Any) -> None:
    """Deleting the only version deletes the file and releases everything it held."""
    auth = await register(client)
    data = os.urandom(80_000)
    fid = (await upload(client, auth, data, name="solo.bin")).json()["file"]["id"]
    assert (await client.delete(f"{API}/files/{fid}/versions/1", headers=auth)).status_code == 204
    assert (await client.get(f"{API}/files/{fid}", headers=auth)).status_code == 404
    assert (await client.get(f"{API}/files", headers=auth)).json()["total"] == 0
    assert await used(client, auth) == 0
    assert set((await chunk_refs(ctx)).values()) == {0}
    await assert_accounting(ctx)
    # The name is free again: a new upload is a new file.
    r = await upload(client, auth, data, name="solo.bin")
    assert r.json()["file"]["id"] != fid and r.json()["file"]["version"] == 1


async def test_restore_reuses_manifest(client: httpx.AsyncClient, ctx: Any) -> None:
    """Restoring version n makes a new current version with n's content that shares n's
    manifest: no chunk written, no chunk reference changed, the manifest counted once more;
    usage grows by the version's logical size."""
    auth = await register(client)
    fid, datas = await three_versions(client, auth)
    stored = len(chunk_files(ctx))
    refs = await chunk_refs(ctx)
    before_used = await used(client, auth)
    r = await client.post(f"{API}/files/{fid}/versions/1/restore", headers=auth)
    assert r.status_code == 201, r.text
    f = r.json()["file"]
    assert f["id"] == fid and f["version"] == 4 and f["size"] == len(datas[0])
    assert f["checksum"] == hashlib.sha256(datas[0]).hexdigest()
    assert f["new_chunks"] == 0 and f["dedup_chunks"] == f["chunk_count"]
    assert (await client.get(f"{API}/files/{fid}/download", headers=auth)).content == datas[0]
    assert len(chunk_files(ctx)) == stored
    assert await chunk_refs(ctx) == refs
    assert await used(client, auth) == before_used + len(datas[0])
    async with ctx.db.read() as s:
        rows = (
            await s.execute(
                text(
                    "SELECT v.number, m.ref_count FROM versions v JOIN manifests m"
                    " ON m.id = v.manifest_id ORDER BY v.number"
                )
            )
        ).all()
        manifests = {
            str(r[0]) for r in (await s.execute(text("SELECT manifest_id FROM versions"))).all()
        }
    assert [(n, ref) for n, ref in rows] == [(1, 2), (2, 1), (3, 1), (4, 2)]
    assert len(manifests) == 3
    await assert_accounting(ctx)
    # Deleting the original keeps the restored copy intact (the manifest is still referenced).
    assert (await client.delete(f"{API}/files/{fid}/versions/1", headers=auth)).status_code == 204
    assert await chunk_refs(ctx) == refs
    assert (await client.get(f"{API}/files/{fid}/download", headers=auth)).content == datas[0]
    await assert_accounting(ctx)


async def test_restore_respects_quota(client: httpx.AsyncClient, ctx: Any) -> None:
    """A restore that would cross the quota is refused with 413 QUOTA_EXCEEDED; nothing
    changes."""
    from dfms.metadata.models import User

    auth = await register(client)
    fid, datas = await three_versions(client, auth)
    async with ctx.db.write() as s:
        await s.execute(update(User).values(quota_bytes=sum(map(len, datas)) + 50_000))
    r = await client.post(f"{API}/files/{fid}/versions/1/restore", headers=auth)
    assert r.status_code == 413 and r.json()["error"]["code"] == "QUOTA_EXCEEDED"
    assert [v["number"] for v in await versions_of(client, auth, fid)] == [3, 2, 1]
    await assert_accounting(ctx)


@pytest.mark.parametrize("restore", [False, True])
async def test_retention_releases_oldest_versions(
    client: httpx.AsyncClient, ctx: Any, restore: bool
) -> None:
    """With retention N, a new version (upload or restore) releases the versions beyond the N
    newest in the same transaction: their usage and chunk references go."""
    ctx.uploads.retention = 3
    ctx.versions.retention = 3
    auth = await register(client)
    datas = [os.urandom(40_000 + i) for i in range(5)]
    fid = ""
    for d in datas:
        fid = (await upload(client, auth, d, name="r.bin")).json()["file"]["id"]
    assert [v["number"] for v in await versions_of(client, auth, fid)] == [5, 4, 3]
    assert await used(client, auth) == sum(map(len, datas[2:]))
    await assert_accounting(ctx)
    if restore:
        r = await client.post(f"{API}/files/{fid}/versions/3/restore", headers=auth)
        assert r.status_code == 201
        assert [v["number"] for v in await versions_of(client, auth, fid)] == [6, 5, 4]
        assert await used(client, auth) == len(datas[2]) + len(datas[3]) + len(datas[4])
        assert (await client.get(f"{API}/files/{fid}/download", headers=auth)).content == datas[2]
    await assert_accounting(ctx)
    for n in (1, 2):
        r = await client.get(f"{API}/files/{fid}/versions/{n}/download", headers=auth)
        assert r.status_code == 404


async def test_retention_default_is_50(ctx: Any) -> None:
    """The configured default keeps 50 versions per file."""
    assert ctx.settings.versions.retention == 50
    assert ctx.uploads.retention == 50 and ctx.versions.retention == 50
