"""Multipart upload sessions end to end on SQLite and PostgreSQL: init, parts in any order and
concurrently, re-sent parts, status, complete, abort, expiry, ownership, size and quota."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import uuid
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import update

from tests.conftest import register
from tests.integration._refcounts import assert_accounting, chunk_refs
from tests.integration.test_api_files import API, upload
from tests.integration.test_api_folders import mkdir

MP = f"{API}/files/upload/multipart"
MIN_PART = 64 * 1024


@pytest.fixture(autouse=True)
def small_parts(ctx: Any) -> None:
    """Parts of 64 KiB and more (instead of 5 MiB) keep these tests small."""
    ctx.multipart.min_part_size = MIN_PART


async def init(client: httpx.AsyncClient, auth: dict[str, str], **body: Any) -> str:
    r = await client.post(f"{MP}/init", json={"file_name": "big.bin", **body}, headers=auth)
    assert r.status_code == 201, r.text
    return str(r.json()["upload_id"])


async def put(
    client: httpx.AsyncClient, auth: dict[str, str], uid: str, n: int | str, data: bytes
) -> httpx.Response:
    return await client.put(
        f"{MP}/{uid}/part/{n}",
        content=data,
        headers={**auth, "Content-Type": "application/octet-stream"},
    )


async def complete(client: httpx.AsyncClient, auth: dict[str, str], uid: str) -> httpx.Response:
    return await client.post(f"{MP}/{uid}/complete", headers=auth)


def parts_of(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


async def test_parts_in_any_order_concurrently_then_complete(
    client: httpx.AsyncClient, ctx: Any
) -> None:
    """Parts sent out of order and concurrently assemble into the file: same bytes, the SHA-256
    of the whole, logical usage; the session is gone afterwards and accounting is exact."""
    auth = await register(client)
    data = os.urandom(3 * 100_000 + 12_345)
    parts = parts_of(data, 100_000)
    uid = await init(client, auth, file_size=len(data), mime_type="video/mp4")
    order = [4, 2, 1, 3]
    rs = await asyncio.gather(*(put(client, auth, uid, n, parts[n - 1]) for n in order))
    for n, r in zip(order, rs, strict=True):
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["part"]["number"] == n and body["part"]["size"] == len(parts[n - 1])
        assert body["part"]["checksum"] == hashlib.sha256(parts[n - 1]).hexdigest()
    r = await client.get(f"{MP}/{uid}", headers=auth)
    assert r.status_code == 200
    st = r.json()
    assert [p["number"] for p in st["parts"]] == [1, 2, 3, 4]
    assert st["received_bytes"] == len(data) and st["file_name"] == "big.bin"
    assert st["file_size"] == len(data)
    await assert_accounting(ctx)

    r = await complete(client, auth, uid)
    assert r.status_code == 201, r.text
    f = r.json()["file"]
    assert f["size"] == len(data) and f["checksum"] == hashlib.sha256(data).hexdigest()
    assert f["name"] == "big.bin" and f["version"] == 1 and f["mime_type"] == "video/mp4"
    r = await client.get(f"{API}/files/{f['id']}/download", headers=auth)
    assert r.content == data and r.headers["etag"] == f'"{f["checksum"]}"'
    r = await client.get(
        f"{API}/files/{f['id']}/download", headers={**auth, "Range": "bytes=99990-100020"}
    )
    assert r.status_code == 206 and r.content == data[99990:100021]
    assert (await client.get(f"{MP}/{uid}", headers=auth)).status_code == 404
    assert (await complete(client, auth, uid)).status_code == 404
    usage = (await client.get(f"{API}/storage/usage", headers=auth)).json()
    assert usage["used"] == len(data)
    await assert_accounting(ctx)


async def test_same_file_checksum_and_dedup_as_single_upload(
    client: httpx.AsyncClient, ctx: Any
) -> None:
    """A multipart upload gives the same file and checksum as a single upload of the bytes and
    deduplicates the same way: parts whose bytes are stored add no chunk, a second identical
    multipart upload writes nothing new, and reference counts count every occurrence."""
    auth = await register(client)
    data = os.urandom(250_000)
    parts = parts_of(data, 100_000)
    single = (await upload(client, auth, parts[0], name="part1-alone.bin")).json()["file"]
    uid = await init(client, auth)
    receipts = [(await put(client, auth, uid, n, p)).json() for n, p in enumerate(parts, 1)]
    assert receipts[0]["new_chunks"] == 0
    assert receipts[0]["dedup_chunks"] == single["chunk_count"]
    first = (await complete(client, auth, uid)).json()["file"]
    whole = (await upload(client, auth, data, name="single.bin")).json()["file"]
    assert first["checksum"] == whole["checksum"] == hashlib.sha256(data).hexdigest()
    assert first["size"] == whole["size"]
    assert first["new_chunks"] == sum(r["new_chunks"] for r in receipts)
    assert first["new_chunks"] + first["dedup_chunks"] == first["chunk_count"]

    uid2 = await init(client, auth, file_name="again.bin")
    for n, p in enumerate(parts, 1):
        assert (await put(client, auth, uid2, n, p)).json()["new_chunks"] == 0
    again = (await complete(client, auth, uid2)).json()["file"]
    assert again["new_chunks"] == 0 and again["dedup_chunks"] == again["chunk_count"]
    assert again["chunk_count"] == first["chunk_count"]
    for fid in (first["id"], again["id"], whole["id"]):
        assert (await client.get(f"{API}/files/{fid}/download", headers=auth)).content == data
    usage = (await client.get(f"{API}/storage/usage", headers=auth)).json()
    assert usage["used"] == len(parts[0]) + 3 * len(data)
    await assert_accounting(ctx)


async def test_resent_part_last_one_wins(client: httpx.AsyncClient, ctx: Any) -> None:
    """Sending a part again replaces it: the last one wins, and the replaced part's chunk
    references are released at once."""
    auth = await register(client)
    uid = await init(client, auth)
    old, new, tail = os.urandom(100_000), os.urandom(100_000), os.urandom(10)
    await put(client, auth, uid, 1, old)
    old_refs = {h for h, n in (await chunk_refs(ctx)).items() if n > 0}
    await put(client, auth, uid, 1, new)
    await put(client, auth, uid, 2, tail)
    refs = await chunk_refs(ctx)
    assert all(refs[h] == 0 for h in old_refs)
    await assert_accounting(ctx)
    st = (await client.get(f"{MP}/{uid}", headers=auth)).json()
    assert st["parts"][0]["checksum"] == hashlib.sha256(new).hexdigest()
    f = (await complete(client, auth, uid)).json()["file"]
    assert f["checksum"] == hashlib.sha256(new + tail).hexdigest()
    assert (await client.get(f"{API}/files/{f['id']}/download", headers=auth)).content == new + tail
    await assert_accounting(ctx)


async def test_part_resent_during_completion_is_noticed(
    client: httpx.AsyncClient, ctx: Any
) -> None:
    """If a part is re-sent while completion computes the checksum, completion notices at commit
    and starts over with the new part: the file never mixes old bytes and a new checksum."""
    auth = await register(client)
    uid = await init(client, auth)
    p1, p2, p2b = os.urandom(100_000), os.urandom(70_000), os.urandom(80_000)
    await put(client, auth, uid, 1, p1)
    await put(client, auth, uid, 2, p2)
    original = ctx.multipart._assemble
    calls = 0

    async def assemble_then_resend(*args: Any) -> Any:
        nonlocal calls
        calls += 1
        staged = await original(*args)
        if calls == 1:
            assert (await put(client, auth, uid, 2, p2b)).status_code == 200
        return staged

    ctx.multipart._assemble = assemble_then_resend
    r = await complete(client, auth, uid)
    assert r.status_code == 201, r.text
    assert calls == 2
    f = r.json()["file"]
    assert f["checksum"] == hashlib.sha256(p1 + p2b).hexdigest()
    assert (await client.get(f"{API}/files/{f['id']}/download", headers=auth)).content == p1 + p2b
    await assert_accounting(ctx)


@pytest.mark.parametrize("n", ["0", "10001", "-1", "x", "1.5"])
async def test_part_number_out_of_range_is_400(client: httpx.AsyncClient, n: str) -> None:
    """Part numbers are integers 1..10000; anything else is 400."""
    auth = await register(client)
    uid = await init(client, auth)
    r = await put(client, auth, uid, n, b"data")
    assert r.status_code == 400 and r.json()["error"]["code"] == "VALIDATION_FAILED"


async def test_part_numbers_at_the_limits(client: httpx.AsyncClient) -> None:
    """Part 10000 is accepted (and completing with only it is a gap at part 1)."""
    auth = await register(client)
    uid = await init(client, auth)
    assert (await put(client, auth, uid, 10000, b"last")).status_code == 200
    r = await complete(client, auth, uid)
    assert r.status_code == 400 and "part 1 " in r.json()["error"]["message"]


async def test_complete_refusals(client: httpx.AsyncClient, ctx: Any) -> None:
    """Completing with a gap, with no parts, with a part other than the last below the minimum,
    or with a size other than the announced file_size is 400; the session stays usable."""
    auth = await register(client)
    uid = await init(client, auth)
    r = await complete(client, auth, uid)
    assert r.status_code == 400 and "no parts" in r.json()["error"]["message"]
    await put(client, auth, uid, 1, os.urandom(MIN_PART))
    await put(client, auth, uid, 3, os.urandom(100))
    r = await complete(client, auth, uid)
    assert r.status_code == 400 and "part 2 is missing" in r.json()["error"]["message"]
    await put(client, auth, uid, 2, os.urandom(MIN_PART - 1))
    r = await complete(client, auth, uid)
    assert r.status_code == 400 and "part 2 has" in r.json()["error"]["message"]
    await put(client, auth, uid, 2, os.urandom(MIN_PART))
    assert (await complete(client, auth, uid)).status_code == 201

    uid = await init(client, auth, file_name="sized.bin", file_size=1000)
    await put(client, auth, uid, 1, os.urandom(999))
    r = await complete(client, auth, uid)
    assert r.status_code == 400 and "file_size" in r.json()["error"]["message"]
    await put(client, auth, uid, 1, os.urandom(1000))
    assert (await complete(client, auth, uid)).status_code == 201
    await assert_accounting(ctx)


async def test_only_the_owner_touches_a_session(client: httpx.AsyncClient, ctx: Any) -> None:
    """Another user gets 404 for part, status, complete and abort of a session, exactly like
    for a missing one, before any of the body is stored; the owner's session is unaffected."""
    alice = await register(client)
    bob = await register(client, "bob@example.com")
    uid = await init(client, alice)
    await put(client, alice, uid, 1, b"alice's bytes")
    before = await chunk_refs(ctx)
    bodies = set()
    for target in (uid, str(uuid.uuid4()), "not-a-uuid"):
        for method, path, content in (
            ("PUT", f"/{target}/part/1", b"bob's bytes"),
            ("PUT", f"/{target}/part/2", b"more"),
            ("GET", f"/{target}", None),
            ("POST", f"/{target}/complete", None),
            ("DELETE", f"/{target}", None),
        ):
            r = await client.request(method, f"{MP}{path}", content=content, headers=bob)
            assert r.status_code == 404, (method, path)
            err = r.json()["error"]
            bodies.add((err["code"], err["message"]))
    assert bodies == {("UPLOAD_NOT_FOUND", "upload session not found")}
    assert await chunk_refs(ctx) == before
    st = (await client.get(f"{MP}/{uid}", headers=alice)).json()
    assert [p["size"] for p in st["parts"]] == [len(b"alice's bytes")]
    r = await complete(client, alice, uid)
    assert r.status_code == 201
    assert r.json()["file"]["checksum"] == hashlib.sha256(b"alice's bytes").hexdigest()


