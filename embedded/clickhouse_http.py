"""Embedded ClickHouse: one process owns a chDB data path and speaks ClickHouse's HTTP interface.

chDB (the real ClickHouse engine, in-process) lets only one process open a data path. This server
is that process; aggregators, CLIs and people reach it with unmodified clickhouse-connect clients
(sync and async) or curl, exactly as they would reach clickhouse-server.

    python -m tally.embedded.clickhouse_http --path DIR [--host 127.0.0.1 [--allow-remote]]
        [--port 0] [--ready-file FILE] [--user default] [--password-file FILE]

From Python, ``start_clickhouse(path)`` (re-exported from ``clickhouse_process``) runs it as a
child process and returns a handle with the ``user`` and ``password`` clients must send.

Security (closed by default):
- Loopback only, unless ``--allow-remote`` (the password is always required).
- Every query needs the user and password (``X-ClickHouse-User``/``-Key``, basic auth or
  ``user``/``password`` parameters): none is a 401, a wrong one a 403. The password is generated
  at first start into ``DIR/secrets/clickhouse-password`` (mode 0600) unless
  ``--password-file`` names another file. ``/ping`` answers without one, like clickhouse-server.
- Requests from web pages (an ``Origin`` header, ``Sec-Fetch-Site: cross-site|same-site``) are
  refused before anything is read or run; there is no CORS preflight and no CORS header.
- The engine runs sandboxed (``clickhouse_sandbox``): no file, URL or remote access from SQL.
- Sessions are bounded in number and lifetime, non-INSERT bodies in size (413 beyond).

How requests map onto chDB:
- Each request runs on its own chDB connection (opening one costs ~0.1 ms). Connections to one
  path share the engine, run in parallel and keep their own settings and current database, so
  the URL's settings are applied with one ``SET`` and never leak into other requests. A single
  connection would serialise its queries. An anchor connection keeps the engine up between
  requests (chDB shuts it down when its last connection closes).
- ``INSERT ... FORMAT <fmt>``: the decompressed rows are collected (up to
  ``--max-insert-bytes``) and run with chDB's ``query``, so every error of the insert (also the
  ones raised as it finishes: TOO_MANY_PARTS, a view's ``throwIf``, constraints) is an error
  status; chDB's streaming insert reports those as success. Rows containing a blank line (which
  chDB's ``query`` takes as their end) go hex-encoded through ``format(<fmt>, unhex(...))``;
  row data is never interpreted as SQL.
- ``param_<name>`` values go to chDB's native query parameters, unchanged (same text format as
  clickhouse-server's HTTP parameters).
- Results are buffered (as with ``wait_end_of_query=1``), so an error is always a proper HTTP
  status with ``X-ClickHouse-Exception-Code`` and a ``Code: N. DB::Exception: ...`` body.
- ``session_id``: ``SET`` and ``USE`` statements persist for the session (replayed on each of
  its requests until ``session_timeout``); temporary tables do not.

Not supported: ``compress=1`` responses (ClickHouse's checksummed blocks; ``decompress=1``
request bodies are read, unverified), external data, progress headers, streamed responses,
TLS, and HTTP handlers other than ``/``, ``/ping``.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import email.parser
import email.policy
import enum
import gzip
import hmac
import io
import json
import logging
import os
import re
import select
import signal
import socket
import sys
import threading
import time
import uuid
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qsl, urlsplit

import lz4.block
import lz4.frame

from tally.embedded import clickhouse_access, clickhouse_sandbox
from tally.embedded.clickhouse_access import AccessRefused, Login
from tally.embedded.clickhouse_process import EmbeddedClickHouse, is_loopback, start_clickhouse
from tally.embedded.clickhouse_secret import ensure_password
from tally.schemas.access import AccessModel

try:
    from compression import zstd  # type: ignore[import-not-found]  # Python 3.14+
except ImportError:
    try:
        from backports import zstd  # type: ignore[no-redef]  # clickhouse-connect's dependency
    except ImportError:
        zstd = None

__all__ = [
    "ChdbEngine",
    "ClickHouseError",
    "EmbeddedClickHouse",
    "Limits",
    "ServerConfig",
    "main",
    "serve",
    "start_clickhouse",
]

log = logging.getLogger("tally.embedded.clickhouse_http")

# Settings where chDB's defaults differ from clickhouse-server's (chDB defaults async_insert=1).
SERVER_DEFAULTS: Mapping[str, str] = {"async_insert": "0"}
MAX_INSERT_HEAD = 256 * 1024  # ClickHouse's max_query_size: how far to look for INSERT ... FORMAT
READ_CHUNK = 1 << 20


@dataclass(frozen=True)
class Limits:
    """Bounds on what one client can make the server hold."""

    max_query_bytes: int = 16 << 20  # a non-INSERT body (statement, form fields) in memory
    max_insert_bytes: int = 1 << 30  # an INSERT's rows, collected before chDB runs them
    max_sessions: int = 1000  # sessions with remembered SET/USE statements
    max_session_timeout: float = 3600.0  # clickhouse-server's max_session_timeout default


# ---------------------------------------------------------------------------------------------
# Errors


class ErrorCode(enum.IntEnum):
    """The ClickHouse error codes this module raises itself."""

    CANNOT_PARSE_TEXT = 6
    BAD_ARGUMENTS = 36
    NOT_IMPLEMENTED = 48
    SYNTAX_ERROR = 62
    UNKNOWN_COMPRESSION_METHOD = 89
    UNKNOWN_SETTING = 115
    REQUIRED_PASSWORD = 194
    TOO_MANY_SIMULTANEOUS_QUERIES = 202
    QUERY_IS_TOO_LARGE = 229
    CANNOT_DECOMPRESS = 271
    INVALID_SESSION_TIMEOUT = 374
    ACCESS_DENIED = 497
    AUTHENTICATION_FAILED = 516
    STD_EXCEPTION = 1001


# clickhouse-server's exceptionCodeToHTTPStatus; every other code is a 500.
_STATUS_BY_CODES: tuple[tuple[int, frozenset[int]], ...] = (
    (400, frozenset({6, 8, 15, 25, 26, 27, 36, 37, 38, 41, 44, 53, 62, 72, 117, 123, 167, 168,
                     223, 321, 376, 427, 441, 675, 676})),
    (401, frozenset({194})),
    (403, frozenset({192, 193, 497, 512, 516})),
    (404, frozenset({46, 47, 50, 56, 60, 63, 73, 78, 81, 115, 152, 336, 511})),
    (408, frozenset({159})),
    (411, frozenset({381})),
    (413, frozenset({229})),
    (415, frozenset({779})),
    (501, frozenset({48})),
    (503, frozenset({76, 209, 439})),
)  # fmt: skip

_CODE_IN_MESSAGE = re.compile(r"Code: (\d+)\.")


class ClickHouseError(Exception):
    """An error reported to the client as ``Code: N. DB::Exception: ...``."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    @classmethod
    def of(cls, code: ErrorCode, text: str) -> ClickHouseError:
        return cls(int(code), f"Code: {int(code)}. DB::Exception: {text}. ({code.name})")

    @classmethod
    def from_engine(cls, exc: BaseException) -> ClickHouseError:
        """Wrap chDB's exception, keeping its ``Code: N`` message."""
        text = str(exc)
        match = _CODE_IN_MESSAGE.search(text)
        if match is None:
            return cls.of(ErrorCode.STD_EXCEPTION, text)
        return cls(int(match.group(1)), text[match.start() :])

    def http_status(self) -> int:
        return next((status for status, codes in _STATUS_BY_CODES if self.code in codes), 500)

    def body(self, version: str) -> bytes:
        if "(version " in self.message:
            return f"{self.message}\n".encode()
        return f"{self.message} (version {version})\n".encode()


