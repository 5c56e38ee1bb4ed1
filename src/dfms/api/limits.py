"""Request size and time limits, as pure ASGI middleware (bodies are never buffered here).

- Request headers larger than ``max_header_bytes`` in all: 431 ``REQUEST_HEADERS_TOO_LARGE``
  (granian enforces its own buffer limit first; this also holds under any other server).
- Bodies of API requests other than the streaming upload routes (JSON bodies, in practice) larger
  than ``max_body``: 413 ``PAYLOAD_TOO_LARGE``, at once from ``Content-Length`` or as soon as the
  bytes received cross the cap (chunked bodies); nothing is processed.
- A client that sends nothing for ``read_timeout`` seconds in the middle of such a body: 408
  ``REQUEST_TIMEOUT``. The upload routes apply the same timeout themselves, per piece, and check
  sizes against ``upload.max_size`` and the quota while streaming.
"""

from __future__ import annotations

import asyncio

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from dfms.api.errors import error_response, scope_request_id
from dfms.api.paths import route_path, streams_file_content
from dfms.errors import (
    DFMSError,
    PayloadTooLarge,
    RequestHeadersTooLarge,
    RequestTimeout,
    ValidationFailed,
)


class RequestLimitsMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        max_header_bytes: int,
        max_body: int,
        read_timeout: float,
    ) -> None:
        self.app = app
        self.max_header_bytes = max_header_bytes
        self.max_body = max_body
        self.read_timeout = read_timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = scope.get("headers", ())
        size = sum(len(name) + len(value) + 4 for name, value in headers)
        if size > self.max_header_bytes:
            await self._refuse(
                scope,
                send,
                RequestHeadersTooLarge(
                    f"request headers of {size} bytes exceed the limit of "
                    f"{self.max_header_bytes} bytes"
                ),
            )
            return
        if streams_file_content(route_path(scope)):
            await self.app(scope, receive, send)
            return
        declared: int | None = None
        for name, value in headers:
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = -1
                if declared < 0:
                    await self._refuse(scope, send, ValidationFailed("invalid Content-Length"))
                    return
        if declared is not None and declared > self.max_body:
            await self._refuse(scope, send, self._too_large())
            return
        await self._run_limited(scope, receive, send)

    def _too_large(self) -> PayloadTooLarge:
        return PayloadTooLarge(f"request body exceeds the limit of {self.max_body} bytes")

    async def _run_limited(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Run the app with a counting, timed ``receive``. A body over the cap, or a stall, is
        raised into the app while it reads; whatever the app then answers (FastAPI turns body
        errors into a generic 400) is replaced by the 413/408 envelope."""
        received = 0
        failure: DFMSError | None = None
        replaced = False

        async def limited() -> Message:
            nonlocal received, failure
            try:
                async with asyncio.timeout(self.read_timeout):
                    message = await receive()
            except TimeoutError as exc:
                failure = RequestTimeout()
                raise failure from exc
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body:
                    failure = self._too_large()
                    raise failure
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal replaced
            if failure is None:
                await send(message)
                return
            if not replaced and message["type"] == "http.response.start":
                replaced = True
                await self._refuse(scope, send, failure)
            # the app's own answer to the failed read is dropped

        try:
            await self.app(scope, limited, guarded_send)
        except DFMSError:
            if failure is None or replaced:
                raise
            await self._refuse(scope, send, failure)

    @staticmethod
    async def _refuse(scope: Scope, send: Send, exc: DFMSError) -> None:
        rid = scope_request_id(scope)
        response = error_response(exc, rid)
        response.headers["connection"] = "close"
        await response(scope, _no_receive, send)


async def _no_receive() -> Message:  # pragma: no cover - a plain JSONResponse never receives
    return {"type": "http.disconnect"}
