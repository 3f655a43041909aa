"""Undoing a request body's Content-Encoding (gzip, deflate, lz4, zstd frames) and
``decompress=1`` blocks, and compressing responses like clickhouse-server."""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, Protocol

import lz4.block
import lz4.frame

from tally.embedded.clickhouse.errors import ClickHouseError, ErrorCode

try:
    from compression import zstd  # type: ignore[import-not-found]  # Python 3.14+
except ImportError:
    try:
        from backports import zstd  # type: ignore[no-redef]  # clickhouse-connect's dependency
    except ImportError:
        zstd = None


class _Decoder(Protocol):
    def feed(self, data: bytes) -> bytes: ...
    def finish(self) -> None: ...


class FrameDecoder:
    """Decodes concatenated frames (lz4, zstd) or members (gzip): clients send one per block."""

    def __init__(self, new: Callable[[], Any]) -> None:
        self._new = new
        self._current = new()
        self._open = False

    def feed(self, data: bytes) -> bytes:
        out = []
        while data:
            out.append(self._current.decompress(data))
            self._open = not self._current.eof
            data = b"" if self._open else self._current.unused_data
            if not self._open:
                self._current = self._new()
        return b"".join(out)

    def finish(self) -> None:
        if self._open:
            raise ClickHouseError.of(ErrorCode.CANNOT_DECOMPRESS, "Truncated compressed body")


class NativeBlockDecoder:
    """``decompress=1``: ClickHouse's compressed blocks (checksum, method, sizes, payload).

    The CityHash128 checksums are not verified.
    """

    HEADER = 25  # 16 checksum + 1 method + 4 compressed size (incl. 9 header bytes) + 4 size

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> bytes:
        self._buffer += data
        out = []
        while len(self._buffer) >= self.HEADER:
            method = self._buffer[16]
            total = 16 + int.from_bytes(self._buffer[17:21], "little")
            size = int.from_bytes(self._buffer[21:25], "little")
            if len(self._buffer) < total:
                break
            out.append(_decompress_block(method, bytes(self._buffer[self.HEADER : total]), size))
            del self._buffer[:total]
        return b"".join(out)

    def finish(self) -> None:
        if self._buffer:
            raise ClickHouseError.of(ErrorCode.CANNOT_DECOMPRESS, "Truncated compressed block")


def _decompress_block(method: int, payload: bytes, size: int) -> bytes:
    if method == 0x02:
        return payload
    if method == 0x82:
        return lz4.block.decompress(payload, uncompressed_size=size)
    if method == 0x90 and zstd is not None:
        return zstd.decompress(payload)
    raise ClickHouseError.of(
        ErrorCode.UNKNOWN_COMPRESSION_METHOD, f"Unknown compression method {method:#x}"
    )


def _frame_decoder(encoding: str) -> FrameDecoder:
    if encoding in ("gzip", "x-gzip", "deflate"):
        return FrameDecoder(lambda: zlib.decompressobj(wbits=47))  # gzip or zlib header
    if encoding == "lz4":
        return FrameDecoder(lz4.frame.LZ4FrameDecompressor)
    if encoding == "zstd" and zstd is not None:
        return FrameDecoder(zstd.ZstdDecompressor)
    raise ClickHouseError.of(
        ErrorCode.UNKNOWN_COMPRESSION_METHOD, f"Unsupported Content-Encoding: {encoding}"
    )


_DECOMPRESSION_ERRORS: tuple[type[Exception], ...] = (
    zlib.error,
    RuntimeError,  # lz4
    ValueError,
    EOFError,
    *((zstd.ZstdError,) if zstd is not None else ()),
)


def decoded(chunks: Iterable[bytes], content_encoding: str, native_blocks: bool) -> Iterator[bytes]:
    """The request body with its Content-Encoding, then ``decompress=1`` blocks, undone."""
    encoding = content_encoding.strip().lower()
    decoders: list[_Decoder] = []
    if encoding and encoding != "identity":
        decoders.append(_frame_decoder(encoding))
    if native_blocks:
        decoders.append(NativeBlockDecoder())
    return _decode(chunks, decoders) if decoders else iter(chunks)


def _decode(chunks: Iterable[bytes], decoders: list[_Decoder]) -> Iterator[bytes]:
    try:
        for chunk in chunks:
            for decoder in decoders:
                chunk = decoder.feed(chunk)
            if chunk:
                yield chunk
        for decoder in decoders:
            decoder.finish()
    except _DECOMPRESSION_ERRORS as exc:
        raise ClickHouseError.of(ErrorCode.CANNOT_DECOMPRESS, str(exc)) from None


_RESPONSE_ENCODERS: Mapping[str, Callable[[bytes], bytes]] = {
    "lz4": lz4.frame.compress,
    **({"zstd": zstd.compress} if zstd is not None else {}),
    "gzip": lambda body: gzip.compress(body, compresslevel=3),
    "deflate": lambda body: zlib.compress(body, 3),
}


def encode_response(body: bytes, enabled: str | None, accept_encoding: str) -> tuple[bytes, str]:
    """Compress like clickhouse-server: only with ``enable_http_compression=1`` and an accepted
    encoding (cheapest first). Returns the body and its Content-Encoding (``""`` for none)."""
    if not body or enabled not in ("1", "true", "True"):
        return body, ""
    offered = {part.split(";")[0].strip().lower() for part in accept_encoding.split(",")}
    for name, encode in _RESPONSE_ENCODERS.items():
        if name in offered:
            return encode(body), name
    return body, ""