# ---------------------------------------------------------------------------------------------
# SQL: just enough lexing to find where an INSERT's data begins and which FORMAT a query names


_TOKEN = re.compile(
    rb"""
    (?P<space>\s+)
    | (?P<comment>--[^\n]*|\#[^\n]*|/\*.*?\*/)
    | (?P<quoted>'(?:[^'\\]|\\.|'')*'|"(?:[^"\\]|\\.|"")*"|`(?:[^`\\]|\\.|``)*`)
    | (?P<unclosed>/\*|['"`])
    | (?P<word>[A-Za-z_\x80-\xff][A-Za-z0-9_$\x80-\xff]*)
    | (?P<open>[(\[{])
    | (?P<close>[)\]}])
    | (?P<other>.)
    """,
    re.VERBOSE | re.DOTALL,
)
# Before a top-level FORMAT, these make an INSERT take its rows from elsewhere (or end it).
_INSERT_WITHOUT_DATA = frozenset({b"SELECT", b"WITH", b"VALUES", b"WATCH", b"FROM", b";"})
# FORMAT right after these is a table or function name, not the FORMAT clause.
_NAME_CONTEXT = frozenset({b"INTO", b"TABLE", b"FUNCTION", b"."})


class _NeedMore(Exception):
    """The buffer ends inside the statement's head: read more before deciding."""


@dataclass(frozen=True)
class _Token:
    kind: str
    raw: bytes

    @property
    def text(self) -> bytes:
        """Words upper-cased (SQL keywords are case-insensitive), anything else as is."""
        return self.raw.upper() if self.kind == "word" else self.raw

    @property
    def depth(self) -> int:
        return {"open": 1, "close": -1}.get(self.kind, 0)


def _tokens(sql: bytes, at_eof: bool) -> Iterator[tuple[_Token, int, int]]:
    """Significant tokens with their offsets, lazily; ``_NeedMore`` if one may be cut off."""
    for match in _TOKEN.finditer(sql):
        kind = match.lastgroup or "other"
        cut = kind == "unclosed" or (match.end() == len(sql) and kind in ("word", "comment"))
        if cut and not at_eof:
            raise _NeedMore
        if kind not in ("space", "comment"):
            yield _Token(kind, match.group()), match.start(), match.end()


def first_keyword(sql: bytes) -> bytes:
    """The statement's first word, upper-cased (``b""`` if none)."""
    first = next(_tokens(sql, at_eof=True), None)
    return first[0].text if first and first[0].kind == "word" else b""


@dataclass(frozen=True)
class InsertHead:
    """``INSERT ... FORMAT <format>``: the statement without FORMAT, and where the data starts."""

    statement: str
    format: str
    data_start: int


def find_insert_head(sql: bytes, at_eof: bool) -> InsertHead | None:
    """The head of an INSERT whose rows follow in ``sql``; ``None`` for any other statement.

    Raises ``_NeedMore`` when ``sql`` (not ``at_eof``) ends before the answer is known.
    """
    tokens = _tokens(sql, at_eof)
    first = next(tokens, None)
    if first is None and not at_eof:
        raise _NeedMore
    if first is None or first[0].text != b"INSERT":
        return None
    depth, previous = 0, b"INSERT"
    for token, start, _ in tokens:
        depth += token.depth
        if depth == 0 and token.text in _INSERT_WITHOUT_DATA:
            return None
        if depth == 0 and token.text == b"FORMAT" and previous not in _NAME_CONTEXT:
            return _format_clause(sql, start, tokens, at_eof)
        previous = token.text
    if not at_eof:
        raise _NeedMore
    return None


def _format_clause(
    sql: bytes, format_start: int, tokens: Iterator[tuple[_Token, int, int]], at_eof: bool
) -> InsertHead | None:
    name = next(tokens, None)
    if name is None and not at_eof:
        raise _NeedMore
    if name is None or name[0].kind != "word":
        return None
    _, start, end = name
    statement = sql[:format_start].decode()
    return InsertHead(statement, sql[start:end].decode(), _data_start(sql, end, at_eof))


def _data_start(sql: bytes, pos: int, at_eof: bool) -> int:
    """ClickHouse's rule: data begins after the newline following the format name, if there is
    one, else after the spaces and tabs."""
    end = len(sql)
    while pos < end and sql[pos] in b" \t\f":
        pos += 1
    if pos < end and sql[pos] == ord("\r"):
        pos += 1
    if pos == end and not at_eof:
        raise _NeedMore
    if pos < end and sql[pos] == ord("\n"):
        pos += 1
    return pos


def output_format(sql: bytes) -> str | None:
    """The format named by the query's own trailing ``FORMAT`` clause, if any."""
    tokens = [token for token, _, _ in _tokens(sql, at_eof=True)]
    depth, found = 0, None
    for i, token in enumerate(tokens):
        depth += token.depth
        if depth or token.text != b"FORMAT" or i + 1 == len(tokens) or tokens[i + 1].kind != "word":
            continue
        rest = tokens[i + 2 :]
        if not rest or rest[0].text in (b"SETTINGS", b";"):
            found = tokens[i + 1].raw.decode()
    return found


