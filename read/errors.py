"""Errors of the read side: each says what was wrong with the request, so APIs can answer 4xx."""

from __future__ import annotations

import re


class ReadError(ValueError):
    """A request the read side cannot answer as asked; ``field`` names the culprit."""

    field = "request"

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class BadGranularity(ReadError):
    """Unparseable granularity, or one the database does not serve."""

    field = "granularity"


class BadRange(ReadError):
    """A time range that is empty, reversed, unparseable or has too many buckets."""

    field = "range"


class BadExpression(ReadError):
    """An expression that does not parse, or uses an unknown function or a wildcard."""

    field = "expression"


class BadPattern(ReadError):
    """A key or path pattern with forbidden characters or of the wrong shape."""

    field = "pattern"


class TooLarge(ReadError):
    """A request whose answer would exceed a limit (rows or points per response)."""

    field = "limit"


class BadSql(ReadError):
    """Read-only SQL that ClickHouse refused as written (syntax, unknown name, not read-only)."""

    field = "sql"


# ClickHouse error codes that blame the statement, not the server or the connection.
_STATEMENT_CODES = frozenset({
    6, 16, 27, 36, 38, 41, 42, 43, 44, 46, 47, 53, 60, 62, 81, 164, 184, 215, 386, 456, 457,
})  # fmt: skip
_CODE = re.compile(r"Code: (\d+)")


def bad_sql(exc: Exception) -> BadSql | None:
    """:class:`BadSql` with ClickHouse's first line if ``exc`` rejects the statement itself."""
    text = str(exc)
    match = _CODE.search(text)
    if match is None or int(match.group(1)) not in _STATEMENT_CODES:
        return None
    return BadSql(text[match.start() :].split("\n", 1)[0][:2000])
