"""Request limits of the API: header block size (431), JSON body size (413, with and without
Content-Length, before anything is processed), and slow bodies (408)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI, Request

from dfms.api.errors import install_error_handlers
from dfms.api.limits import RequestLimitsMiddleware
from dfms.api.paths import streams_file_content

API = "/api/v1"


def assert_envelope(r: httpx.Response, status: int, code: str) -> None:
    assert r.status_code == status, r.text
    body = r.json()["error"]
    assert body["code"] == code
    assert body["request_id"] == r.headers["x-request-id"]


async def test_oversized_header_block_is_431(client: httpx.AsyncClient) -> None:
    """Headers over server.max_header_bytes (default 64 KiB) are refused before routing."""
    r = await client.get(f"{API}/files", headers={"X-Padding": "a" * (70 * 1024)})
    assert_envelope(r, 431, "REQUEST_HEADERS_TOO_LARGE")
    assert r.headers["x-content-type-options"] == "nosniff"


async def test_headers_under_the_cap_pass(client: httpx.AsyncClient) -> None:
    """A large but allowed header block reaches the route (here: 401 for no token)."""
    r = await client.get(f"{API}/files", headers={"X-Padding": "a" * (60 * 1024)})
    assert r.status_code == 401


async def test_json_body_over_the_cap_with_content_length_is_413(
    client: httpx.AsyncClient,
) -> None:
    """A JSON body above upload.max_json_body (1 MiB) is refused from its Content-Length: no
    account is created."""
    email = "big@example.com"
    body = (
        b'{"email":"'
        + email.encode()
        + b'","password":"longenough1","display_name":"'
        + b"x" * (1 << 20)
        + b'"}'
    )
    r = await client.post(
        f"{API}/auth/register", content=body, headers={"Content-Type": "application/json"}
    )
    assert_envelope(r, 413, "PAYLOAD_TOO_LARGE")
    login = await client.post(f"{API}/auth/login", json={"email": email, "password": "longenough1"})
    assert login.status_code == 401


async def test_chunked_json_body_over_the_cap_is_413(client: httpx.AsyncClient) -> None:
    """Without Content-Length the body is counted as it arrives and refused once over the cap."""

    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"email":"chunked@example.com","password":"longenough1","display_name":"'
        for _ in range(20):
            yield b"y" * (64 * 1024)
        yield b'"}'

    r = await client.post(
        f"{API}/auth/register", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert_envelope(r, 413, "PAYLOAD_TOO_LARGE")
    login = await client.post(
        f"{API}/auth/login", json={"email": "chunked@example.com", "password": "longenough1"}
    )
    assert login.status_code == 401


async def test_negative_or_garbage_content_length_is_400(client: httpx.AsyncClient) -> None:
    """A Content-Length that is not a non-negative integer is a 400 in the envelope."""
    for bad in ("-1", "abc"):
        r = await client.post(
            f"{API}/auth/login",
            content=b"{}",
            headers={"Content-Type": "application/json", "Content-Length": bad},
        )
        assert_envelope(r, 400, "VALIDATION_FAILED")


def test_only_file_content_routes_stream_past_the_json_cap() -> None:
    """The upload route and multipart parts are exempt (they stream and enforce
    upload.max_size); init/complete and every other route are capped."""
    assert streams_file_content("/api/v1/files/upload")
    assert streams_file_content("/api/v1/files/upload/multipart/abc/part/3")
    assert not streams_file_content("/api/v1/files/upload/multipart/init")
    assert not streams_file_content("/api/v1/files/upload/multipart/abc/complete")
    assert not streams_file_content("/api/v1/auth/register")
    assert not streams_file_content("/api/v1/files/upload/../../auth/login")


async def test_a_stalled_body_times_out_with_408() -> None:
    """A client that stops sending in the middle of a JSON body gets 408 after read_timeout."""
    inner = FastAPI()
    install_error_handlers(inner)

    @inner.post("/echo")
    async def echo(request: Request) -> dict[str, int]:
        return {"n": len(await request.body())}

    app = RequestLimitsMiddleware(inner, max_header_bytes=8192, max_body=1024, read_timeout=0.2)
    stalled = asyncio.Event()

    async def stalling() -> AsyncIterator[bytes]:
        yield b"{"
        stalled.set()
        await asyncio.Event().wait()  # never sends the rest
        yield b"}"  # pragma: no cover

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        r = await asyncio.wait_for(c.post("/echo", content=stalling()), timeout=10)
    assert stalled.is_set()
    assert r.status_code == 408
    assert r.json()["error"]["code"] == "REQUEST_TIMEOUT"


@pytest.mark.parametrize("size", [0, 1024])
async def test_bodies_up_to_the_cap_pass(size: int) -> None:
    """Bodies at or under the cap reach the route whole."""
    inner = FastAPI()

    @inner.post("/echo")
    async def echo(request: Request) -> dict[str, int]:
        return {"n": len(await request.body())}

    app = RequestLimitsMiddleware(inner, max_header_bytes=8192, max_body=1024, read_timeout=5)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        r = await c.post("/echo", content=b"x" * size)
    assert r.json() == {"n": size}
