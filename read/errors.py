"""Errors of the read side: each says what was wrong with the request, so APIs can answer 4xx."""

from __future__ import annotations


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
