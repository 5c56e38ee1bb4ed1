"""Folders end to end on SQLite and PostgreSQL: create, browse, rename, move, delete subtrees."""

from __future__ import annotations

import hashlib
import os
import uuid
from typing import Any

import httpx
import pytest

from tests.conftest import register
from tests.integration._refcounts import assert_accounting, chunk_refs
from tests.integration.test_api_files import API, upload


async def mkdir(
    client: httpx.AsyncClient, auth: dict[str, str], name: str, parent: str | None = None
) -> str:
    r = await client.post(f"{API}/folders", json={"name": name, "parent_id": parent}, headers=auth)
    assert r.status_code == 201, r.text
    return str(r.json()["folder"]["id"])


async def root_id(client: httpx.AsyncClient, auth: dict[str, str]) -> str:
    r = await client.get(f"{API}/folders/root", headers=auth)
    assert r.status_code == 200, r.text
    return str(r.json()["folder"]["id"])


async def names(
    client: httpx.AsyncClient, auth: dict[str, str], folder: str, **params: Any
) -> list[str]:
    r = await client.get(f"{API}/folders/{folder}/contents", params=params, headers=auth)
    assert r.status_code == 200, r.text
    return [e["name"] for e in r.json()["entries"]]


async def test_nested_folders_and_browsing_from_root(client: httpx.AsyncClient) -> None:
    """Folders nest to any depth; /folders/root gives the root id and its contents."""
    auth = await register(client)
    r = await client.get(f"{API}/folders/root", headers=auth)
    assert r.status_code == 200
    body = r.json()
    root = body["folder"]
    assert root["parent_id"] is None and body["entries"] == [] and body["total"] == 0
    parent = None
    chain = []
    for depth in range(12):
        parent = await mkdir(client, auth, f"level{depth}", parent)
        chain.append(parent)
    r = await client.get(f"{API}/folders/root", headers=auth)
    entries = r.json()["entries"]
    assert [(e["name"], e["type"], e["id"]) for e in entries] == [("level0", "folder", chain[0])]
    assert entries[0]["parent_id"] == root["id"] and entries[0]["size"] == 0
    assert await names(client, auth, chain[5]) == ["level6"]
    r = await client.get(f"{API}/folders/{chain[11]}/contents", headers=auth)
    assert r.json()["folder"]["parent_id"] == chain[10] and r.json()["entries"] == []
    # "root" works as an id too.
    assert await names(client, auth, "root") == ["level0"]


async def test_contents_folders_first_then_by_name_paginated(client: httpx.AsyncClient) -> None:
    """Contents list folders first, then files, each by name (code-point order); pages
    concatenate to the whole listing."""
    auth = await register(client)
    for n in ("b", "a"):
        await mkdir(client, auth, n)
    for n in ("c.txt", "a.txt", "B.bin"):
        assert (await upload(client, auth, n.encode() * 10, name=n)).status_code == 201
    root = await root_id(client, auth)
    everything = await names(client, auth, root)
    assert everything == ["a", "b", "B.bin", "a.txt", "c.txt"]
    r = await client.get(f"{API}/folders/{root}/contents", params={"page_size": 2}, headers=auth)
    body = r.json()
    assert body["total"] == 5 and body["total_pages"] == 3 and body["page_size"] == 2
    pages = []
    for page in (1, 2, 3):
        pages += await names(client, auth, root, page=page, page_size=2)
    assert pages == everything
    files = r.json()["entries"]
    assert files[0]["type"] == "folder" and files[0]["checksum"] is None
    f = (await client.get(f"{API}/folders/{root}/contents", headers=auth)).json()["entries"][2]
    assert f["type"] == "file" and f["checksum"] == hashlib.sha256(b"B.bin" * 10).hexdigest()
    assert f["version"] == 1 and f["size"] == 50 and f["mime_type"]


