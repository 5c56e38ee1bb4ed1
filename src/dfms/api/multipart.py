"""Streaming ``multipart/form-data`` reader: yields the ``file`` field's bytes as they arrive
(never spooled whole to memory or disk), and collects small text fields before and after it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from dfms.errors import ValidationFailed

MAX_FIELD_BYTES = 64 * 1024
FILE_FIELD = "file"


class MultipartFileReader:
    """Drives a push parser over the request body; see :meth:`open` and :meth:`file_bytes`."""

    def __init__(self, body: AsyncIterator[bytes], content_type: str) -> None:
        _, params = parse_options_header(content_type.encode("latin-1"))
        boundary = params.get(b"boundary")
        if not boundary:
            raise ValidationFailed("multipart/form-data body without a boundary")
        self._body = body
        self.fields: dict[str, str] = {}
        self.filename: str | None = None
        self.content_type: str | None = None
        self._out: list[bytes] = []
        self._headers: dict[bytes, bytes] = {}
        self._hname = b""
        self._hvalue = b""
        self._part: str | None = None  # name of the current part
        self._field_buf = bytearray()
        self._in_file = False
        self._file_done = False
        self._file_seen = False
        self._ended = False
        self._parser = MultipartParser(boundary, self._callbacks())

    def _callbacks(self) -> Any:
        def on_part_begin() -> None:
            self._headers = {}
            self._part = None
            self._field_buf = bytearray()

        def on_header_field(data: bytes, start: int, end: int) -> None:
            self._hname += data[start:end]

        def on_header_value(data: bytes, start: int, end: int) -> None:
            self._hvalue += data[start:end]

        def on_header_end() -> None:
            self._headers[self._hname.lower()] = self._hvalue
            self._hname = b""
            self._hvalue = b""

        def on_headers_finished() -> None:
            _, disp = parse_options_header(self._headers.get(b"content-disposition", b""))
            name = disp.get(b"name", b"").decode("utf-8", "replace")
            self._part = name
            if name == FILE_FIELD and not self._file_seen:
                self._file_seen = True
                self._in_file = True
                raw = disp.get(b"filename")
                self.filename = raw.decode("utf-8", "replace") if raw is not None else None
                ctype = self._headers.get(b"content-type")
                self.content_type = ctype.decode("latin-1") if ctype else None

        def on_part_data(data: bytes, start: int, end: int) -> None:
            if self._in_file:
                self._out.append(data[start:end])
            else:
                self._field_buf += data[start:end]
                if len(self._field_buf) > MAX_FIELD_BYTES:
                    raise ValidationFailed(f"form field {self._part!r} is too large")

        def on_part_end() -> None:
            if self._in_file:
                self._in_file = False
                self._file_done = True
            elif self._part:
                self.fields[self._part] = self._field_buf.decode("utf-8", "replace")

        def on_end() -> None:
            self._ended = True

        return {
            "on_part_begin": on_part_begin,
            "on_header_field": on_header_field,
            "on_header_value": on_header_value,
            "on_header_end": on_header_end,
            "on_headers_finished": on_headers_finished,
            "on_part_data": on_part_data,
            "on_part_end": on_part_end,
            "on_end": on_end,
        }

    async def _feed(self) -> bool:
        """Feed one piece of the body; False at the end of the body."""
        try:
            piece = await anext(self._body)
        except StopAsyncIteration:
            return False
        try:
            self._parser.write(piece)
        except MultipartParseError as exc:
            raise ValidationFailed(f"malformed multipart body: {exc}") from exc
        return True

    async def open(self) -> None:
        """Read until the ``file`` part's headers (fields before it are collected)."""
        while not self._file_seen:
            if not await self._feed():
                raise ValidationFailed("multipart body has no 'file' field")

    async def file_bytes(self) -> AsyncIterator[bytes]:
        """Yield the file field's bytes; then read the rest of the body for trailing fields."""
        while True:
            if self._out:
                out, self._out = self._out, []
                for piece in out:
                    yield piece
            if self._file_done:
                break
            if not await self._feed():
                break
        if not self._file_done:
            raise ValidationFailed("multipart body ended inside the file field")
        while await self._feed():
            pass
        self._out.clear()
        if not self._ended:
            raise ValidationFailed("multipart body is truncated")
