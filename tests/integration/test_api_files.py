"""The gateway's file API end to end through the ASGI app, on SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
import os
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import register

API = "/api/v1"


async def upload(
    client: httpx.AsyncClient,
    headers: dict[str, str],
    data: bytes,
    name: str = "report.bin",
    extra: dict[str, str] | None = None,
) -> httpx.Response:
    h: dict[str, Any] = {
        **headers,
        "Content-Type": "application/octet-stream",
        "X-File-Name": name.encode("utf-8"),
    }
    h.update(extra or {})
    return await client.post(f"{API}/files/upload", content=data, headers=h)


def chunk_files(ctx: Any) -> list[Path]:
    out: list[Path] = []
    for n in ctx.settings.node_list():
        out += [p for p in Path(n.path).rglob("*") if p.is_file() and len(p.name) == 64]
    return out


async def test_health_and_ready(client: httpx.AsyncClient) -> None:
    """Health answers ok at / and /api/v1; ready checks the database and the nodes."""
    for path in ("/health", f"{API}/health"):
        r = await client.get(path)
        assert r.status_code == 200 and r.json()["status"] == "ok"
        assert r.headers["x-request-id"]
        assert r.headers["x-content-type-options"] == "nosniff"
    r = await client.get(f"{API}/ready")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "ready" and body["checks"]["database"] == "ok"


async def test_request_id_is_echoed(client: httpx.AsyncClient) -> None:
    """A safe client X-Request-ID is echoed; an unsafe one is replaced."""
    r = await client.get("/health", headers={"X-Request-ID": "abc-123"})
    assert r.headers["x-request-id"] == "abc-123"
    r = await client.get("/health", headers={"X-Request-ID": "bad id\twith tab"})
    assert r.headers["x-request-id"] != "bad id\twith tab"


async def test_upload_download_roundtrip_and_dedup(client: httpx.AsyncClient, ctx: Any) -> None:
    """Upload returns the reference shape; re-uploading the same bytes stores no new chunk."""
    auth = await register(client)
    data = os.urandom(300_000)
    r = await upload(client, auth, data)
    assert r.status_code == 201, r.text
    f = r.json()["file"]
    assert set(f) >= {
        "id",
        "name",
        "size",
        "mime_type",
        "checksum",
        "version",
        "chunk_count",
        "new_chunks",
        "dedup_chunks",
        "created_at",
    }
    assert f["size"] == len(data) and f["checksum"] == hashlib.sha256(data).hexdigest()
    assert f["chunk_count"] > 1 and f["new_chunks"] == f["chunk_count"] and f["dedup_chunks"] == 0
    stored = len(chunk_files(ctx))
    assert stored == f["chunk_count"]

    r2 = await upload(client, auth, data, name="copy.bin")
    f2 = r2.json()["file"]
    assert r2.status_code == 201 and f2["new_chunks"] == 0
    assert f2["dedup_chunks"] == f2["chunk_count"]
    assert len(chunk_files(ctx)) == stored

    r = await client.get(f"{API}/files/{f['id']}/download", headers=auth)
    assert r.status_code == 200 and r.content == data
    assert r.headers["content-length"] == str(len(data))
    assert r.headers["x-checksum-sha256"] == f["checksum"]
    assert r.headers["etag"] == f'"{f["checksum"]}"'
    assert r.headers["accept-ranges"] == "bytes"


async def test_same_name_creates_new_version(client: httpx.AsyncClient) -> None:
    """Uploading to an existing name keeps the file id and bumps the version."""
    auth = await register(client)
    a = (await upload(client, auth, b"one" * 1000, name="v.txt")).json()["file"]
    b = (await upload(client, auth, b"two" * 1000, name="v.txt")).json()["file"]
    assert a["id"] == b["id"] and a["version"] == 1 and b["version"] == 2
    r = await client.get(f"{API}/files/{a['id']}/download", headers=auth)
    assert r.content == b"two" * 1000
    lst = (await client.get(f"{API}/files", headers=auth)).json()
    assert lst["total"] == 1


async def test_repeated_chunk_counts_every_occurrence(client: httpx.AsyncClient, ctx: Any) -> None:
    """A chunk repeated inside one file counts every occurrence in its reference count, and delete
    releases them all (reference defect 4)."""
    import io
    from collections import Counter

    from dfms.chunking import iter_file_chunks
    from dfms.context import chunk_params
    from dfms.metadata.repositories import ChunkRepository

    auth = await register(client)
    data = bytes(65536 * 8)  # zeros: identical chunks
    expected = Counter(
        c.sha256 for c in iter_file_chunks(io.BytesIO(data), chunk_params(ctx.settings))
    )
    assert max(expected.values()) > 1
    f = (await upload(client, auth, data)).json()["file"]
    assert f["chunk_count"] == sum(expected.values())
    assert f["new_chunks"] == len(expected)
    assert f["dedup_chunks"] == f["chunk_count"] - len(expected)
    async with ctx.db.read() as s:
        for h, n in expected.items():
            chunk = await ChunkRepository(s).get(h)
            assert chunk is not None and chunk.ref_count == n
    await client.delete(f"{API}/files/{f['id']}", headers=auth)
    async with ctx.db.read() as s:
        for h in expected:
            chunk = await ChunkRepository(s).get(h)
            assert chunk is not None and chunk.ref_count == 0
    # Bytes stay until GC's grace period has passed.
    assert len(chunk_files(ctx)) == len(expected)


async def test_multipart_upload(client: httpx.AsyncClient) -> None:
    """multipart/form-data with field `file` (and folder_id) is accepted like a raw body."""
    auth = await register(client)
    data = os.urandom(100_000)
    r = await client.post(
        f"{API}/files/upload",
        headers=auth,
        files={"file": ("photo.png", data, "image/png")},
    )
    assert r.status_code == 201, r.text
    f = r.json()["file"]
    assert f["name"] == "photo.png" and f["mime_type"] == "image/png" and f["size"] == len(data)
    r = await client.get(f"{API}/files/{f['id']}/download", headers=auth)
    assert r.content == data


async def test_multipart_without_file_field(client: httpx.AsyncClient) -> None:
    """A multipart body with no `file` field is a 400, not a 500."""
    auth = await register(client)
    r = await client.post(
        f"{API}/files/upload", headers=auth, data={"other": "x"}, files={"nope": ("a", b"b")}
    )
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "VALIDATION_FAILED"


async def test_empty_file(client: httpx.AsyncClient) -> None:
    """An empty file uploads and downloads as zero bytes."""
    auth = await register(client)
    r = await upload(client, auth, b"", name="empty")
    assert r.status_code == 201, r.text
    f = r.json()["file"]
    assert f["size"] == 0 and f["chunk_count"] == 0
    r = await client.get(f"{API}/files/{f['id']}/download", headers=auth)
    assert r.status_code == 200 and r.content == b""


async def test_range_requests(client: httpx.AsyncClient) -> None:
    """Single ranges give 206 with Content-Range; unsatisfiable ones 416; If-None-Match 304."""
    auth = await register(client)
    data = os.urandom(200_000)
    f = (await upload(client, auth, data)).json()["file"]
    url = f"{API}/files/{f['id']}/download"
    for spec, (lo, hi) in {
        "bytes=0-0": (0, 0),
        "bytes=100-70000": (100, 70000),
        "bytes=150000-": (150000, len(data) - 1),
        "bytes=-500": (len(data) - 500, len(data) - 1),
        "bytes=199000-999999": (199000, len(data) - 1),
    }.items():
        r = await client.get(url, headers={**auth, "Range": spec})
        assert r.status_code == 206, spec
        assert r.content == data[lo : hi + 1], spec
        assert r.headers["content-range"] == f"bytes {lo}-{hi}/{len(data)}"
    r = await client.get(url, headers={**auth, "Range": "bytes=300000-"})
    assert r.status_code == 416
    assert r.headers["content-range"] == f"bytes */{len(data)}"
    assert r.json()["error"]["code"] == "RANGE_NOT_SATISFIABLE"
    r = await client.get(url, headers={**auth, "If-None-Match": f'"{f["checksum"]}"'})
    assert r.status_code == 304 and r.content == b""


async def test_if_range_applies_a_range_only_to_unchanged_content(
    client: httpx.AsyncClient,
) -> None:
    """RFC 9110 If-Range: a client resuming a download gets 206 only while the file is still
    what it had (strong ETag, or exactly its Last-Modified date); once the file has a new
    version, or for a weak or unparseable validator, it gets the whole new file (200), never a
    range of other bytes spliced onto its partial copy."""
    auth = await register(client)
    old = os.urandom(50_000)
    f = (await upload(client, auth, old, name="resume.bin")).json()["file"]
    url = f"{API}/files/{f['id']}/download"
    first = await client.get(url, headers=auth)
    etag, modified = first.headers["etag"], first.headers["last-modified"]
    for validator in (etag, modified):
        r = await client.get(url, headers={**auth, "Range": "bytes=100-", "If-Range": validator})
        assert r.status_code == 206 and r.content == old[100:], validator
    for validator in (f"W/{etag}", '"0000"', "Mon, 01 Jan 2001 00:00:00 GMT", "garbage"):
        r = await client.get(url, headers={**auth, "Range": "bytes=100-", "If-Range": validator})
        assert r.status_code == 200 and r.content == old, validator
    new = os.urandom(40_000)
    assert (await upload(client, auth, new, name="resume.bin")).status_code == 201
    r = await client.get(url, headers={**auth, "Range": "bytes=100-", "If-Range": etag})
    assert r.status_code == 200 and r.content == new
    assert "content-range" not in r.headers
    head = await client.head(url, headers={**auth, "Range": "bytes=100-", "If-Range": etag})
    assert head.status_code == 200 and head.headers["content-length"] == str(len(new))


async def test_if_modified_since(client: httpx.AsyncClient) -> None:
    """If-Modified-Since (RFC 9110): 304 when the file has not changed since that date (Last-
    Modified at or before it), 200 with the bytes when it has or the date is invalid, and
    ignored whenever If-None-Match is sent."""
    auth = await register(client)
    data = os.urandom(20_000)
    f = (await upload(client, auth, data, name="ims.bin")).json()["file"]
    url = f"{API}/files/{f['id']}/download"
    modified = (await client.head(url, headers=auth)).headers["last-modified"]
    for since, status in (
        (modified, 304),
        ("Fri, 31 Dec 9999 23:59:59 GMT", 304),
        ("Mon, 01 Jan 2001 00:00:00 GMT", 200),
        ("not a date", 200),
    ):
        r = await client.get(url, headers={**auth, "If-Modified-Since": since})
        assert r.status_code == status, since
        assert r.content == (data if status == 200 else b""), since
    # If-None-Match wins: a stale ETag means 200 even with a matching date
    r = await client.get(
        url, headers={**auth, "If-Modified-Since": modified, "If-None-Match": '"0000"'}
    )
    assert r.status_code == 200 and r.content == data


async def test_non_ascii_name_content_disposition(client: httpx.AsyncClient) -> None:
    """A non-ASCII name round-trips and is sent per RFC 6266 (filename*)."""
    auth = await register(client)
    name = "résumé 2024 東京.pdf"
    r = await client.post(
        f"{API}/files/upload",
        content=b"%PDF-1.4 test",
        headers={**auth, "X-File-Name": name.encode(), "Content-Type": "application/octet-stream"},
    )
    assert r.status_code == 201, r.text
    f = r.json()["file"]
    assert f["name"] == name and f["mime_type"] == "application/pdf"
    r = await client.get(f"{API}/files/{f['id']}/download", headers=auth)
    cd = r.headers["content-disposition"]
    assert "filename*=UTF-8''r%C3%A9sum%C3%A9" in cd and 'filename="r_sum_' in cd


@pytest.mark.parametrize(
    "header", [b"UTF-8''%FF.txt", b"utf-8''%e2%82", b"caf\xe9.txt", b"UTF-8''a%00b", b"UTF-8''"]
)
async def test_undecodable_or_invalid_header_name_is_400(
    client: httpx.AsyncClient, header: bytes
) -> None:
    """X-File-Name that is not UTF-8 once decoded (raw or RFC 8187 percent-encoded; the latter
    was a 500), or decodes to an invalid name, is 400 VALIDATION_FAILED and stores nothing."""
    auth = await register(client)
    r = await client.post(
        f"{API}/files/upload",
        content=b"data",
        headers={**auth, "X-File-Name": header, "Content-Type": "application/octet-stream"},
    )
    assert r.status_code == 400 and r.json()["error"]["code"] == "VALIDATION_FAILED", r.text
    r = await client.get(f"{API}/files", headers=auth)
    assert r.json()["total"] == 0


async def test_list_get_delete_usage(client: httpx.AsyncClient) -> None:
    """Listing paginates; delete hides the file and gives the usage back."""
    auth = await register(client)
    ids = []
    for i in range(3):
        ids.append(
            (await upload(client, auth, os.urandom(1000), name=f"f{i}")).json()["file"]["id"]
        )
    r = await client.get(f"{API}/files", params={"page": 1, "page_size": 2}, headers=auth)
    body = r.json()
    assert body["total"] == 3 and body["total_pages"] == 2 and len(body["files"]) == 2
    usage = (await client.get(f"{API}/storage/usage", headers=auth)).json()
    assert usage["used"] == 3000 and usage["quota"] == 5 * 1024**3
    assert usage["available"] == usage["quota"] - 3000
    r = await client.get(f"{API}/files/{ids[0]}", headers=auth)
    assert r.status_code == 200 and r.json()["file"]["name"] == "f0"
    assert (await client.delete(f"{API}/files/{ids[0]}", headers=auth)).status_code == 204
    assert (await client.get(f"{API}/files/{ids[0]}", headers=auth)).status_code == 404
    assert (await client.delete(f"{API}/files/{ids[0]}", headers=auth)).status_code == 404
    assert (await client.get(f"{API}/storage/usage", headers=auth)).json()["used"] == 2000


async def test_other_users_file_is_404_like_missing(client: httpx.AsyncClient) -> None:
    """Someone else's file id, a random id and a malformed id answer the same 404."""
    alice = await register(client)
    bob = await register(client, "bob@example.com")
    fid = (await upload(client, alice, b"secret")).json()["file"]["id"]
    bodies = []
    for target in (fid, str(uuid.uuid4()), "not-a-uuid", "1' OR '1'='1"):
        for method, path in (("GET", ""), ("GET", "/download"), ("DELETE", "")):
            r = await client.request(method, f"{API}/files/{target}{path}", headers=bob)
            assert r.status_code == 404, (target, path)
            err = r.json()["error"]
            bodies.append((err["code"], err["message"]))
    assert len(set(bodies)) == 1
    assert (await client.get(f"{API}/files/{fid}/download", headers=alice)).content == b"secret"