@pytest.mark.parametrize(
    "params", [{"page_size": 0}, {"page_size": 1001}, {"page": 0}, {"page_size": "x"}]
)
async def test_contents_page_size_validated(
    client: httpx.AsyncClient, params: dict[str, Any]
) -> None:
    """page_size outside 1..1000 (or a page below 1) is a 400 VALIDATION_FAILED."""
    auth = await register(client)
    r = await client.get(f"{API}/folders/root", params=params, headers=auth)
    assert r.status_code == 400 and r.json()["error"]["code"] == "VALIDATION_FAILED"
    root = await root_id(client, auth)
    r = await client.get(f"{API}/folders/{root}/contents", params=params, headers=auth)
    assert r.status_code == 400


async def test_create_folder_refusals(client: httpx.AsyncClient) -> None:
    """A taken name (folder or file) is 409 NAME_CONFLICT; a bad name or body 400; a parent that
    is not one of the user's folders 404 FOLDER_NOT_FOUND."""
    alice = await register(client)
    bob = await register(client, "bob@example.com")
    await mkdir(client, alice, "docs")
    await upload(client, alice, b"x", name="file.txt")
    for name in ("docs", "file.txt"):
        r = await client.post(f"{API}/folders", json={"name": name}, headers=alice)
        assert r.status_code == 409 and r.json()["error"]["code"] == "NAME_CONFLICT"
    for name in ("", "a/b", "..", " x", "x" * 256):
        r = await client.post(f"{API}/folders", json={"name": name}, headers=alice)
        assert r.status_code == 400 and r.json()["error"]["code"] == "VALIDATION_FAILED", name
    for body in ({}, {"name": 5}, {"name": "ok", "extra": 1}):
        r = await client.post(f"{API}/folders", json=body, headers=alice)
        assert r.status_code == 400, body
    bobs = await mkdir(client, bob, "bobs")
    file_id = (await upload(client, alice, b"y", name="y.txt")).json()["file"]["id"]
    for parent in (bobs, str(uuid.uuid4()), "garbage", file_id):
        r = await client.post(
            f"{API}/folders", json={"name": "sub", "parent_id": parent}, headers=alice
        )
        assert r.status_code == 404 and r.json()["error"]["code"] == "FOLDER_NOT_FOUND", parent
        r = await client.get(f"{API}/folders/{parent}/contents", headers=alice)
        assert r.status_code == 404 and r.json()["error"]["code"] == "FOLDER_NOT_FOUND"


async def test_same_name_in_different_folders_is_fine(client: httpx.AsyncClient) -> None:
    """Names are unique per folder only; uploads with X-Folder-ID land in that folder."""
    auth = await register(client)
    a = await mkdir(client, auth, "a")
    b = await mkdir(client, auth, "b")
    await mkdir(client, auth, "same", a)
    await mkdir(client, auth, "same", b)
    f = await upload(client, auth, b"in a", name="x.txt", extra={"X-Folder-ID": a})
    assert f.status_code == 201 and f.json()["file"]["folder_id"] == a
    assert await names(client, auth, a) == ["same", "x.txt"]
    assert await names(client, auth, b) == ["same"]
    assert await names(client, auth, "root") == ["a", "b"]


async def test_rename_file_and_folder(client: httpx.AsyncClient) -> None:
    """PATCH renames; the download carries the new name; a taken name is 409, a bad one 400,
    someone else's entry 404; the root cannot be renamed."""
    alice = await register(client)
    bob = await register(client, "bob@example.com")
    fid = (await upload(client, alice, b"content", name="old.txt")).json()["file"]["id"]
    await upload(client, alice, b"other", name="taken.txt")
    r = await client.patch(f"{API}/files/{fid}", json={"name": "new.txt"}, headers=alice)
    assert r.status_code == 200 and r.json()["file"]["name"] == "new.txt"
    assert r.json()["file"]["version"] == 1
    r = await client.get(f"{API}/files/{fid}/download", headers=alice)
    assert r.content == b"content" and "new.txt" in r.headers["content-disposition"]
    r = await client.patch(f"{API}/files/{fid}", json={"name": "taken.txt"}, headers=alice)
    assert r.status_code == 409 and r.json()["error"]["code"] == "NAME_CONFLICT"
    r = await client.patch(f"{API}/files/{fid}", json={"name": "new.txt"}, headers=alice)
    assert r.status_code == 200  # same name: nothing to do
    r = await client.patch(f"{API}/files/{fid}", json={"name": "a/b"}, headers=alice)
    assert r.status_code == 400
    r = await client.patch(f"{API}/files/{fid}", json={"name": "mine"}, headers=bob)
    assert r.status_code == 404 and r.json()["error"]["code"] == "FILE_NOT_FOUND"

    folder = await mkdir(client, alice, "photos")
    r = await client.patch(f"{API}/folders/{folder}", json={"name": "pictures"}, headers=alice)
    assert r.status_code == 200 and r.json()["folder"]["name"] == "pictures"
    r = await client.patch(f"{API}/folders/{folder}", json={"name": "new.txt"}, headers=alice)
    assert r.status_code == 409
    r = await client.patch(f"{API}/folders/{folder}", json={"name": "x"}, headers=bob)
    assert r.status_code == 404 and r.json()["error"]["code"] == "FOLDER_NOT_FOUND"
    r = await client.patch(f"{API}/folders/{fid}", json={"name": "x"}, headers=alice)
    assert r.status_code == 404  # a file is not a folder
    root = await root_id(client, alice)
    r = await client.patch(f"{API}/folders/{root}", json={"name": "x"}, headers=alice)
    assert r.status_code == 400
    assert await names(client, alice, "root") == ["pictures", "new.txt", "taken.txt"]