async def test_abort_releases_parts(client: httpx.AsyncClient, ctx: Any) -> None:
    """Abort deletes the session and releases every part's chunk references."""
    auth = await register(client)
    uid = await init(client, auth)
    await put(client, auth, uid, 1, os.urandom(100_000))
    await put(client, auth, uid, 2, os.urandom(50_000))
    refs = await chunk_refs(ctx)
    assert refs and all(n >= 1 for n in refs.values())  # pinned while the session lives
    assert (await client.delete(f"{MP}/{uid}", headers=auth)).status_code == 204
    assert set((await chunk_refs(ctx)).values()) == {0}
    assert (await client.get(f"{MP}/{uid}", headers=auth)).status_code == 404
    assert (await client.delete(f"{MP}/{uid}", headers=auth)).status_code == 404
    assert (await put(client, auth, uid, 3, b"late")).status_code == 404
    await assert_accounting(ctx)


async def test_parts_pin_chunks_that_were_unreferenced(client: httpx.AsyncClient, ctx: Any) -> None:
    """A part that deduplicates against chunks no file references any more (awaiting GC) takes
    references on them again, so GC cannot take them while the session lives."""
    auth = await register(client)
    data = os.urandom(120_000)
    fid = (await upload(client, auth, data, name="gone.bin")).json()["file"]["id"]
    await client.delete(f"{API}/files/{fid}", headers=auth)
    assert set((await chunk_refs(ctx)).values()) == {0}
    uid = await init(client, auth)
    r = await put(client, auth, uid, 1, data)
    assert r.json()["new_chunks"] == 0
    assert set((await chunk_refs(ctx)).values()) == {1}
    await assert_accounting(ctx)


