"""A client may declare the file's SHA-256 on upload (``X-Checksum-SHA256: <hex>``, or for a raw
body RFC 9530 ``Content-Digest: sha-256=:<base64>:``): bytes that hash otherwise (corrupted on
the way) are refused with 400 CHECKSUM_MISMATCH and leave nothing visible, no usage and no pin;
a malformed declaration is 400 VALIDATION_FAILED before the body is read."""

from __future__ import annotations

import base64
import hashlib
import os
from typing import Any

import httpx
import pytest

from tests.conftest import register
from tests.integration.test_api_files import API, upload


def _digest(data: bytes) -> str:
    return f"sha-256=:{base64.b64encode(hashlib.sha256(data).digest()).decode()}:"


def _form(data: bytes, name: str = "f.bin") -> tuple[bytes, str]:
    body = (
        b'--XB\r\nContent-Disposition: form-data; name="file"; filename="'
        + name.encode()
        + b'"\r\nContent-Type: application/octet-stream\r\n\r\n'
        + data
        + b"\r\n--XB--\r\n"
    )
    return body, "multipart/form-data; boundary=XB"


async def _nothing_stored(client: httpx.AsyncClient, auth: dict[str, str], ctx: Any) -> None:
    assert (await client.get(f"{API}/files", headers=auth)).json()["total"] == 0
    assert (await client.get(f"{API}/storage/usage", headers=auth)).json()["used"] == 0
    from sqlalchemy import func, select

    from dfms.metadata.models import ChunkPin, PinSession

    async with ctx.db.read() as s:
        for model in (PinSession, ChunkPin):
            assert (await s.execute(select(func.count()).select_from(model))).scalar_one() == 0


async def test_matching_declarations_are_accepted(client: httpx.AsyncClient) -> None:
    auth = await register(client)
    data = os.urandom(300_000)
    sha = hashlib.sha256(data).hexdigest()
    for i, extra in enumerate(
        (
            {"X-Checksum-SHA256": sha},
            {"X-Checksum-SHA256": sha.upper()},
            {"Content-Digest": _digest(data)},
            # other algorithms are ignored, sha-256 is checked
            {"Content-Digest": f"sha-512=:AAAA:, {_digest(data)}"},
            {"Content-Digest": _digest(data), "X-Checksum-SHA256": sha},
        )
    ):
        r = await upload(client, auth, data, name=f"ok{i}", extra=extra)
        assert r.status_code == 201, (extra, r.text)
        assert r.json()["file"]["checksum"] == sha
    body, ctype = _form(data, "form.bin")
    r = await client.post(
        f"{API}/files/upload",
        content=body,
        headers={**auth, "Content-Type": ctype, "X-Checksum-SHA256": sha},
    )
    assert r.status_code == 201 and r.json()["file"]["checksum"] == sha


@pytest.mark.parametrize("how", ["hex", "digest", "form"])
async def test_mismatch_is_refused_and_leaves_nothing(
    client: httpx.AsyncClient, ctx: Any, how: str
) -> None:
    auth = await register(client)
    data = os.urandom(300_000)
    declared = hashlib.sha256(data + b"x").digest()
    if how == "form":
        body, ctype = _form(data)
        r = await client.post(
            f"{API}/files/upload",
            content=body,
            headers={**auth, "Content-Type": ctype, "X-Checksum-SHA256": declared.hex()},
        )
    else:
        extra = (
            {"X-Checksum-SHA256": declared.hex()}
            if how == "hex"
            else {"Content-Digest": f"sha-256=:{base64.b64encode(declared).decode()}:"}
        )
        r = await upload(client, auth, data, extra=extra)
    assert r.status_code == 400 and r.json()["error"]["code"] == "CHECKSUM_MISMATCH", r.text
    assert hashlib.sha256(data).hexdigest() in r.json()["error"]["message"]
    await _nothing_stored(client, auth, ctx)


@pytest.mark.parametrize(
    ("headers", "form"),
    [
        ({"X-Checksum-SHA256": "abc"}, False),
        ({"X-Checksum-SHA256": "g" * 64}, False),
        ({"Content-Digest": "sha-256=AAAA"}, False),
        ({"Content-Digest": "sha-256=:not base64!:"}, False),
        ({"Content-Digest": "sha-256=:AAAA:"}, False),
        ({"Content-Digest": _digest(b"a"), "X-Checksum-SHA256": "0" * 64}, False),
        ({"Content-Digest": _digest(b"a")}, True),
    ],
)
async def test_malformed_declarations_are_400(
    client: httpx.AsyncClient, ctx: Any, headers: dict[str, str], form: bool
) -> None:
    auth = await register(client)
    if form:
        body, ctype = _form(b"a")
        r = await client.post(
            f"{API}/files/upload", content=body, headers={**auth, "Content-Type": ctype, **headers}
        )
    else:
        r = await upload(client, auth, b"a", extra=headers)
    assert r.status_code == 400 and r.json()["error"]["code"] == "VALIDATION_FAILED", r.text
    await _nothing_stored(client, auth, ctx)