async def test_move_file(client: httpx.AsyncClient) -> None:
    """PUT /files/{id}/move moves into a folder or (null) the root; a target that is not the
    user's folder is 404; a name taken in the target 409."""
    alice = await register(client)
    bob = await register(client, "bob@example.com")
    docs = await mkdir(client, alice, "docs")
    fid = (await upload(client, alice, b"data", name="a.txt")).json()["file"]["id"]
    r = await client.put(f"{API}/files/{fid}/move", json={"new_parent_id": docs}, headers=alice)
    assert r.status_code == 200 and r.json()["file"]["folder_id"] == docs
    assert await names(client, alice, docs) == ["a.txt"]
    assert await names(client, alice, "root") == ["docs"]
    r = await client.put(f"{API}/files/{fid}/move", json={"new_parent_id": None}, headers=alice)
    assert r.status_code == 200 and r.json()["file"]["folder_id"] == await root_id(client, alice)
    # Name taken in the target.
    await upload(client, alice, b"other", name="a.txt", extra={"X-Folder-ID": docs})
    r = await client.put(f"{API}/files/{fid}/move", json={"new_parent_id": docs}, headers=alice)
    assert r.status_code == 409 and r.json()["error"]["code"] == "NAME_CONFLICT"
    # Targets that are not the user's folders.
    bobs = await mkdir(client, bob, "bobs")
    other_file = (await upload(client, alice, b"f", name="f")).json()["file"]["id"]
    for target in (bobs, str(uuid.uuid4()), "garbage", other_file):
        r = await client.put(
            f"{API}/files/{fid}/move", json={"new_parent_id": target}, headers=alice
        )
        assert r.status_code == 404 and r.json()["error"]["code"] == "FOLDER_NOT_FOUND", target
    r = await client.put(f"{API}/files/{fid}/move", json={"new_parent_id": bobs}, headers=bob)
    assert r.status_code == 404 and r.json()["error"]["code"] == "FILE_NOT_FOUND"
    r = await client.put(f"{API}/files/{fid}/move", json={}, headers=alice)
    assert r.status_code == 400  # new_parent_id is required (null means the root)
    r = await client.get(f"{API}/files/{fid}/download", headers=alice)
    assert r.content == b"data"


