"""The one place where exceptions become HTTP responses (the error envelope of the reference):
``{"error": {"code": ..., "message": ..., "request_id": ...}}``."""

from __future__ import annotations

import re
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Scope

from dfms.errors import DFMSError, RangeNotSatisfiable

log = structlog.get_logger("dfms.api")

_HTTP_CODES = {
    400: "VALIDATION_FAILED",
    401: "AUTH_TOKEN_MISSING",
    403: "AUTH_FORBIDDEN",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    413: "PAYLOAD_TOO_LARGE",
    415: "UNSUPPORTED_MEDIA_TYPE",
    429: "RATE_LIMIT_EXCEEDED",
}


def scope_request_id(scope: Scope) -> str:
    """The request id RequestContextMiddleware gave this request ("" outside it)."""
    return str(scope.get("state", {}).get("request_id", ""))


def request_id(request: Request) -> str:
    return scope_request_id(request.scope)


def envelope(
    request: Request, status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(
        {"error": {"code": code, "message": message, "request_id": request_id(request)}},
        status_code=status,
        headers=headers,
    )


def error_response(exc: DFMSError, rid: str) -> JSONResponse:
    """The envelope and headers of a :class:`DFMSError` (also used by pure ASGI middleware,
    which answers before any exception handler runs)."""
    headers: dict[str, str] = {}
    if isinstance(exc, RangeNotSatisfiable) and "size" in exc.details:
        headers["Content-Range"] = f"bytes */{exc.details['size']}"
    if exc.status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    if "retry_after" in exc.details:
        headers["Retry-After"] = str(exc.details["retry_after"])
    return JSONResponse(
        {"error": {"code": exc.code, "message": exc.message, "request_id": rid}},
        status_code=exc.status,
        headers=headers,
    )


async def _dfms_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, DFMSError)
    if exc.status >= 500:
        log.error(
            "request_failed", code=exc.code, error=exc.message, request_id=request_id(request)
        )
    return error_response(exc, request_id(request))


def _describe(errors: list[Any]) -> str:
    parts = []
    for err in errors[:5]:
        loc = ".".join(str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path"))
        parts.append(f"{loc or 'request'}: {err.get('msg', 'invalid')}")
    return "; ".join(parts) or "invalid request"


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return envelope(request, 400, "VALIDATION_FAILED", _describe(list(exc.errors())))


_PARAM = re.compile(r"\\\{[^/]*?\\\}")


def _method_index(app: FastAPI) -> list[tuple[re.Pattern[str], int, frozenset[str]]]:
    """(path pattern, number of path parameters, methods) of every operation in the app's
    OpenAPI spec, built once."""
    index: list[tuple[re.Pattern[str], int, frozenset[str]]] | None = getattr(
        app.state, "method_index", None
    )
    if index is None:
        index = []
        for path, item in app.openapi().get("paths", {}).items():
            escaped = re.escape(path)
            pattern = re.compile(_PARAM.sub("[^/]+", escaped))
            methods = frozenset(m.upper() for m in item if m != "parameters")
            index.append((pattern, len(_PARAM.findall(escaped)), methods))
        app.state.method_index = index
    return index


def _allowed(request: Request) -> str | None:
    """The ``Allow`` header of a 405: the methods of the path's most specific operations
    (``/folders/root`` rather than ``/folders/{folder_id}``), all of them, where routing names
    only the first route that matched the path."""
    path = request.scope.get("path", "")
    matches = [
        (n, ops) for pattern, n, ops in _method_index(request.app) if pattern.fullmatch(path)
    ]
    if not matches:
        return None
    fewest = min(n for n, _ in matches)
    return ", ".join(sorted(set().union(*(ops for n, ops in matches if n == fewest))))


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = _HTTP_CODES.get(exc.status_code, "HTTP_ERROR")
    message = exc.detail if isinstance(exc.detail, str) else "request failed"
    headers = dict(exc.headers or {})
    if exc.status_code == 405 and (allow := _allowed(request)):
        headers["Allow"] = allow
    return envelope(request, exc.status_code, code, message, headers)


async def _unhandled(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled_error", request_id=request_id(request), exc_info=exc)
    return envelope(request, 500, "INTERNAL_ERROR", "internal error")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(DFMSError, _dfms_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unhandled)
