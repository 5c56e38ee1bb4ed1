"""The API's path layout, for the pure ASGI middleware that classifies requests before routing
(rate limits, request limits). One place, so they cannot disagree about a route."""

from __future__ import annotations

import re
from typing import Final

from starlette.types import Scope

API_PREFIX: Final = "/api/v1"
#: The single upload (raw or form body).
UPLOAD_PATH: Final = f"{API_PREFIX}/files/upload"
#: A part of a multipart upload (raw body).
MULTIPART_PART: Final = re.compile(rf"^{UPLOAD_PATH}/multipart/[^/]+/part/[^/]+$")


def route_path(scope: Scope) -> str:
    """The request path without the ASGI ``root_path`` (as routes see it)."""
    path: str = scope.get("path", "")
    root: str = scope.get("root_path", "")
    if root and path.startswith(root):
        path = path[len(root) :]
    return path


def streams_file_content(path: str) -> bool:
    """Routes whose bodies are file content, streamed and limited by the upload code itself:
    the single upload and the parts of a multipart upload."""
    return path == UPLOAD_PATH or MULTIPART_PART.match(path) is not None
