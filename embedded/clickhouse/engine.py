"""chDB behind the server: owns the data path and runs each request on its own connection,
with its session, settings, sandbox policy and user's access checked first."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tally.embedded.clickhouse import access, sandbox
from tally.embedded.clickhouse.access import AccessRefused, Login
from tally.embedded.clickhouse.body import read_capped
from tally.embedded.clickhouse.errors import ClickHouseError, ErrorCode
from tally.embedded.clickhouse.limits import DEFAULT_LIMITS, Limits
from tally.embedded.clickhouse.request import (
    InsertStatement,
    QueryStatement,
    RequestOptions,
    Statement,
)
from tally.embedded.clickhouse.sessions import SessionStore
from tally.embedded.clickhouse.sql import (
    first_keyword,
    quote_identifier,
    quote_string,
    set_statement,
    without_output_format,
)

# Settings where chDB's defaults differ from clickhouse-server's (chDB defaults async_insert=1).
SERVER_DEFAULTS: Mapping[str, str] = {"async_insert": "0"}


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
        limits: Limits = DEFAULT_LIMITS,
        policy: sandbox.QueryPolicy | None = None,
    ) -> None:
        self._connect_raw = connect
        self._anchor = anchor
        self._defaults = dict(defaults)
        self.limits = limits
        self.policy = policy
        self.sessions = SessionStore(limits.max_sessions, limits.max_session_timeout)
        # INSERT heads (``INSERT INTO t (cols) FORMAT f``) already allowed: by the sandbox
        # policy (key: the text) and per user (key: user, text). Both checks depend on the
        # text alone for an INSERT, and an aggregator sends the same head with every flush.
        self._allowed_inserts: set[tuple[str | None, str]] = set()
        row = anchor.query("SELECT timezone(), version()", "TabSeparated").bytes()
        self.timezone, self.version = row.decode().strip().split("\t")

    @classmethod
    def open(
        cls,
        path: Path,
        defaults: Mapping[str, str] = SERVER_DEFAULTS,
        limits: Limits = DEFAULT_LIMITS,
    ) -> ChdbEngine:
        """Open (and lock) ``path`` in its sandbox (see ``sandbox``); raises
        ``RuntimeError`` if another process has it."""
        from chdb import _chdb  # heavy: loaded only by the server process

        path.mkdir(parents=True, exist_ok=True)
        target = sandbox.prepare(path)
        policy = sandbox.QueryPolicy()
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
            if (None, sql) in self._allowed_inserts:
                return
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
        except sandbox.PolicyViolation as exc:
            raise ClickHouseError.of(ErrorCode.ACCESS_DENIED, str(exc)) from None
        if isinstance(statement, InsertStatement):
            self._remember_insert(None, sql)

    def _check_access(
        self, connection: Any, statement: Statement, options: RequestOptions, login: Login | None
    ) -> None:
        """Refuse what ``login``'s declared privileges do not cover (see ``access``)."""
        if login is None or login.policy is None:
            return
        if isinstance(statement, InsertStatement):
            sql = f"{statement.head.rstrip()} FORMAT {statement.fmt}"
            if (login.name, sql) in self._allowed_inserts:
                return
        else:
            sql = without_output_format(statement.sql.encode()).decode()
        if not sql.strip():
            return

        def explain(query: str) -> str:
            result = connection.query(query, "TabSeparatedRaw", params=dict(options.params))
            return (result.bytes() or b"").decode(errors="replace")

        try:
            access.check(login.policy, sql, explain)
        except AccessRefused as exc:
            raise ClickHouseError.of(ErrorCode.ACCESS_DENIED, str(exc)) from None
        if isinstance(statement, InsertStatement):
            self._remember_insert(login.name, sql)

    def _remember_insert(self, user: str | None, sql: str) -> None:
        """Keep an allowed INSERT head (bounded: forgotten all at once when full)."""
        if len(self._allowed_inserts) >= self.limits.max_allowed_inserts:
            self._allowed_inserts.clear()
        self._allowed_inserts.add((user, sql))

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
            settings.update(access.setup_settings(policy))
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
