"""Reading a request body: Content-Length or chunked, size limits, multipart form fields."""

from __future__ import annotations

import email.parser
import email.policy
import io
from collections.abc import Iterable, Iterator
from email.message import Message

from tally.embedded.clickhouse.errors import ClickHouseError, ErrorCode

READ_CHUNK = 1 << 20


class RequestBody:
    """The raw request body as a single-pass iterator of chunks (Content-Length or chunked)."""

    def __init__(self, rfile: io.BufferedIOBase, headers: Message) -> None:
        self._rfile = rfile
        self.complete = False
        chunked = "chunked" in headers.get("Transfer-Encoding", "").lower()
        self._chunks = self._read_chunked() if chunked else self._read_sized(headers)

    def __iter__(self) -> Iterator[bytes]:
        return self._chunks

    def drain(self) -> None:
        """Read and drop what is left, so the connection can carry the next request."""
        for _ in self._chunks:
            pass

    def _read_sized(self, headers: Message) -> Iterator[bytes]:
        try:
            remaining = int(headers.get("Content-Length") or 0)
        except ValueError:
            raise ClickHouseError.of(ErrorCode.BAD_ARGUMENTS, "Invalid Content-Length") from None
        yield from self._read_exactly(remaining, "body")
        self.complete = True

    def _read_chunked(self) -> Iterator[bytes]:
        while size := self._chunk_size():
            yield from self._read_exactly(size, "chunk")
            self._rfile.readline(65537)  # the CRLF after each chunk
        while self._rfile.readline(65537) not in (b"\r\n", b"\n", b""):
            pass  # trailers
        self.complete = True

    def _read_exactly(self, size: int, part: str) -> Iterator[bytes]:
        """``size`` bytes in pieces of at most ``READ_CHUNK``; a short read is a lost client."""
        while size > 0:
            data = self._rfile.read(min(size, READ_CHUNK))
            if not data:
                raise ConnectionError(f"client closed the connection mid-{part}")
            size -= len(data)
            yield data

    def _chunk_size(self) -> int:
        line = self._rfile.readline(65537)
        try:
            return int(line.split(b";", 1)[0].strip(), 16)
        except ValueError:
            raise ClickHouseError.of(ErrorCode.BAD_ARGUMENTS, "Malformed chunked body") from None


def form_fields(content_type: str, body: bytes) -> dict[str, str]:
    """Plain fields of a ``multipart/form-data`` body (clickhouse-connect sends long binds so)."""
    raw = f"Content-Type: {content_type}\r\n\r\n".encode() + body
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(raw)
    fields = {}
    for part in message.iter_parts():  # type: ignore[attr-defined]
        if part.get_filename() is not None:
            raise ClickHouseError.of(ErrorCode.NOT_IMPLEMENTED, "External data is not supported")
        name = part.get_param("name", header="content-disposition")
        fields[str(name)] = part.get_payload(decode=True).decode()
    return fields


def body_too_large(what: str, limit: int) -> ClickHouseError:
    """The 413 answer for a body over ``limit`` bytes."""
    return ClickHouseError.of(
        ErrorCode.QUERY_IS_TOO_LARGE, f"{what} is larger than the server's limit of {limit} bytes"
    )


def read_capped(chunks: Iterable[bytes], limit: int, what: str, start: bytes = b"") -> bytes:
    """``start`` and every chunk joined; a 413 error as soon as they exceed ``limit`` bytes."""
    parts, size = [start], len(start)
    for chunk in chunks:
        size += len(chunk)
        if size > limit:
            raise body_too_large(what, limit)
        parts.append(chunk)
    if size > limit:
        raise body_too_large(what, limit)
    return b"".join(parts)