def without_output_format(sql: bytes) -> bytes:
    """``sql`` without its trailing ``FORMAT <name>`` clause (``EXPLAIN`` of it then answers in
    the format its caller asks for). Whatever this misses, ``EXPLAIN`` answers in another
    format, which the access check refuses."""
    spans = [(token, start, end) for token, start, end in _tokens(sql, at_eof=True)]
    depth, cut = 0, None
    for i, (token, start, _) in enumerate(spans):
        depth += token.depth
        if (
            depth
            or token.text != b"FORMAT"
            or i + 1 == len(spans)
            or spans[i + 1][0].kind != "word"
        ):
            continue
        rest = spans[i + 2 :]
        if not rest or rest[0][0].text in (b"SETTINGS", b";"):
            cut = (start, spans[i + 1][2])
    return sql if cut is None else sql[: cut[0]] + sql[cut[1] :]


def quote_string(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def quote_identifier(name: str) -> str:
    return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"


_SETTING_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def set_statement(settings: Mapping[str, str]) -> str:
    """One ``SET`` for all ``settings``; values are always quoted string literals."""
    for name in settings:
        if not _SETTING_NAME.match(name):
            raise ClickHouseError.of(ErrorCode.UNKNOWN_SETTING, f"Unknown setting '{name}'")
    return "SET " + ", ".join(f"{name} = {quote_string(v)}" for name, v in settings.items())


# ---------------------------------------------------------------------------------------------
# Request bodies: transfer encoding, content encoding, ClickHouse's compressed blocks


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
        while remaining > 0:
            data = self._rfile.read(min(remaining, READ_CHUNK))
            if not data:
                raise ConnectionError("client closed the connection mid-body")
            remaining -= len(data)
            yield data
        self.complete = True

    def _read_chunked(self) -> Iterator[bytes]:
        while size := self._chunk_size():
            while size > 0:
                data = self._rfile.read(min(size, READ_CHUNK))
                if not data:
                    raise ConnectionError("client closed the connection mid-chunk")
                size -= len(data)
                yield data
            self._rfile.readline(65537)  # the CRLF after each chunk
        while self._rfile.readline(65537) not in (b"\r\n", b"\n", b""):
            pass  # trailers
        self.complete = True

    def _chunk_size(self) -> int:
        line = self._rfile.readline(65537)
        try:
            return int(line.split(b";", 1)[0].strip(), 16)
        except ValueError:
            raise ClickHouseError.of(ErrorCode.BAD_ARGUMENTS, "Malformed chunked body") from None


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


# ---------------------------------------------------------------------------------------------
# Statements and request options


@dataclass(frozen=True)
class QueryStatement:
    """Any statement but ``INSERT ... FORMAT``; ``fmt`` is its output format."""

    sql: str
    fmt: str


@dataclass(frozen=True)
class InsertStatement:
    """``INSERT ... FORMAT <fmt>`` with its rows still streaming in."""

    head: str
    fmt: str
    data: Iterable[bytes]


Statement = QueryStatement | InsertStatement


def read_statement(
    query: str | None,
    body: Iterator[bytes],
    default_format: str,
    max_query_bytes: int = Limits.max_query_bytes,
) -> Statement:
    """The statement from the ``query`` parameter (the body then holds data or the statement's
    tail, as ClickHouse concatenates them) or from the start of the body. Any statement but an
    INSERT's rows is held in memory, so it may not exceed ``max_query_bytes``."""
    if query is None:
        return _statement_from_body(body, default_format, max_query_bytes)
    sql = query.encode()
    head = find_insert_head(sql, at_eof=True)
    if head is not None:
        return InsertStatement(head.statement, head.format, _chain(sql[head.data_start :], body))
    return _query_statement(read_capped(body, max_query_bytes, "The query", sql), default_format)


def _statement_from_body(
    body: Iterator[bytes], default_format: str, max_query_bytes: int
) -> Statement:
    buffer = b""
    for chunk in body:
        buffer += chunk
        try:
            head = find_insert_head(buffer, at_eof=False)
        except _NeedMore:
            if len(buffer) < min(MAX_INSERT_HEAD, max_query_bytes):
                continue
            head = None
        if head is None:
            sql = read_capped(body, max_query_bytes, "The query", buffer)
            return _query_statement(sql, default_format)
        return InsertStatement(head.statement, head.format, _chain(buffer[head.data_start :], body))
    head = find_insert_head(buffer, at_eof=True)
    if head is not None:
        return InsertStatement(head.statement, head.format, [buffer[head.data_start :]])
    return _query_statement(read_capped((), max_query_bytes, "The query", buffer), default_format)


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


def _query_statement(sql: bytes, default_format: str) -> QueryStatement:
    try:
        text = sql.decode()
    except UnicodeDecodeError:
        raise ClickHouseError.of(ErrorCode.CANNOT_PARSE_TEXT, "Query is not valid UTF-8") from None
    named = None if first_keyword(sql) == b"INSERT" else output_format(sql)
    return QueryStatement(text, named or default_format)


def _chain(first: bytes, rest: Iterable[bytes]) -> Iterator[bytes]:
    if first:
        yield first
    yield from rest


# Parameters of the HTTP interface itself; every other one (but param_*) is a setting.
_TRANSPORT_PARAMS = frozenset(
    {
        "query", "database", "default_format", "user", "password", "query_id", "session_id",
        "session_timeout", "session_check", "close_session", "compress", "decompress",
        "buffer_size", "wait_end_of_query", "client_protocol_version", "quota_key", "role",
        "stacktrace",
    }
)  # fmt: skip


@dataclass(frozen=True)
class RequestOptions:
    """What a request asks of its connection: settings, parameters, database, session."""

    settings: Mapping[str, str] = field(default_factory=dict)
    params: Mapping[str, str] = field(default_factory=dict)
    database: str | None = None
    readonly: bool = False
    session_id: str | None = None
    session_timeout: float = 60.0
    close_session: bool = False

    @classmethod
    def from_params(cls, method: str, params: Mapping[str, str]) -> RequestOptions:
        try:
            timeout = float(params.get("session_timeout") or 60)
        except ValueError:
            raise ClickHouseError.of(ErrorCode.BAD_ARGUMENTS, "Invalid session_timeout") from None
        return cls(
            settings={
                k: v for k, v in params.items() if k not in _TRANSPORT_PARAMS and k[:6] != "param_"
            },
            params={k[6:]: v for k, v in params.items() if k[:6] == "param_"},
            database=params.get("database") or None,
            readonly=method == "GET",
            session_id=params.get("session_id") or None,
            session_timeout=timeout,
            close_session=params.get("close_session") in ("1", "true"),
        )


def parse_request(
    method: str,
    params: Mapping[str, str],
    headers: Message,
    body: RequestBody,
    limits: Limits = Limits(),
) -> tuple[RequestOptions, Statement]:
    """Turn one HTTP request into connection options and a statement."""
    if params.get("compress") in ("1", "true"):
        raise ClickHouseError.of(
            ErrorCode.NOT_IMPLEMENTED,
            "compress=1 is not supported: use enable_http_compression=1 with Accept-Encoding",
        )
    native_blocks = params.get("decompress") in ("1", "true")
    data = decoded(body, headers.get("Content-Encoding", ""), native_blocks)
    content_type = headers.get("Content-Type", "")
    if content_type.startswith("multipart/form-data"):
        form = read_capped(data, limits.max_query_bytes, "The form")
        params = {**params, **form_fields(content_type, form)}
        data = iter(())
    default_format = params.get("default_format") or "TabSeparated"
    statement = read_statement(params.get("query"), data, default_format, limits.max_query_bytes)
    return RequestOptions.from_params(method, params), statement


# ---------------------------------------------------------------------------------------------
# The engine


@dataclass(frozen=True)
class Summary:
    """The ``X-ClickHouse-Summary`` of one query."""

    read_rows: int = 0
    read_bytes: int = 0
    written_rows: int = 0
    written_bytes: int = 0
    result_rows: int = 0
    result_bytes: int = 0
    elapsed: float = 0.0

    def header(self) -> str:
        fields = {k: str(v) for k, v in asdict(self).items() if k != "elapsed"}
        fields["elapsed_ns"] = str(int(self.elapsed * 1e9))
        return json.dumps(fields, separators=(",", ":"))


@dataclass(frozen=True)
class Outcome:
    """A finished statement: its output (if it makes a result set) and summary."""

    body: bytes
    result_format: str | None
    summary: Summary
    timezone: str


@dataclass
class _Session:
    statements: list[str]
    expires_at: float


class SessionStore:
    """``SET``/``USE`` statements per ``session_id``, replayed on the session's next requests.

    At most ``max_sessions`` live sessions, each kept at most ``max_timeout`` seconds after its
    last request: clients cannot make the server remember without bound.
    """

    def __init__(
        self,
        max_sessions: int = Limits.max_sessions,
        max_timeout: float = Limits.max_session_timeout,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_sessions = max_sessions
        self.max_timeout = max_timeout
        self._clock = clock
        self._lock = threading.Lock()
        self._sessions: dict[str, _Session] = {}

    def check_timeout(self, timeout: float) -> None:
        """clickhouse-server's rule: a timeout above ``max_session_timeout`` is an error."""
        if not 0 <= timeout <= self.max_timeout:
            raise ClickHouseError.of(
                ErrorCode.INVALID_SESSION_TIMEOUT,
                f"Session timeout {timeout:g} is not within 0 and the server's"
                f" max_session_timeout: {self.max_timeout:g}",
            )

    def statements(self, session_id: str | None, timeout: float) -> list[str]:
        if session_id is None:
            return []
        with self._lock:
            self._expire()
            session = self._sessions.get(session_id)
            if session is None:
                return []
            session.expires_at = self._clock() + timeout
            return list(session.statements)

    def reserve(self, session_id: str, timeout: float) -> None:
        """Make room for ``session_id`` before its statement runs; an error when full."""
        with self._lock:
            self._expire()
            if session_id in self._sessions:
                return
            if len(self._sessions) >= self.max_sessions:
                raise ClickHouseError.of(
                    ErrorCode.TOO_MANY_SIMULTANEOUS_QUERIES,
                    f"Too many sessions (the server's limit is {self.max_sessions}): close one"
                    " (close_session=1) or wait until one expires",
                )
            self._sessions[session_id] = _Session([], self._clock() + timeout)

    def remember(self, session_id: str, timeout: float, statement: str) -> None:
        with self._lock:
            session = self._sessions.get(session_id)
            if session is None:  # expired while its statement ran
                session = self._sessions[session_id] = _Session([], 0.0)
            session.statements.append(statement)
            session.expires_at = self._clock() + timeout

    def close(self, session_id: str) -> None:
        with self._lock:
            self._sessions.pop(session_id, None)

    def __len__(self) -> int:
        with self._lock:
            self._expire()
            return len(self._sessions)

    def _expire(self) -> None:
        now = self._clock()
        for session_id in [k for k, s in self._sessions.items() if s.expires_at < now]:
            del self._sessions[session_id]


# Below ClickHouse's default max_query_size (256 KiB).
_SAFE_QUERY_SIZE = 200_000
# chDB's ``query`` ends inline INSERT data at the first blank line.
_BLANK_LINE = re.compile(rb"\n\r?\n")
_BLANK_LINES = re.compile(rb"\n(?:[ \t\r]*\n)+")
# One JSON document per line: raw newlines cannot occur inside one.
_JSON_LINES_FORMATS = frozenset(
    {"jsoneachrow", "jsonlines", "ndjson", "jsoncompacteachrow", "jsonstringseachrow"}
)
# Formats whose columns map to the INSERT's by position (so INSERT ... SELECT keeps the meaning).
_POSITIONAL_FORMATS = frozenset(
    {
        "native", "rowbinary", "tabseparated", "tsv", "tabseparatedraw", "tsvraw", "csv",
        "arrow", "arrowstream", "parquet", "orc",
    }
)  # fmt: skip


class ChdbEngine:
    """Owns the chDB data path; runs each request on a connection of its own."""

    def __init__(
        self,
        connect: Callable[[], Any],
        anchor: Any,
        defaults: Mapping[str, str],
        limits: Limits = Limits(),
        policy: clickhouse_sandbox.QueryPolicy | None = None,
    ) -> None:
        self._connect_raw = connect
        self._anchor = anchor
        self._defaults = dict(defaults)
        self.limits = limits
        self.policy = policy
        self.sessions = SessionStore(limits.max_sessions, limits.max_session_timeout)
        row = anchor.query("SELECT timezone(), version()", "TabSeparated").bytes()
        self.timezone, self.version = row.decode().strip().split("\t")

    @classmethod
    def open(
        cls, path: Path, defaults: Mapping[str, str] = SERVER_DEFAULTS, limits: Limits = Limits()
    ) -> ChdbEngine:
        """Open (and lock) ``path`` in its sandbox (see ``clickhouse_sandbox``); raises
        ``RuntimeError`` if another process has it."""
        from chdb import _chdb  # heavy: loaded only by the server process

        path.mkdir(parents=True, exist_ok=True)
        target = clickhouse_sandbox.prepare(path)
        policy = clickhouse_sandbox.QueryPolicy()
        return cls(lambda: _chdb.connect(target), _chdb.connect(target), defaults, limits, policy)

    def close(self) -> None:
        self._anchor.close()

    def run(
        self,
        options: RequestOptions,
        statement: Statement,
        login: Login | None = None,
        tag: str | None = None,
    ) -> Outcome:
        """Execute ``statement`` as ``login`` (``None``: the administrator); chDB's errors come
        out as ``ClickHouseError``. ``tag`` marks the query for :meth:`kill`."""
        if options.session_id is not None:
            self.sessions.check_timeout(options.session_timeout)
            if self._remembers(options, statement):
                self.sessions.reserve(options.session_id, options.session_timeout)
        try:
            connection = self._connect(options, login, tag)
            try:
                self._check_policy(connection, statement)
                self._check_access(connection, statement, options, login)
                outcome = self._execute(connection, statement, options)
            finally:
                connection.close()
        except RuntimeError as exc:
            raise ClickHouseError.from_engine(exc) from None
        if options.session_id is not None and self._remembers(options, statement):
            assert isinstance(statement, QueryStatement)
            self.sessions.remember(options.session_id, options.session_timeout, statement.sql)
        if options.session_id is not None and options.close_session:
            self.sessions.close(options.session_id)
        return outcome

    def _check_policy(self, connection: Any, statement: Statement) -> None:
        """Refuse what the sandbox's grants cannot, as ClickHouse's parser reads the statement."""
        if self.policy is None:
            return
        if isinstance(statement, InsertStatement):
            sql = f"{statement.head.rstrip()} FORMAT {statement.fmt}"
        else:
            sql = statement.sql
        if not sql.strip():
            return  # the statement itself reports the empty query

        def canonical(text: str) -> str:
            query = f"SELECT formatQuery(unhex('{text.encode().hex()}'))"
            if len(query) <= _SAFE_QUERY_SIZE:
                return (connection.query(query, "TabSeparatedRaw").bytes() or b"").decode()
            # The hex literal doubles the statement: let this one query be that long.
            get = "SELECT getSetting('max_query_size')"
            previous = int(connection.query(get, "TabSeparatedRaw").bytes())
            connection.query(f"SET max_query_size = {len(query) + 64}", "TabSeparated")
            try:
                return (connection.query(query, "TabSeparatedRaw").bytes() or b"").decode()
            finally:
                connection.query(f"SET max_query_size = {previous}", "TabSeparated")

        try:
            self.policy.check(sql, canonical)
        except clickhouse_sandbox.PolicyViolation as exc:
            raise ClickHouseError.of(ErrorCode.ACCESS_DENIED, str(exc)) from None

    def _check_access(
        self, connection: Any, statement: Statement, options: RequestOptions, login: Login | None
    ) -> None:
        """Refuse what ``login``'s declared privileges do not cover (see ``clickhouse_access``)."""
        if login is None or login.policy is None:
            return
        if isinstance(statement, InsertStatement):
            sql = f"{statement.head.rstrip()} FORMAT {statement.fmt}"
        else:
            sql = without_output_format(statement.sql.encode()).decode()
        if not sql.strip():
            return

        def explain(query: str) -> str:
            result = connection.query(query, "TabSeparatedRaw", params=dict(options.params))
            return (result.bytes() or b"").decode(errors="replace")

        try:
            clickhouse_access.check(login.policy, sql, explain)
        except AccessRefused as exc:
            raise ClickHouseError.of(ErrorCode.ACCESS_DENIED, str(exc)) from None

    def kill(self, tag: str) -> None:
        """Cancel the running query marked ``tag`` (its client went away)."""
        connection = self._connect_raw()
        try:
            connection.query(
                f"KILL QUERY WHERE Settings['log_comment'] = {quote_string(tag)} ASYNC",
                "TabSeparated",
            )
        finally:
            connection.close()

    def _connect(self, options: RequestOptions, login: Login | None, tag: str | None) -> Any:
        connection = self._connect_raw()
        try:
            for statement in self._setup(options, login, tag):
                connection.query(statement, "TabSeparated")
        except BaseException:
            connection.close()
            raise
        return connection

    def _setup(self, options: RequestOptions, login: Login | None, tag: str | None) -> list[str]:
        """Session state, the URL's database, settings, the user's profile, then ``readonly``
        (GET's 2, or the user's if stricter): after ``readonly=1`` nothing can change them."""
        statements = self.sessions.statements(options.session_id, options.session_timeout)
        if options.database:
            statements.append(f"USE {quote_identifier(options.database)}")
        policy = login.policy if login is not None else None
        settings = {**self._defaults, **options.settings}
        if policy is not None:
            settings.update(clickhouse_access.setup_settings(policy))
        if tag is not None:
            settings["log_comment"] = tag
        if settings:
            statements.append(set_statement(settings))
        levels = {2 if options.readonly else 0, policy.readonly if policy is not None else 0}
        readonly = 1 if 1 in levels else max(levels)  # 1 is the strictest
        if readonly:
            statements.append(f"SET readonly = {readonly}")
        return statements

    def _execute(self, connection: Any, statement: Statement, options: RequestOptions) -> Outcome:
        timezone = options.settings.get("session_timezone") or self.timezone
        if isinstance(statement, InsertStatement):
            summary = self._insert(connection, statement)
            return Outcome(b"", None, summary, timezone)
        return self._query(connection, statement, options.params, timezone)

    def _insert(self, connection: Any, statement: InsertStatement) -> Summary:
        """Run ``INSERT ... FORMAT`` with its rows through chDB's ``query``, which raises every
        error.

        chDB's streaming insert (``send_insert``/``insert_done``) reports errors raised when the
        insert finishes (TOO_MANY_PARTS, a materialized view's ``throwIf``, a constraint, too
        many partitions) as success, with the rows missing. ``query`` raises them, but it ends
        inline rows at the first blank line (``\\n\\n``), which binary rows often contain. So
        the rows are collected (up to ``max_insert_bytes``) and, unless they are free of blank
        lines, handed over hex-encoded: ``INSERT ... SELECT * FROM format(<fmt>, unhex(...))``,
        which keeps the statement's columns, settings and deduplication token.
        """
        head = statement.head.rstrip()
        data = read_capped(statement.data, self.limits.max_insert_bytes, "The INSERT data")
        if statement.fmt.lower() in _JSON_LINES_FORMATS:
            data = _BLANK_LINES.sub(b"\n", data)  # blank lines between JSON rows mean nothing
        if not _BLANK_LINE.search(data):
            sql = b"%s FORMAT %s\n%s" % (head.encode(), statement.fmt.encode(), data)
        elif statement.fmt.lower() in _POSITIONAL_FORMATS:
            fmt = quote_identifier(statement.fmt)
            sql = f"{head} SELECT * FROM format({fmt}, unhex('{data.hex()}'))".encode()
            connection.query(f"SET max_query_size = {len(sql) + 1024}", "TabSeparated")
        else:
            raise ClickHouseError.of(
                ErrorCode.NOT_IMPLEMENTED,
                f"INSERT data in {statement.fmt} with blank lines: use Native, RowBinary, TSV,"
                " CSV or JSONEachRow, or send the rows without blank lines",
            )
        del data
        result = connection.query(sql, "TabSeparated")
        rows, size = result.rows_written(), result.bytes_written()
        return Summary(
            written_rows=rows,
            written_bytes=size,
            result_rows=rows,
            result_bytes=size,
            elapsed=result.elapsed(),
        )

    def _query(
        self, connection: Any, statement: QueryStatement, params: Mapping[str, str], timezone: str
    ) -> Outcome:
        if not statement.sql.strip():
            raise ClickHouseError.of(ErrorCode.SYNTAX_ERROR, "Empty query")
        shape = connection.classify_query(statement.sql)
        if shape["statement_count"] > 1:
            raise ClickHouseError.of(ErrorCode.SYNTAX_ERROR, "Multi-statements are not allowed")
        result = connection.query(statement.sql, statement.fmt, params=dict(params))
        body = result.bytes() or b""
        makes_rows = shape["query_class"].name == "READ_ONLY" or bool(body)
        summary = Summary(
            result.storage_rows_read(),
            result.storage_bytes_read(),
            result.rows_written(),
            result.bytes_written(),
            result.rows_read(),
            result.bytes_read(),
            result.elapsed(),
        )
        return Outcome(body, statement.fmt if makes_rows else None, summary, timezone)

    @staticmethod
    def _remembers(options: RequestOptions, statement: Statement) -> bool:
        """A session's ``SET``/``USE`` is kept, unless it used query parameters (not
        replayable)."""
        if options.session_id is None or options.params or isinstance(statement, InsertStatement):
            return False
        return first_keyword(statement.sql.encode()) in (b"SET", b"USE")


# ---------------------------------------------------------------------------------------------
# HTTP


@dataclass(frozen=True)
class Credentials:
    """The administrator and, if declared, one user per component (``clickhouse_access``)."""

    user: str
    password: str = field(repr=False)
    components: Mapping[str, Login] = field(default_factory=dict, repr=False)

    def check(self, headers: Message, params: Mapping[str, str]) -> Login:
        """The request's login; raises unless it carries a known user and its password (401 if
        it carries none)."""
        presented = presented_credentials(headers, params)
        if presented is None:
            raise ClickHouseError.of(
                ErrorCode.REQUIRED_PASSWORD,
                "Authentication required: send X-ClickHouse-User and X-ClickHouse-Key,"
                " or HTTP basic authentication",
            )
        user, password = presented
        login = self.components.get(user) or Login(self.user, self.password)
        same_user = hmac.compare_digest(user.encode(), login.name.encode())
        if hmac.compare_digest(password.encode(), login.password.encode()) and same_user:
            return login
        raise ClickHouseError.of(
            ErrorCode.AUTHENTICATION_FAILED,
            f"{user}: Authentication failed: password is incorrect, "
            "or there is no user with such name",
        )


def presented_credentials(headers: Message, params: Mapping[str, str]) -> tuple[str, str] | None:
    """User and password from X-ClickHouse-User/Key, Basic auth or the URL; ``None`` if the
    request carries none of them."""
    if headers.get("X-ClickHouse-User") is not None or headers.get("X-ClickHouse-Key") is not None:
        return headers.get("X-ClickHouse-User") or "default", headers.get("X-ClickHouse-Key", "")
    scheme, _, token = headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "basic":
        try:
            user, _, password = base64.b64decode(token, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return "", ""
        return user, password
    if "user" in params or "password" in params:
        return params.get("user", "default"), params.get("password", "")
    return None


# What browsers send with a request that a page on another site (or port) makes.
_CROSS_SITE_FETCH = frozenset({"cross-site", "same-site"})


def cross_site(headers: Message) -> str | None:
    """Why a request comes from a web page, or ``None``.

    Browsers send ``Origin`` with every cross-origin request (and with POSTs) and
    ``Sec-Fetch-Site`` with every request; clients (clickhouse-connect, curl) send neither. The
    server serves no pages, so no page has a reason to call it, and it answers no CORS preflight.
    """
    if headers.get("Origin") is not None:
        return "requests with an Origin header (from a web page) are not allowed"
    if headers.get("Sec-Fetch-Site", "").strip().lower() in _CROSS_SITE_FETCH:
        return "cross-site requests (Sec-Fetch-Site) are not allowed"
    return None


class Inflight:
    """Counts requests in progress; once closed it admits none and waits for the rest."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._count = 0
        self._closed = False

    def enter(self) -> bool:
        with self._changed:
            if self._closed:
                return False
            self._count += 1
            return True

    def exit(self) -> None:
        with self._changed:
            self._count -= 1
            self._changed.notify_all()

    def close_and_wait(self, timeout: float) -> bool:
        with self._changed:
            self._closed = True
            return self._changed.wait_for(lambda: self._count == 0, timeout)


@dataclass
class ServerState:
    """Everything a request handler needs, shared by all of them."""

    engine: ChdbEngine
    credentials: Credentials
    inflight: Inflight = field(default_factory=Inflight)


_BINARY_FORMATS = ("native", "rowbinary", "parquet", "arrow", "orc", "avro", "msgpack", "protobuf")
_PASSWORD_IN_URL = re.compile(r"(password=)[^&\s]*", re.IGNORECASE)


def content_type(fmt: str) -> str:
    name = fmt.lower()
    if name.startswith(("tabseparated", "tsv")):
        return "text/tab-separated-values; charset=UTF-8"
    if name.startswith("csv"):
        return "text/csv; charset=UTF-8"
    if name.startswith("jsoneachrow"):
        return "application/x-ndjson; charset=UTF-8"
    if name.startswith("json"):
        return "application/json; charset=UTF-8"
    if name.startswith(_BINARY_FORMATS):
        return "application/octet-stream"
    return "text/plain; charset=UTF-8"


def cancels_on_close(login: Login, statement: Statement) -> bool:
    """clickhouse-server's ``cancel_http_readonly_queries_on_client_close``, per user profile."""
    policy = login.policy
    return (
        isinstance(statement, QueryStatement)
        and policy is not None
        and str(policy.settings.get("cancel_http_readonly_queries_on_client_close", 0)) == "1"
    )


class ClientWatch:
    """While a query runs, watch its client's socket; call ``on_gone`` if the client closes it.

    A client that sends more bytes before the answer (pipelining) is not watched further.
    """

    def __init__(self, sock: socket.socket, on_gone: Callable[[], None], poll: float = 0.1) -> None:
        self._sock = sock
        self._on_gone = on_gone
        self._poll = poll
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="client-watch", daemon=True)

    def __enter__(self) -> ClientWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()

    def _watch(self) -> None:
        while not self._done.is_set():
            try:
                readable, _, _ = select.select([self._sock], [], [], self._poll)
                if not readable:
                    continue
                if self._sock.recv(1, socket.MSG_PEEK) != b"":
                    return  # data, not a close: stop watching
            except (OSError, ValueError):
                pass  # reset or closed: gone as well
            if not self._done.is_set():
                log.info("client closed the connection; cancelling its query")
                try:
                    self._on_gone()
                except Exception:
                    log.warning("could not cancel the query of a closed connection", exc_info=True)
            return


class ClickHouseHandler(BaseHTTPRequestHandler):
    """``/ping``, ``GET /`` and queries on ``/``, as clickhouse-server answers them."""

    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes; with Nagle on, the body waits for the
    # client's delayed ACK (~40 ms per request on Linux).
    disable_nagle_algorithm = True
    server_version = "tally-embedded-clickhouse"
    sys_version = ""
    timeout = 300  # idle keep-alive connections
    server: ClickHouseHTTPServer

    def do_GET(self) -> None:
        self._route()

    def do_POST(self) -> None:
        self._route()

    def do_OPTIONS(self) -> None:
        """CORS preflight: refused, and no ``Access-Control-Allow-*`` header is ever sent."""
        self.close_connection = True
        self._reply(405, b"Method not allowed\n", {"Allow": "GET, POST", "Connection": "close"})

    def _route(self) -> None:
        refused = cross_site(self.headers)
        if refused is not None:
            error = ClickHouseError.of(ErrorCode.ACCESS_DENIED, refused)
            self.close_connection = True  # the body is never read
            headers = {"X-ClickHouse-Exception-Code": str(error.code), "Connection": "close"}
            self._reply(error.http_status(), error.body(self.server.state.engine.version), headers)
            return
        url = urlsplit(self.path)
        params = dict(parse_qsl(url.query, keep_blank_values=True))
        is_query = url.path == "/" and (self.command == "POST" or "query" in params)
        if not is_query:
            RequestBody(self.rfile, self.headers).drain()
            if url.path in ("/", "/ping"):
                self._reply(200, b"Ok.\n")
            else:
                self._reply(404, f"There is no handle {url.path}\n".encode())
            return
        if not self.server.state.inflight.enter():
            self.close_connection = True
            self._reply(503, b"Server is shutting down\n", {"Connection": "close"})
            return
        try:
            self._serve(params)
        finally:
            self.server.state.inflight.exit()

    def _serve(self, params: dict[str, str]) -> None:
        query_id = params.get("query_id") or str(uuid.uuid4())
        body = RequestBody(self.rfile, self.headers)
        try:
            result = self._execute(params, body)
            if isinstance(result, ClickHouseError):
                self._fail(result, query_id, body)
            else:
                self._succeed(result, query_id, params)
        except OSError:
            log.debug("client connection lost", exc_info=True)
            self.close_connection = True
        # A body left half-read would be parsed as the next request.
        self.close_connection = self.close_connection or not body.complete

    def _execute(self, params: dict[str, str], body: RequestBody) -> Outcome | ClickHouseError:
        state = self.server.state
        try:
            login = state.credentials.check(self.headers, params)
            options, statement = parse_request(
                self.command, params, self.headers, body, state.engine.limits
            )
            if not cancels_on_close(login, statement):
                return state.engine.run(options, statement, login)
            tag = f"tally-front:{uuid.uuid4()}"
            with ClientWatch(self.connection, lambda: state.engine.kill(tag)):
                return state.engine.run(options, statement, login, tag)
        except ClickHouseError as error:
            return error
        except OSError:
            raise
        except Exception as exc:
            log.exception("unexpected failure serving a query")
            return ClickHouseError.of(ErrorCode.STD_EXCEPTION, repr(exc))

    def _succeed(self, outcome: Outcome, query_id: str, params: Mapping[str, str]) -> None:
        headers = {
            "X-ClickHouse-Query-Id": query_id,
            "X-ClickHouse-Summary": outcome.summary.header(),
        }
        if outcome.result_format is not None:
            headers["X-ClickHouse-Format"] = outcome.result_format
            headers["X-ClickHouse-Timezone"] = outcome.timezone
            headers["Content-Type"] = content_type(outcome.result_format)
        body, encoding = encode_response(
            outcome.body,
            params.get("enable_http_compression"),
            self.headers.get("Accept-Encoding", ""),
        )
        if encoding:
            headers["Content-Encoding"] = encoding
        self._reply(200, body, headers)

    def _fail(self, error: ClickHouseError, query_id: str, body: RequestBody) -> None:
        """Answer with the error after draining the body (the client sends it all first)."""
        try:
            body.drain()
        except (OSError, ClickHouseError):
            self.close_connection = True
        headers = {
            "X-ClickHouse-Exception-Code": str(error.code),
            "X-ClickHouse-Query-Id": query_id,
        }
        if error.code == ErrorCode.REQUIRED_PASSWORD:
            headers["WWW-Authenticate"] = 'Basic realm="ClickHouse", charset="UTF-8"'
        self._reply(error.http_status(), error.body(self.server.state.engine.version), headers)

    def _reply(self, status: int, body: bytes, headers: Mapping[str, str] | None = None) -> None:
        headers = dict(headers or {})
        headers.setdefault("Content-Type", "text/plain; charset=UTF-8")
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        log.debug("%s %s -> %s", self.command, urlsplit(self.path).path, code)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("http: %s", _PASSWORD_IN_URL.sub(r"\1***", format % args))


class ClickHouseHTTPServer(ThreadingHTTPServer):
    """A thread per connection; the shared state hangs off the server for the handlers."""

    daemon_threads = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], state: ServerState) -> None:
        self.state = state
        super().__init__(address, ClickHouseHandler)