@pytest.mark.parametrize(
    "name",
    ["", "a/b", "..", ".", "x\x00y", "tab\there", "a" * 256, "é" * 128, " lead", "trail "],
)
async def test_bad_file_names_rejected(client: httpx.AsyncClient, ctx: Any, name: str) -> None:
    """Bad names get 400 VALIDATION_FAILED and store nothing."""
    auth = await register(client)
    if "\x00" in name or "\t" in name:
        # h11 refuses such header bytes and httpx percent-escapes them in forms: build the
        # multipart body by hand so the server really receives the raw byte.
        body = (
            b'--XyZ\r\nContent-Disposition: form-data; name="file"; filename="'
            + name.encode()
            + b'"\r\nContent-Type: application/octet-stream\r\n\r\ndata\r\n--XyZ--\r\n'
        )
        r = await client.post(
            f"{API}/files/upload",
            content=body,
            headers={**auth, "Content-Type": "multipart/form-data; boundary=XyZ"},
        )
    else:
        r = await upload(client, auth, b"data" * 100, name=name)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["code"] == "VALIDATION_FAILED"
    assert chunk_files(ctx) == []
    assert (await client.get(f"{API}/files", headers=auth)).json()["total"] == 0


async def test_auth_required(client: httpx.AsyncClient) -> None:
    """No token, a garbage token and a malformed header each give 401 in the envelope."""
    r = await client.get(f"{API}/files")
    assert r.status_code == 401 and r.json()["error"]["code"] == "AUTH_TOKEN_MISSING"
    for h in ("Bearer garbage", "Basic abc", "Bearer", "bearer  x.y.z"):
        r = await client.get(f"{API}/files", headers={"Authorization": h})
        assert r.status_code == 401, h
        assert r.json()["error"]["code"] in ("AUTH_TOKEN_INVALID", "AUTH_TOKEN_MISSING")
        assert r.json()["error"]["request_id"]