async def test_sessions_expire_and_release_parts(client: httpx.AsyncClient, ctx: Any) -> None:
    """A session past its lifetime (default 24 h) answers 404 to everything; the sweep (run at
    each init, callable by workers) deletes it and releases its parts."""
    assert ctx.settings.multipart.session_ttl == 24 * 3600
    auth = await register(client)
    uid = await init(client, auth)
    r = await client.get(f"{MP}/{uid}", headers=auth)
    expires = r.json()["expires_at"]
    await put(client, auth, uid, 1, os.urandom(80_000))
    keep = await init(client, auth, file_name="keep.bin")
    await put(client, auth, keep, 1, os.urandom(1000))
    assert await ctx.multipart.expire_sessions() == 0
    real = ctx.multipart.clock
    ctx.multipart.clock = lambda: real() + timedelta(hours=23)
    assert (await client.get(f"{MP}/{uid}", headers=auth)).status_code == 200
    ctx.multipart.clock = lambda: real() + timedelta(hours=24, seconds=5)
    for method, path in (("GET", ""), ("POST", "/complete"), ("DELETE", ""), ("PUT", "/part/2")):
        r = await client.request(
            method, f"{MP}/{uid}{path}", content=b"x" if method == "PUT" else None, headers=auth
        )
        assert r.status_code == 404 and r.json()["error"]["code"] == "UPLOAD_NOT_FOUND", path
    assert any(n > 0 for n in (await chunk_refs(ctx)).values())
    # An init runs the sweep: both old sessions go, the new one lives.
    fresh = await init(client, auth, file_name="fresh.bin")
    assert set((await chunk_refs(ctx)).values()) == {0}
    await assert_accounting(ctx)
    assert (await client.get(f"{MP}/{fresh}", headers=auth)).status_code == 200
    assert expires