# ---------------------------------------------------------------------------------------------
# Process lifecycle and CLI


@dataclass(frozen=True)
class ServerConfig:
    """Built once from the command line."""

    path: Path
    credentials: Credentials
    host: str = "127.0.0.1"
    port: int = 0
    ready_file: Path | None = None
    parent_pid: int | None = None
    drain_timeout: float = 30.0
    limits: Limits = Limits()


def serve(config: ServerConfig) -> int:
    """Serve until SIGTERM/SIGINT (or the parent's death); returns the exit code."""
    try:
        engine = ChdbEngine.open(config.path, limits=config.limits)
    except (RuntimeError, ValueError) as exc:
        log.error("cannot open chDB data path %s: %s", config.path, exc)
        return 1
    state = ServerState(engine, config.credentials)
    try:
        server = ClickHouseHTTPServer((config.host, config.port), state)
    except OSError as exc:
        log.error("cannot listen on %s:%d: %s", config.host, config.port, exc)
        engine.close()
        return 1
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    threading.Thread(
        target=server.serve_forever, args=(0.1,), name="clickhouse-http", daemon=True
    ).start()
    port = server.server_address[1]
    if config.ready_file is not None:
        write_ready_file(config.ready_file, port)
    log.info(
        "embedded ClickHouse %s (chDB) serving %s on http://%s:%d (pid %d)",
        engine.version, config.path, config.host, port, os.getpid(),
    )  # fmt: skip
    _wait_for_stop(stop, config.parent_pid)
    _shut_down(server, state, config)
    return 0


