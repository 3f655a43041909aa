"""``POST /api/v1/sql``: user SQL as its own ClickHouse user, bounded and cancellable.

The limits live in that user's settings profile on the server (``tally.schemas.access``:
``readonly=1``, rows, bytes, memory, time), where the query cannot change them. The API waits
``timeout_s`` plus a grace period; past it the request's HTTP connection to ClickHouse is
closed, which cancels the query (``cancel_http_readonly_queries_on_client_close``), and so
does a client that goes away (the handler's task is cancelled the same way).
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, replace
from typing import Any

from clickhouse_connect.driver.exceptions import DatabaseError

from tally.read import ReadSettings, SqlResult
from tally.read.connection import connect_async

# ClickHouse error codes and the answer they get.
TIMEOUT_EXCEEDED = 159
_LIMITS = frozenset({158, 307, 396, 241})  # too many rows / bytes / result; memory limit
_ACCESS_DENIED = frozenset({497})  # not granted (readonly refusals stay 400 "sql")
_CODE = re.compile(r"Code: (\d+)\.")


@dataclass(frozen=True)
class SqlSettings:
    """Where the SQL endpoint's own user is and how long the API waits for it.

    ``read.clickhouse`` is that user (``tally_sql``): its settings profile holds the limits,
    so the query is sent without settings and cannot change them.
    """

    read: ReadSettings
    timeout_s: float = 30.0  # the profile's max_execution_time
    grace_s: float = 5.0


class SqlRefused(Exception):
    """A user query that does not get a result: HTTP status, error name and reason."""

    def __init__(self, status: int, error: str, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.error = error
        self.reason = reason


# /sql without a user of its own: the shared read user could lift limits sent per query.
UNCONFIGURED = (
    "the SQL endpoint has no ClickHouse user of its own: start the API with "
    "--sql-clickhouse-user tally_sql (or TALLY_SQL_CLICKHOUSE_USER) and its password in "
    "TALLY_SQL_CLICKHOUSE_PASSWORD or --sql-clickhouse-password-file"
)


class SqlRunner:
    """Runs user SQL on its own client (one per process); without ``settings`` (no SQL user)
    every query is refused with 503 ``unconfigured``."""

    def __init__(self, settings: SqlSettings | None) -> None:
        self.settings = settings
        self._client: Any = None

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None

    async def run(self, text: str, parameters: dict[str, Any] | None = None) -> SqlResult:
        """The result, or :class:`SqlRefused` saying which limit or privilege stopped it."""
        s = self.settings
        if s is None:
            raise SqlRefused(503, "unconfigured", UNCONFIGURED)
        wait = s.timeout_s + s.grace_s
        if self._client is None:
            # The HTTP read timeout is the API's own deadline, never earlier than ClickHouse's.
            self._client = await connect_async(replace(s.read, query_timeout_s=wait + 1))
        try:
            result = await asyncio.wait_for(
                self._client.query(text, parameters=parameters or None), wait
            )
        except TimeoutError:
            raise SqlRefused(504, "timeout", self._timeout_reason()) from None
        except DatabaseError as exc:
            raise refusal(exc, self._timeout_reason()) from None
        return SqlResult(
            list(result.column_names),
            [t.name for t in result.column_types],
            [list(r) for r in result.result_rows],
        )

    def _timeout_reason(self) -> str:
        timeout = self.settings.timeout_s if self.settings else 0
        return (
            f"the query ran longer than the limit of {timeout:g} s"
            " (max_execution_time) and was cancelled"
        )


def refusal(exc: DatabaseError, timeout_reason: str) -> Exception:
    """The answer to ClickHouse's error ``exc``: a :class:`SqlRefused`, or ``exc`` itself when
    it is not a rejection of the query (ClickHouse unreachable)."""
    message = str(exc)
    match = _CODE.search(message)
    if match is None:
        return exc
    code = int(match.group(1))
    reason = message[match.start() :].split("\n", 1)[0][:2000]
    if code == TIMEOUT_EXCEEDED:
        return SqlRefused(504, "timeout", timeout_reason)
    if code in _LIMITS:
        return SqlRefused(413, "limit", reason)
    if code in _ACCESS_DENIED:
        return SqlRefused(403, "denied", reason)
    return SqlRefused(400, "sql", reason)
