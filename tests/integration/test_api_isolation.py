"""Invariant 6 on SQLite and PostgreSQL: a user sees and touches only their own data. Another
user's object id answers exactly like an id that does not exist (404, same body apart from the
request id) on every route that takes an object id, for an ordinary user and for an admin alike
(admins manage accounts, not files), and the owner's objects are untouched afterwards.

The routes are taken from the app's route table: a new route that takes an object id and has no
case here fails ``test_every_route_is_classified``.
"""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from dfms.api.app import create_app
from dfms.context import AppContext
from tests.conftest import register
from tests.integration._routes import app_routes, path_params
from tests.integration.test_api_auth_accounts import bearer, login, make_user

API = "/api/v1"
MP = f"{API}/files/upload/multipart"
OCTETS = {"Content-Type": "application/octet-stream"}

#: Every route whose path takes an object id, with the rest of a plausible request. Each path
#: parameter is replaced by the victim's id, or by a random one for the reference answer.
OBJECT_ROUTES: dict[tuple[str, str], dict[str, Any]] = {
    ("GET", f"{API}/files/{{file_id}}"): {},
    ("PATCH", f"{API}/files/{{file_id}}"): {"json": {"name": "pwned.txt"}},
    ("DELETE", f"{API}/files/{{file_id}}"): {},
    ("GET", f"{API}/files/{{file_id}}/download"): {},
    ("PUT", f"{API}/files/{{file_id}}/move"): {"json": {"new_parent_id": None}},
    ("PUT", f"{API}/files/{{file_id}}/metadata"): {"json": {"pwned": "yes"}},
    ("GET", f"{API}/files/{{file_id}}/versions"): {},
    ("GET", f"{API}/files/{{file_id}}/versions/{{number}}/download"): {},
    ("DELETE", f"{API}/files/{{file_id}}/versions/{{number}}"): {},
    ("POST", f"{API}/files/{{file_id}}/versions/{{number}}/restore"): {},
    ("GET", f"{API}/folders/{{folder_id}}/contents"): {},
    ("PATCH", f"{API}/folders/{{folder_id}}"): {"json": {"name": "pwned"}},
    ("PUT", f"{API}/folders/{{folder_id}}/move"): {"json": {"new_parent_id": None}},
    ("DELETE", f"{API}/folders/{{folder_id}}"): {"params": {"confirm": "true"}},
    ("GET", f"{MP}/{{upload_id}}"): {},
    ("PUT", f"{MP}/{{upload_id}}/part/{{number}}"): {"content": b"x" * 5000, "headers": OCTETS},
    ("POST", f"{MP}/{{upload_id}}/complete"): {},
    ("DELETE", f"{MP}/{{upload_id}}"): {},
}

#: Routes with no object id in their path. Those that take one elsewhere (query, body, header)
#: have cases in ``test_ids_in_queries_bodies_and_headers_answer_like_missing_ones``.
ROUTES_WITHOUT_PATH_ID = {
    ("GET", "/openapi.json"),
    ("GET", "/docs"),
    ("GET", "/docs/oauth2-redirect"),
    ("GET", "/health"),
    ("GET", "/ready"),
    ("GET", "/metrics"),
    ("GET", "/.well-known/jwks.json"),
    ("GET", f"{API}/health"),
    ("GET", f"{API}/ready"),
    ("POST", f"{API}/auth/register"),
    ("POST", f"{API}/auth/login"),
    ("POST", f"{API}/auth/refresh"),
    ("POST", f"{API}/auth/logout"),
    ("POST", f"{MP}/init"),  # folder_id in the body
    ("POST", f"{API}/files/upload"),  # X-Folder-ID header or folder_id form field
    ("GET", f"{API}/files"),
    ("GET", f"{API}/storage/usage"),
    ("POST", f"{API}/folders"),  # parent_id in the body
    ("GET", f"{API}/folders/root"),
    ("GET", f"{API}/search"),  # folder_id in the query
}

#: Account administration: ids there are account ids, admins only (test_api_admin.py).
ADMIN_PREFIX = f"{API}/admin/"


