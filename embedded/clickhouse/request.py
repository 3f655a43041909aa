"""One HTTP request as the engine takes it: the statement (INSERT rows still streaming in) and
the connection's options (settings, parameters, database, session)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from email.message import Message

from tally.embedded.clickhouse.body import RequestBody, form_fields, read_capped
from tally.embedded.clickhouse.compression import decoded
from tally.embedded.clickhouse.errors import ClickHouseError, ErrorCode
from tally.embedded.clickhouse.limits import DEFAULT_LIMITS, Limits
from tally.embedded.clickhouse.sql import NeedMore, find_insert_head, first_keyword, output_format

MAX_INSERT_HEAD = 256 * 1024  # ClickHouse's max_query_size: how far to look for INSERT ... FORMAT


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
        except NeedMore:
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
    limits: Limits = DEFAULT_LIMITS,
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