async def test_multipart_quota(client: httpx.AsyncClient, ctx: Any) -> None:
    """Parts of open sessions count against the quota: a part that would cross it is 413
    QUOTA_EXCEEDED; so is an announced file_size over the quota, and a completion that would
    cross it (nothing committed, the session stays)."""
    from dfms.metadata.models import User

    auth = await register(client)
    async with ctx.db.write() as s:
        await s.execute(update(User).values(quota_bytes=300_000))
    r = await client.post(f"{MP}/init", json={"file_name": "x", "file_size": 300_001}, headers=auth)
    assert r.status_code == 413 and r.json()["error"]["code"] == "QUOTA_EXCEEDED"
    uid = await init(client, auth)
    assert (await put(client, auth, uid, 1, os.urandom(100_000))).status_code == 200
    assert (await put(client, auth, uid, 2, os.urandom(100_000))).status_code == 200
    other = await init(client, auth, file_name="other.bin")
    r = await put(client, auth, other, 1, os.urandom(150_000))
    assert r.status_code == 413 and r.json()["error"]["code"] == "QUOTA_EXCEEDED"
    # Re-sending a part replaces it, so it does not count twice.
    assert (await put(client, auth, uid, 2, os.urandom(100_000))).status_code == 200
    # A plain upload meanwhile uses the space the session would need.
    assert (await upload(client, auth, os.urandom(150_000), name="plain")).status_code == 201
    r = await complete(client, auth, uid)
    assert r.status_code == 413 and r.json()["error"]["code"] == "QUOTA_EXCEEDED"
    assert (await client.get(f"{MP}/{uid}", headers=auth)).status_code == 200
    assert (await client.get(f"{API}/storage/usage", headers=auth)).json()["used"] == 150_000
    await assert_accounting(ctx)