def _wait_for_stop(stop: threading.Event, parent_pid: int | None) -> None:
    while not stop.wait(0.5):
        if parent_pid is not None and os.getppid() != parent_pid:
            log.warning("parent process %d is gone; stopping", parent_pid)
            return


def _shut_down(server: ClickHouseHTTPServer, state: ServerState, config: ServerConfig) -> None:
    """Stop accepting, let in-flight requests finish, then close chDB."""
    server.shutdown()
    if not state.inflight.close_and_wait(config.drain_timeout):
        log.warning("requests still running after %.0f s; closing anyway", config.drain_timeout)
    state.engine.close()
    server.server_close()
    if config.ready_file is not None:
        config.ready_file.unlink(missing_ok=True)
    log.info("embedded ClickHouse stopped")


def write_ready_file(path: Path, port: int) -> None:
    """Write the port atomically, so a reader never sees a partial file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(f"{port}\n")
    os.replace(tmp, path)


def parse_args(argv: list[str] | None = None) -> tuple[ServerConfig, str]:
    parser = argparse.ArgumentParser(
        prog="python -m tally.embedded.clickhouse_http",
        description="Serve a chDB data path over ClickHouse's HTTP interface. Every query needs "
        "the user and password; the password is generated at first start into "
        "<path>/secrets/clickhouse-password (mode 0600).",
    )
    parser.add_argument("--path", type=Path, required=True, help="chDB data directory")
    parser.add_argument("--host", default="127.0.0.1", help="loopback unless --allow-remote")
    parser.add_argument(
        "--allow-remote",
        action="store_true",
        help="allow a non-loopback --host (plain HTTP: put TLS in front of it)",
    )
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--ready-file", type=Path, help="written with the port once listening")
    parser.add_argument("--user", default="default", help="the one user (default: default)")
    parser.add_argument(
        "--password-file", type=Path, help="default: <path>/secrets/clickhouse-password"
    )
    parser.add_argument(
        "--access-file",
        type=Path,
        help="the component users (tally.schemas.access, JSON); their passwords are generated"
        " into <path>/secrets/clickhouse-<component>-password",
    )
    parser.add_argument("--parent-pid", type=int, help="stop when this process is gone")
    parser.add_argument("--max-sessions", type=int, default=Limits.max_sessions)
    parser.add_argument("--max-session-timeout", type=float, default=Limits.max_session_timeout)
    parser.add_argument("--max-query-bytes", type=int, default=Limits.max_query_bytes)
    parser.add_argument("--max-insert-bytes", type=int, default=Limits.max_insert_bytes)
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    if not (is_loopback(args.host) or args.allow_remote):
        parser.error(f"--host {args.host} is not a loopback address: add --allow-remote")
    path = args.path.resolve()
    if args.password_file is None:
        password = ensure_password(path)
    else:
        password = args.password_file.read_text().strip("\n")
        if not password:
            parser.error(f"{args.password_file} is empty")
    components: dict[str, Login] = {}
    if args.access_file is not None:
        model = AccessModel.from_json(args.access_file.read_text())
        passwords = clickhouse_access.component_passwords(path, model)
        components = clickhouse_access.logins(Login(args.user, password), model, passwords)
    config = ServerConfig(
        path=path,
        credentials=Credentials(args.user, password, components),
        host=args.host,
        port=args.port,
        ready_file=args.ready_file,
        parent_pid=args.parent_pid,
        limits=Limits(
            max_query_bytes=args.max_query_bytes,
            max_insert_bytes=args.max_insert_bytes,
            max_sessions=args.max_sessions,
            max_session_timeout=args.max_session_timeout,
        ),
    )
    return config, args.log_level


def main(argv: list[str] | None = None) -> None:
    config, log_level = parse_args(argv)
    logging.basicConfig(
        level=log_level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    sys.exit(serve(config))


if __name__ == "__main__":
    main()