async def test_move_folder_not_into_own_subtree(client: httpx.AsyncClient) -> None:
    """A folder cannot move into itself or its subtree (400); elsewhere it moves with its
    contents; the root cannot move."""
    auth = await register(client)
    a = await mkdir(client, auth, "a")
    b = await mkdir(client, auth, "b", a)
    c = await mkdir(client, auth, "c", b)
    await upload(client, auth, b"deep", name="deep.txt", extra={"X-Folder-ID": c})
    for target in (a, b, c):
        r = await client.put(
            f"{API}/folders/{a}/move", json={"new_parent_id": target}, headers=auth
        )
        assert r.status_code == 400 and r.json()["error"]["code"] == "VALIDATION_FAILED", target
    r = await client.put(f"{API}/folders/{b}/move", json={"new_parent_id": None}, headers=auth)
    assert r.status_code == 200 and r.json()["folder"]["parent_id"] == await root_id(client, auth)
    assert await names(client, auth, "root") == ["a", "b"]
    assert await names(client, auth, a) == []
    assert await names(client, auth, c) == ["deep.txt"]
    # Now a can go under c (no longer its descendant).
    r = await client.put(f"{API}/folders/{a}/move", json={"new_parent_id": c}, headers=auth)
    assert r.status_code == 200
    assert await names(client, auth, c) == ["a", "deep.txt"]
    root = await root_id(client, auth)
    r = await client.put(f"{API}/folders/{root}/move", json={"new_parent_id": c}, headers=auth)
    assert r.status_code == 400
    # Name taken in the target.
    await mkdir(client, auth, "a")
    r = await client.put(f"{API}/folders/{a}/move", json={"new_parent_id": None}, headers=auth)
    assert r.status_code == 409 and r.json()["error"]["code"] == "NAME_CONFLICT"


async def test_delete_folder_needs_confirm_and_not_root(client: httpx.AsyncClient) -> None:
    """Without confirm=true a folder delete is 400 and deletes nothing; the root is 400;
    someone else's folder 404."""
    alice = await register(client)
    bob = await register(client, "bob@example.com")
    docs = await mkdir(client, alice, "docs")
    await upload(client, alice, b"keep", name="k.txt", extra={"X-Folder-ID": docs})
    for params in ({}, {"confirm": "false"}):
        r = await client.delete(f"{API}/folders/{docs}", params=params, headers=alice)
        assert r.status_code == 400 and r.json()["error"]["code"] == "VALIDATION_FAILED"
    assert await names(client, alice, docs) == ["k.txt"]
    root = await root_id(client, alice)
    r = await client.delete(f"{API}/folders/{root}", params={"confirm": "true"}, headers=alice)
    assert r.status_code == 400
    for target in (docs, str(uuid.uuid4()), "nope"):
        r = await client.delete(f"{API}/folders/{target}", params={"confirm": "true"}, headers=bob)
        assert r.status_code == 404 and r.json()["error"]["code"] == "FOLDER_NOT_FOUND"
    assert await names(client, alice, docs) == ["k.txt"]


async def test_delete_folder_releases_subtree_exactly(client: httpx.AsyncClient, ctx: Any) -> None:
    """Deleting a folder removes its whole subtree at once and releases every descendant's
    versions: chunk reference counts afterwards equal exactly the occurrences still referenced,
    so only chunks no other file uses drop to zero; a file outside the subtree sharing chunks
    stays downloadable; usage drops by the subtree's logical bytes (reference defect 2)."""
    auth = await register(client)
    shared = os.urandom(200_000)
    unique1, unique2, unique3 = (os.urandom(120_000) for _ in range(3))
    outside = (await upload(client, auth, shared, name="outside.bin")).json()["file"]
    a = await mkdir(client, auth, "a")
    b = await mkdir(client, auth, "b", a)
    c = await mkdir(client, auth, "c", b)
    await upload(client, auth, shared, name="copy.bin", extra={"X-Folder-ID": a})
    f2 = await upload(client, auth, unique1, name="v.bin", extra={"X-Folder-ID": b})
    await upload(client, auth, unique2, name="v.bin", extra={"X-Folder-ID": b})  # version 2
    await upload(client, auth, unique3 + shared, name="mix.bin", extra={"X-Folder-ID": c})
    keep_dir = await mkdir(client, auth, "keep")
    await upload(client, auth, unique1, name="also-v1.bin", extra={"X-Folder-ID": keep_dir})
    before = await chunk_refs(ctx)
    await assert_accounting(ctx)

    r = await client.delete(f"{API}/folders/{a}", params={"confirm": "true"}, headers=auth)
    assert r.status_code == 204, r.text
    await assert_accounting(ctx)
    after = await chunk_refs(ctx)
    assert set(after) == set(before)  # nothing deleted outright: GC's job after its grace period
    from dfms.chunking import iter_file_chunks
    from dfms.context import chunk_params

    def hashes(data: bytes) -> set[str]:
        import io

        return {c.sha256 for c in iter_file_chunks(io.BytesIO(data), chunk_params(ctx.settings))}

    still_used = hashes(shared) | hashes(unique1)
    zero = {h for h, n in after.items() if n == 0}
    assert zero == (hashes(unique2) | hashes(unique3 + shared)) - still_used
    assert all(after[h] >= 1 for h in still_used)

    for folder in (a, b, c):
        r = await client.get(f"{API}/folders/{folder}/contents", headers=auth)
        assert r.status_code == 404
    assert (
        await client.get(f"{API}/files/{f2.json()['file']['id']}", headers=auth)
    ).status_code == 404
    r = await client.get(f"{API}/files/{outside['id']}/download", headers=auth)
    assert r.status_code == 200 and r.content == shared
    usage = (await client.get(f"{API}/storage/usage", headers=auth)).json()
    assert usage["used"] == len(shared) + len(unique1)
    assert await names(client, auth, "root") == ["keep", "outside.bin"]
    # Uploading into the deleted folder is refused; its name is free again.
    r = await upload(client, auth, b"late", extra={"X-Folder-ID": b})
    assert r.status_code == 404
    await mkdir(client, auth, "a")