def classify(method: str, path: str) -> str:
    if path.startswith(ADMIN_PREFIX):
        return "admin"
    if (method, path) in OBJECT_ROUTES:
        return "object"
    if (method, path) in ROUTES_WITHOUT_PATH_ID and not path_params(path):
        return "no-path-id"
    return "unclassified"


def test_every_route_is_classified(ctx: AppContext) -> None:
    """Every route of the app is an object route with a case here, a listed route without a
    path id, or an admin route; and every listed route exists (the lists stay honest)."""
    routes = app_routes(create_app(ctx=ctx))
    unclassified = [r for r in routes if classify(*r) == "unclassified"]
    assert not unclassified, f"routes without an isolation case: {unclassified}"
    assert all(path_params(p) for _, p in OBJECT_ROUTES)
    missing = (set(OBJECT_ROUTES) | ROUTES_WITHOUT_PATH_ID) - set(routes)
    assert not missing, f"listed routes the app does not have: {missing}"


def strip_request_id(r: httpx.Response) -> tuple[int, Any]:
    body = r.json()
    assert set(body) == {"error"} and body["error"]["request_id"] == r.headers["x-request-id"]
    return r.status_code, {k: v for k, v in body["error"].items() if k != "request_id"}


async def victim(client: httpx.AsyncClient) -> dict[str, Any]:
    """User A: a folder, a file in it with two versions and metadata, and an open multipart
    upload with one part."""
    auth = await register(client, "alice@example.com")
    r = await client.post(f"{API}/folders", json={"name": "private"}, headers=auth)
    assert r.status_code == 201, r.text
    folder_id = r.json()["folder"]["id"]
    file_id = None
    for content in (b"first secret " * 500, b"second secret " * 700):
        r = await client.post(
            f"{API}/files/upload",
            content=content,
            headers={**auth, **OCTETS, "X-File-Name": "secret.txt", "X-Folder-ID": folder_id},
        )
        assert r.status_code == 201, r.text
        file_id = file_id or r.json()["file"]["id"]
        assert r.json()["file"]["id"] == file_id
    assert r.json()["file"]["version"] == 2
    r = await client.put(
        f"{API}/files/{file_id}/metadata", json={"project": "apollo"}, headers=auth
    )
    assert r.status_code == 200
    r = await client.post(
        f"{MP}/init", json={"file_name": "big.bin", "folder_id": folder_id}, headers=auth
    )
    assert r.status_code == 201, r.text
    upload_id = r.json()["upload_id"]
    r = await client.put(
        f"{MP}/{upload_id}/part/1", content=b"part one " * 1000, headers={**auth, **OCTETS}
    )
    assert r.status_code == 200, r.text
    return {
        "auth": auth,
        "ids": {"file_id": file_id, "folder_id": folder_id, "upload_id": upload_id, "number": "1"},
    }


async def snapshot(client: httpx.AsyncClient, a: dict[str, Any]) -> list[Any]:
    """Everything A can see of its objects (timestamps included: a change would show)."""
    auth, ids = a["auth"], a["ids"]
    gets = [
        f"{API}/files/{ids['file_id']}",
        f"{API}/files/{ids['file_id']}/versions",
        f"{API}/folders/{ids['folder_id']}/contents",
        f"{API}/folders/root",
        f"{MP}/{ids['upload_id']}",
        f"{API}/storage/usage",
        f"{API}/files",
    ]
    out: list[Any] = []
    for url in gets:
        r = await client.get(url, headers=auth)
        assert r.status_code == 200, (url, r.text)
        out.append(r.json())
    r = await client.get(f"{API}/search", params={"folder_id": ids["folder_id"]}, headers=auth)
    out.append(r.json())
    for url in (
        f"{API}/files/{ids['file_id']}/download",
        f"{API}/files/{ids['file_id']}/versions/1/download",
    ):
        r = await client.get(url, headers=auth)
        assert r.status_code == 200
        out.append(r.content)
    return out


