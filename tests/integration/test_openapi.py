"""The committed OpenAPI spec is what the app serves, and it declares what the server does."""

from __future__ import annotations

import json
from pathlib import Path

import httpx

from dfms.api.openapi import render

DOC = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"


def test_committed_spec_matches_app() -> None:
    """docs/openapi.json equals the generated spec (run `make openapi` after API changes)."""
    assert DOC.read_text(encoding="utf-8") == render(), "docs/openapi.json is stale: make openapi"


def test_spec_declares_routes_and_errors() -> None:
    """Every route is present, declares a response model and the error envelope."""
    spec = json.loads(render())
    paths = spec["paths"]
    for path in (
        "/api/v1/auth/register",
        "/api/v1/auth/login",
        "/api/v1/auth/refresh",
        "/api/v1/files/upload",
        "/api/v1/files",
        "/api/v1/files/{file_id}",
        "/api/v1/files/{file_id}/download",
        "/api/v1/storage/usage",
        "/api/v1/health",
        "/api/v1/ready",
    ):
        assert path in paths, path
    upload = paths["/api/v1/files/upload"]["post"]
    assert set(upload["requestBody"]["content"]) == {
        "application/octet-stream",
        "multipart/form-data",
    }
    assert "201" in upload["responses"] and "413" in upload["responses"]
    assert "ErrorResponse" in json.dumps(upload["responses"]["413"])


async def test_served_spec_and_docs(client: httpx.AsyncClient) -> None:
    """/openapi.json is served and /docs renders."""
    r = await client.get("/openapi.json")
    assert r.status_code == 200 and r.json()["info"]["title"] == "DFMS"
    r = await client.get("/docs")
    assert r.status_code == 200 and "swagger" in r.text.lower()