async def test_multipart_size_cap(client: httpx.AsyncClient, ctx: Any) -> None:
    """The upload size cap applies to the whole session: an announced file_size or parts
    adding up beyond it are 413 FILE_TOO_LARGE."""
    ctx.uploads.max_size = 150_000
    ctx.settings.upload.max_size = 150_000
    auth = await register(client)
    r = await client.post(f"{MP}/init", json={"file_name": "x", "file_size": 150_001}, headers=auth)
    assert r.status_code == 413 and r.json()["error"]["code"] == "FILE_TOO_LARGE"
    uid = await init(client, auth)
    assert (await put(client, auth, uid, 1, os.urandom(100_000))).status_code == 200
    r = await put(client, auth, uid, 2, os.urandom(60_000))
    assert r.status_code == 413 and r.json()["error"]["code"] == "FILE_TOO_LARGE"
    assert (await put(client, auth, uid, 2, os.urandom(50_000))).status_code == 200
    assert (await complete(client, auth, uid)).status_code == 201
    await assert_accounting(ctx)


async def test_complete_into_folder_and_as_new_version(client: httpx.AsyncClient) -> None:
    """init's folder_id places the file; completing onto an existing name makes a new version
    of that file; a folder that is not the user's is 404 at init."""
    auth = await register(client)
    box = await mkdir(client, auth, "box")
    first = await upload(client, auth, b"v1", name="doc.bin", extra={"X-Folder-ID": box})
    uid = await init(client, auth, file_name="doc.bin", folder_id=box)
    await put(client, auth, uid, 1, b"version two")
    f = (await complete(client, auth, uid)).json()["file"]
    assert f["id"] == first.json()["file"]["id"] and f["version"] == 2 and f["folder_id"] == box
    for folder in (str(uuid.uuid4()), "garbage"):
        r = await client.post(
            f"{MP}/init", json={"file_name": "x", "folder_id": folder}, headers=auth
        )
        assert r.status_code == 404 and r.json()["error"]["code"] == "FOLDER_NOT_FOUND"


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"file_name": ""},
        {"file_name": "a/b"},
        {"file_name": "x", "file_size": -1},
        {"file_name": "x", "extra": True},
        {"file_name": "x", "mime_type": "m" * 256},
    ],
)
async def test_init_bad_input_is_400(client: httpx.AsyncClient, body: dict[str, Any]) -> None:
    """A missing or bad file name, a negative size or unknown fields are 400."""
    auth = await register(client)
    r = await client.post(f"{MP}/init", json=body, headers=auth)
    assert r.status_code == 400 and r.json()["error"]["code"] == "VALIDATION_FAILED"


async def test_default_min_part_size_is_5_mib(make_settings: Any) -> None:
    """Without configuration parts other than the last must be at least 5 MiB."""
    s = make_settings()
    assert s.multipart.min_part_size == 5 * 1024 * 1024