@pytest.fixture(params=["user", "admin"])
async def intruder(
    request: pytest.FixtureRequest, client: httpx.AsyncClient, ctx: AppContext
) -> dict[str, str]:
    """User B: an ordinary user, or an admin (who gets no access to files either)."""
    if request.param == "user":
        return await register(client, "bob@example.com")
    await make_user(ctx, "bob@example.com", role="admin")
    return bearer((await login(client, "bob@example.com"))["access_token"])


def fill(path: str, ids: dict[str, str]) -> str:
    for name in path_params(path):
        path = path.replace(f"{{{name}}}", ids[name])
    return path


async def test_other_users_ids_answer_like_missing_ones(
    client: httpx.AsyncClient, intruder: dict[str, str]
) -> None:
    """B walks every object route with A's ids: each answer is the 404 a random id gets, and
    A's file, versions, metadata, folder and multipart session are unchanged afterwards."""
    a = await victim(client)
    before = await snapshot(client, a)
    b = intruder
    for (method, path), extra in OBJECT_ROUTES.items():
        kwargs = {**extra, "headers": {**extra.get("headers", {}), **b}}
        random_ids = {k: str(uuid.uuid4()) for k in a["ids"]} | {"number": "1"}
        reference = await client.request(method, fill(path, random_ids), **kwargs)
        answer = await client.request(method, fill(path, a["ids"]), **kwargs)
        assert reference.status_code == 404, (method, path, reference.text)
        assert strip_request_id(answer) == strip_request_id(reference), (method, path)
        assert reference.json()["error"]["code"].endswith("NOT_FOUND")
    assert await snapshot(client, a) == before
    # A's upload session still completes into a third file version's sibling.
    r = await client.post(f"{MP}/{a['ids']['upload_id']}/complete", headers=a["auth"])
    assert r.status_code == 201, r.text


async def test_ids_in_queries_bodies_and_headers_answer_like_missing_ones(
    client: httpx.AsyncClient, intruder: dict[str, str]
) -> None:
    """A's folder id as a target (search scope, new folder's parent, move target, upload
    folder, multipart folder) answers like a random id, and nothing lands in A's folder."""
    a = await victim(client)
    before = await snapshot(client, a)
    b = intruder
    r = await client.post(f"{API}/folders", json={"name": "mine"}, headers=b)
    own_folder = r.json()["folder"]["id"]
    r = await client.post(
        f"{API}/files/upload", content=b"bob", headers={**b, **OCTETS, "X-File-Name": "bob.txt"}
    )
    own_file = r.json()["file"]["id"]

    def requests(target: str) -> list[tuple[str, str, dict[str, Any]]]:
        return [
            ("GET", f"{API}/search", {"params": {"folder_id": target}}),
            ("GET", f"{API}/search", {"params": {"folder_id": target, "q": "secret"}}),
            ("POST", f"{API}/folders", {"json": {"name": "x", "parent_id": target}}),
            ("PUT", f"{API}/files/{own_file}/move", {"json": {"new_parent_id": target}}),
            ("PUT", f"{API}/folders/{own_folder}/move", {"json": {"new_parent_id": target}}),
            (
                "POST",
                f"{API}/files/upload",
                {"content": b"y", "headers": {**OCTETS, "X-File-Name": "y", "X-Folder-ID": target}},
            ),
            (
                "POST",
                f"{API}/files/upload",
                {"files": {"file": ("z.txt", b"z")}, "data": {"folder_id": target}},
            ),
            ("POST", f"{MP}/init", {"json": {"file_name": "m", "folder_id": target}}),
        ]

    for (method, url, kw), (_, ref_url, ref_kw) in zip(
        requests(a["ids"]["folder_id"]), requests(str(uuid.uuid4())), strict=True
    ):
        answer = await client.request(
            method, url, **{**kw, "headers": {**kw.get("headers", {}), **b}}
        )
        reference = await client.request(
            method, ref_url, **{**ref_kw, "headers": {**ref_kw.get("headers", {}), **b}}
        )
        assert reference.status_code == 404, (method, url, reference.text)
        assert strip_request_id(answer) == strip_request_id(reference), (method, url)
    assert await snapshot(client, a) == before