async def test_expired_token_rejected(client: httpx.AsyncClient, ctx: Any) -> None:
    """A token past its expiry (beyond leeway) is refused."""
    from dfms.auth.tokens import TokenService

    await register(client)
    old = TokenService(ctx.keyring, access_ttl=10, leeway=0, clock=lambda: 1_000_000.0)
    token = old.issue_pair(str(uuid.uuid4()), "user").access_token
    r = await client.get(f"{API}/files", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 401 and r.json()["error"]["code"] == "AUTH_TOKEN_INVALID"


async def test_upload_too_large(client: httpx.AsyncClient, ctx: Any) -> None:
    """Over the size cap: 413 with and without Content-Length, nothing stored."""
    ctx.uploads.max_size = 50_000
    ctx.settings.upload.max_size = 50_000
    auth = await register(client)
    r = await upload(client, auth, os.urandom(60_000))
    assert r.status_code == 413 and r.json()["error"]["code"] == "FILE_TOO_LARGE"

    async def gen() -> Any:
        for _ in range(10):
            yield os.urandom(10_000)

    r = await client.post(
        f"{API}/files/upload",
        content=gen(),
        headers={**auth, "X-File-Name": "big", "Content-Type": "application/octet-stream"},
    )
    assert r.status_code == 413
    assert (await client.get(f"{API}/files", headers=auth)).json()["total"] == 0


async def test_quota_exceeded(client: httpx.AsyncClient, ctx: Any) -> None:
    """An upload that would cross the quota is refused with 413 QUOTA_EXCEEDED."""
    from sqlalchemy import update

    from dfms.metadata.models import User

    auth = await register(client)
    async with ctx.db.write() as s:
        await s.execute(update(User).values(quota_bytes=100_000))
    assert (await upload(client, auth, os.urandom(60_000), name="a")).status_code == 201
    r = await upload(client, auth, os.urandom(60_000), name="b")
    assert r.status_code == 413 and r.json()["error"]["code"] == "QUOTA_EXCEEDED"
    usage = (await client.get(f"{API}/storage/usage", headers=auth)).json()
    assert usage["used"] == 60_000 and usage["used_pct"] == 60.0


async def test_unknown_folder_is_404(client: httpx.AsyncClient) -> None:
    """X-Folder-ID that is not one of the user's folders: 404 before reading the body."""
    auth = await register(client)
    for folder in (str(uuid.uuid4()), "garbage"):
        r = await upload(client, auth, b"x", extra={"X-Folder-ID": folder})
        assert r.status_code == 404 and r.json()["error"]["code"] == "FOLDER_NOT_FOUND"


async def test_invalid_json_and_fields(client: httpx.AsyncClient) -> None:
    """Invalid JSON, missing and bad fields: 400 VALIDATION_FAILED, never 500."""
    for body in (b"{not json", b"[]", b'{"email": 1}', b'{"email":"a@b.c","password":"x"}'):
        r = await client.post(
            f"{API}/auth/register", content=body, headers={"Content-Type": "application/json"}
        )
        assert r.status_code == 400, body
        assert r.json()["error"]["code"] == "VALIDATION_FAILED"
    r = await client.get(f"{API}/files", params={"page": 0}, headers=await register(client))
    assert r.status_code == 400


async def test_register_login_refresh(client: httpx.AsyncClient) -> None:
    """Register, duplicate -> 409, login (email normalised), refresh rotates, reuse revokes."""
    r = await client.post(
        f"{API}/auth/register",
        json={"email": "Demo@Example.com ", "password": "securepass123", "display_name": "Demo"},
    )
    assert r.status_code == 201
    body = r.json()
    assert body["user"]["email"] == "demo@example.com"
    assert body["tokens"]["token_type"] == "Bearer" and body["tokens"]["expires_in"] == 900
    assert r.headers["cache-control"] == "no-store"
    r = await client.post(
        f"{API}/auth/register",
        json={"email": "demo@example.com", "password": "securepass123", "display_name": "D"},
    )
    assert r.status_code == 409 and r.json()["error"]["code"] == "AUTH_USER_EXISTS"
    r = await client.post(
        f"{API}/auth/login", json={"email": "DEMO@example.com", "password": "nope-nope"}
    )
    assert r.status_code == 401 and r.json()["error"]["code"] == "AUTH_INVALID_CREDENTIALS"
    r = await client.post(
        f"{API}/auth/login", json={"email": "nobody@example.com", "password": "nope-nope"}
    )
    assert r.status_code == 401 and r.json()["error"]["code"] == "AUTH_INVALID_CREDENTIALS"
    r = await client.post(
        f"{API}/auth/login", json={"email": "demo@example.com", "password": "securepass123"}
    )
    assert r.status_code == 200 and r.json()["user"]["role"] == "user"
    rt = r.json()["tokens"]["refresh_token"]
    r1 = await client.post(f"{API}/auth/refresh", json={"refresh_token": rt})
    assert r1.status_code == 200
    new_rt = r1.json()["tokens"]["refresh_token"]
    assert new_rt != rt
    # Reusing the retired token revokes the family: the new one stops working too.
    assert (await client.post(f"{API}/auth/refresh", json={"refresh_token": rt})).status_code == 401
    assert (
        await client.post(f"{API}/auth/refresh", json={"refresh_token": new_rt})
    ).status_code == 401
    # An access token is not a refresh token.
    at = r1.json()["tokens"]["access_token"]
    assert (await client.post(f"{API}/auth/refresh", json={"refresh_token": at})).status_code == 401


async def test_password_limits(client: httpx.AsyncClient) -> None:
    """Passwords are 8..72 bytes; longer ones get a clear 400, never silent truncation."""
    for pw in ("short", "é" * 37):
        r = await client.post(
            f"{API}/auth/register",
            json={"email": "p@example.com", "password": pw, "display_name": "P"},
        )
        assert r.status_code == 400, pw
        assert r.json()["error"]["code"] == "VALIDATION_FAILED"


async def test_unknown_route_envelope(client: httpx.AsyncClient) -> None:
    """Unknown routes and methods answer in the error envelope."""
    r = await client.get(f"{API}/nope")
    assert r.status_code == 404 and r.json()["error"]["code"] == "NOT_FOUND"
    r = await client.put(f"{API}/files", headers=await register(client))
    assert r.status_code == 405 and r.json()["error"]["code"] == "METHOD_NOT_ALLOWED"


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("OPTIONS", "/files/{id}", "DELETE, GET, PATCH"),
        ("PUT", "/folders/{id}", "DELETE, PATCH"),
        ("POST", "/files/upload/multipart/{id}", "DELETE, GET"),
        ("POST", "/files/{id}/versions/3/download", "GET, HEAD"),
        ("PUT", "/files", "GET"),
        # a literal path wins over a template that also matches it
        ("PUT", "/folders/root", "GET"),
        ("PUT", "/files/upload", "POST"),
    ],
)
async def test_405_allow_lists_every_method_of_the_path(
    client: httpx.AsyncClient, method: str, path: str, allow: str
) -> None:
    """A 405's Allow header lists every method the path serves, not only those of the first
    route that matched it (routing stops at the first: OPTIONS /files/{id} said "GET")."""
    url = API + path.replace("{id}", str(uuid.uuid4()))
    r = await client.request(method, url, headers=await register(client))
    assert r.status_code == 405 and r.json()["error"]["code"] == "METHOD_NOT_ALLOWED"
    assert r.headers["allow"] == allow


async def test_slow_client_times_out(client: httpx.AsyncClient, ctx: Any) -> None:
    """A client that stops sending the body gets 408 REQUEST_TIMEOUT and nothing is stored."""
    import asyncio

    ctx.settings.server.read_timeout = 0.2
    auth = await register(client)
    stall = asyncio.Event()

    async def gen() -> Any:
        yield b"x" * 10_000
        await stall.wait()  # never set: the client goes silent
        yield b"never"

    r = await client.post(
        f"{API}/files/upload",
        content=gen(),
        headers={**auth, "X-File-Name": "slow", "Content-Type": "application/octet-stream"},
    )
    assert r.status_code == 408 and r.json()["error"]["code"] == "REQUEST_TIMEOUT"
    assert (await client.get(f"{API}/files", headers=auth)).json()["total"] == 0