async def test_gc_pass_expires_sessions_and_collects_their_parts(
    client: httpx.AsyncClient, ctx: Any
) -> None:
    """A GC pass first releases expired sessions, so the same pass (grace 0) removes the bytes
    of their parts, while a completed file's chunks stay."""
    from pathlib import Path

    auth = await register(client)
    kept = await upload(client, auth, os.urandom(50_000), name="kept.bin")
    assert kept.status_code == 201
    old = await init(client, auth)
    await put(client, auth, old, 1, os.urandom(80_000))

    def chunk_names() -> set[str]:
        return {
            p.name
            for n in ctx.settings.node_list()
            for p in Path(n.path).rglob("*")
            if p.is_file() and len(p.name) == 64
        }

    before = chunk_names()
    real = ctx.multipart.clock
    ctx.multipart.clock = lambda: real() + timedelta(hours=25)
    try:
        await ctx.gc.run_once(grace=0)
    finally:
        ctx.multipart.clock = real
    after = chunk_names()
    refs = await chunk_refs(ctx)
    live = {h for h, n in refs.items() if n > 0}
    assert after == live and after < before
    r = await client.get(f"{API}/files/{kept.json()['file']['id']}/download", headers=auth)
    assert r.status_code == 200 and len(r.content) == 50_000


async def test_declared_sha256_is_checked_at_completion(client: httpx.AsyncClient) -> None:
    """A SHA-256 announced at init: completion with other bytes is 400 CHECKSUM_MISMATCH, commits
    nothing and keeps the session (status shows the declaration), so re-sending the bad part
    and completing again succeeds. A malformed declaration is refused at init."""
    auth = await register(client)
    data = os.urandom(3 * MIN_PART)
    sha = hashlib.sha256(data).hexdigest()
    uid = await init(client, auth, sha256=sha.upper())
    parts = parts_of(data, MIN_PART)
    for n, part in enumerate(parts, 1):
        bad = part if n != 2 else bytes(len(part))  # part 2 "corrupted on the way"
        assert (await put(client, auth, uid, n, bad)).status_code == 200
    r = await complete(client, auth, uid)
    assert r.status_code == 400 and r.json()["error"]["code"] == "CHECKSUM_MISMATCH", r.text
    assert (await client.get(f"{API}/files", headers=auth)).json()["total"] == 0
    status = await client.get(f"{MP}/{uid}", headers=auth)
    assert status.status_code == 200 and status.json()["sha256"] == sha
    assert (await put(client, auth, uid, 2, parts[1])).status_code == 200
    r = await complete(client, auth, uid)
    assert r.status_code == 201 and r.json()["file"]["checksum"] == sha
    for bad_decl in ("abc", "z" * 64):
        r = await client.post(
            f"{MP}/init", json={"file_name": "x.bin", "sha256": bad_decl}, headers=auth
        )
        assert r.status_code == 400 and r.json()["error"]["code"] == "VALIDATION_FAILED"


async def test_part_with_a_declared_sha256(client: httpx.AsyncClient) -> None:
    """A part may carry its own SHA-256 (X-Checksum-SHA256 or Content-Digest): a part that
    arrives otherwise is 400 CHECKSUM_MISMATCH and not recorded (an earlier copy of that part
    stays); a matching one is recorded as usual."""
    auth = await register(client)
    uid = await init(client, auth)
    good = os.urandom(MIN_PART)
    sha = hashlib.sha256(good).hexdigest()
    r = await client.put(
        f"{MP}/{uid}/part/1",
        content=good,
        headers={**auth, "Content-Type": "application/octet-stream", "X-Checksum-SHA256": sha},
    )
    assert r.status_code == 200 and r.json()["part"]["checksum"] == sha
    digest = base64.b64encode(hashlib.sha256(good + b"!").digest()).decode()
    r = await client.put(
        f"{MP}/{uid}/part/1",
        content=bytes(MIN_PART),
        headers={
            **auth,
            "Content-Type": "application/octet-stream",
            "Content-Digest": f"sha-256=:{digest}:",
        },
    )
    assert r.status_code == 400 and r.json()["error"]["code"] == "CHECKSUM_MISMATCH", r.text
    parts = (await client.get(f"{MP}/{uid}", headers=auth)).json()["parts"]
    assert [(p["number"], p["checksum"]) for p in parts] == [(1, sha)]
    r = await client.put(
        f"{MP}/{uid}/part/2",
        content=b"x",
        headers={**auth, "Content-Type": "application/octet-stream", "X-Checksum-SHA256": "1"},
    )
    assert r.status_code == 400 and r.json()["error"]["code"] == "VALIDATION_FAILED"