async def test_tree_operations_keep_accounting_exact(client: httpx.AsyncClient, ctx: Any) -> None:
    """Moves and renames change no reference count or usage."""
    auth = await register(client)
    a = await mkdir(client, auth, "a")
    fid = (await upload(client, auth, os.urandom(50_000), name="f")).json()["file"]["id"]
    before = await chunk_refs(ctx)
    await client.put(f"{API}/files/{fid}/move", json={"new_parent_id": a}, headers=auth)
    await client.patch(f"{API}/files/{fid}", json={"name": "g"}, headers=auth)
    await client.put(f"{API}/folders/{a}/move", json={"new_parent_id": None}, headers=auth)
    assert await chunk_refs(ctx) == before
    await assert_accounting(ctx)


async def test_concurrent_opposite_moves_cannot_build_a_cycle(client: httpx.AsyncClient) -> None:
    """Moving a into b and b into a at the same time: one succeeds, the other is refused (tree
    changes of one user are serialised), so no cycle can form."""
    import asyncio

    auth = await register(client)
    for _ in range(3):
        a = await mkdir(client, auth, f"a-{uuid.uuid4().hex[:6]}")
        b = await mkdir(client, auth, f"b-{uuid.uuid4().hex[:6]}")
        ra, rb = await asyncio.gather(
            client.put(f"{API}/folders/{a}/move", json={"new_parent_id": b}, headers=auth),
            client.put(f"{API}/folders/{b}/move", json={"new_parent_id": a}, headers=auth),
        )
        assert sorted([ra.status_code, rb.status_code]) == [200, 400]
        # Whichever moved, the other is still reachable from the root.
        top = [
            e["id"]
            for e in (await client.get(f"{API}/folders/root", headers=auth)).json()["entries"]
        ]
        assert (a in top) != (b in top)


async def test_upload_racing_a_folder_delete_leaves_nothing_behind(
    client: httpx.AsyncClient, ctx: Any
) -> None:
    """An upload into a folder that is deleted at the same moment either lands before the delete
    (and goes with it) or is refused: no live file is left in a deleted folder and the
    accounting stays exact."""
    import asyncio

    auth = await register(client)
    for _ in range(3):
        box = await mkdir(client, auth, f"box-{uuid.uuid4().hex[:6]}")
        up, rm = await asyncio.gather(
            upload(client, auth, os.urandom(30_000), name="race.bin", extra={"X-Folder-ID": box}),
            client.delete(f"{API}/folders/{box}", params={"confirm": "true"}, headers=auth),
        )
        assert rm.status_code == 204
        assert up.status_code in (201, 404)
        if up.status_code == 201:
            fid = up.json()["file"]["id"]
            assert (await client.get(f"{API}/files/{fid}", headers=auth)).status_code == 404
    assert (await client.get(f"{API}/files", headers=auth)).json()["total"] == 0
    assert (await client.get(f"{API}/storage/usage", headers=auth)).json()["used"] == 0
    await assert_accounting(ctx)
