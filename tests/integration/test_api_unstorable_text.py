"""Text no database can store (NUL, which PostgreSQL refuses; lone surrogates, which UTF-8
cannot encode) is bad input: 400 VALIDATION_FAILED and nothing written, on SQLite and
PostgreSQL alike. Found by schemathesis against a PostgreSQL-backed server, where a NUL in a
display name or a MIME type was a 500 from the driver."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.conftest import register

API = "/api/v1"


def _json(body: dict[str, object]) -> bytes:
    # json.dumps escapes both NUL (\u0000) and a lone surrogate (\ud800) without failing
    return json.dumps(body).encode()


@pytest.mark.parametrize("bad", ["a\x00b", "a\ud800b"])
async def test_register_refuses_unstorable_display_name(
    client: httpx.AsyncClient, bad: str
) -> None:
    r = await client.post(
        f"{API}/auth/register",
        content=_json(
            {"email": "nul@example.com", "password": "securepass123", "display_name": bad}
        ),
        headers={"Content-Type": "application/json"},
    )
    assert r.status_code == 400 and r.json()["error"]["code"] == "VALIDATION_FAILED", r.text
    # nothing was created: the same email registers afterwards
    await register(client, "nul@example.com")


@pytest.mark.parametrize(
    "body",
    [
        {"file_name": "a.bin", "mime_type": "text/\x00plain"},
        {"file_name": "a\x00.bin"},
        {"file_name": "a.bin", "folder_id": "\x00"},
    ],
)
async def test_multipart_init_refuses_unstorable_text(
    client: httpx.AsyncClient, body: dict[str, object]
) -> None:
    auth = await register(client)
    r = await client.post(
        f"{API}/files/upload/multipart/init",
        content=_json(body),
        headers={**auth, "Content-Type": "application/json"},
    )
    assert r.status_code == 400 and r.json()["error"]["code"] == "VALIDATION_FAILED", r.text


async def test_folder_and_rename_refuse_nul(client: httpx.AsyncClient) -> None:
    auth = {**(await register(client)), "Content-Type": "application/json"}
    r = await client.post(f"{API}/folders", content=_json({"name": "x\x00"}), headers=auth)
    assert r.status_code == 400 and r.json()["error"]["code"] == "VALIDATION_FAILED", r.text
    r = await client.post(f"{API}/folders", content=_json({"name": "ok"}), headers=auth)
    assert r.status_code == 201, r.text
    folder = r.json()["folder"]["id"]
    r = await client.patch(f"{API}/folders/{folder}", content=_json({"name": "\x00"}), headers=auth)
    assert r.status_code == 400 and r.json()["error"]["code"] == "VALIDATION_FAILED", r.text
    r = await client.get(f"{API}/folders/{folder}/contents", headers=auth)
    assert r.status_code == 200 and r.json()["folder"]["name"] == "ok", r.text


@pytest.mark.parametrize(
    ("part_type", "stored"),
    [(b"text/pl\x00ain", "text/plain"), (b"text/pl\x01ain\xff", "text/plain")],
)
async def test_junk_part_content_type_is_replaced_and_the_file_downloads(
    client: httpx.AsyncClient, part_type: bytes, stored: str
) -> None:
    """A multipart part whose Content-Type is not a media type (NUL was a 500 on PostgreSQL;
    control characters were stored and then broke every download of the file with a 500) is
    stored under the type guessed from the name, and the file downloads."""
    auth = await register(client)
    body = (
        b'--XB\r\nContent-Disposition: form-data; name="file"; filename="m.txt"\r\n'
        b"Content-Type: " + part_type + b"\r\n\r\nhello\r\n--XB--\r\n"
    )
    r = await client.post(
        f"{API}/files/upload",
        content=body,
        headers={**auth, "Content-Type": "multipart/form-data; boundary=XB"},
    )
    assert r.status_code == 201, r.text
    assert r.json()["file"]["mime_type"] == stored
    down = await client.get(f"{API}/files/{r.json()['file']['id']}/download", headers=auth)
    assert down.status_code == 200 and down.content == b"hello"
    assert down.headers["content-type"].startswith(stored)
