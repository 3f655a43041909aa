"""Typed results of the read API (msgspec Structs: fast to encode as JSON, schema for OpenAPI)."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import msgspec

from tally.read.aggregators import aggregate, slice_bounds


def _at(buckets: list[int], time_zone: str) -> list[datetime]:
    tz = ZoneInfo(time_zone)
    return [datetime.fromtimestamp(b, tz) for b in buckets]


class KeyInfo(msgspec.Struct, frozen=True):
    """A key with activity in the asked range and the last minute it was written to."""

    key: str
    last_seen: datetime


class PathInfo(msgspec.Struct, frozen=True):
    """A path of a key and the last minute it was written to."""

    path: str
    last_seen: datetime


class Values(msgspec.Struct, frozen=True):
    """Every bucket of a range, empty ones included (as ``{}``), Trifle's ``values``.

    ``buckets`` are bucket starts in unix seconds; ``values[i]`` maps path -> sum in bucket i.
    """

    key: str
    granularity: str
    time_zone: str
    buckets: list[int]
    values: list[dict[str, float]]

    def at(self) -> list[datetime]:
        """Bucket starts as aware datetimes in the configured zone."""
        return _at(self.buckets, self.time_zone)

    def to_pandas(self) -> Any:
        """A DataFrame indexed by bucket start, one column per path (needs pandas)."""
        import pandas as pd

        return pd.DataFrame(self.values, index=pd.DatetimeIndex(self.at(), name="bucket"))


class Row(msgspec.Struct, frozen=True):
    """One line of a series: a path, a wildcard match, an ``other`` row or an expression.

    ``kind`` is ``path``, ``match`` (of ``source``, a wildcard), ``other`` or ``expression``.
    Paths are counters (an empty bucket is 0); expressions are ``None`` where undefined.
    """

    name: str
    kind: str
    points: list[float | None]
    source: str = ""


class Slice(msgspec.Struct, frozen=True):
    """One aggregated value per row over ``[start, end)``."""

    start: int
    end: int
    values: dict[str, float | None]


class CategoryItem(msgspec.Struct, frozen=True):
    """A row's total over the range (Trifle's ``category`` formatter)."""

    name: str
    value: float | None


class Series(msgspec.Struct, frozen=True):
    """Rows over aligned buckets, with aggregators and formatters as methods.

    ``as_of`` (unix s), when the read was as of a time: nothing at or after it is counted, and
    the last bucket may hold only its part before it (``read/settled.py``)."""

    key: str
    granularity: str
    time_zone: str
    buckets: list[int]
    rows: list[Row]
    end: int = 0
    as_of: int | None = None

    def at(self) -> list[datetime]:
        """Bucket starts as aware datetimes in the configured zone."""
        return _at(self.buckets, self.time_zone)

    def row(self, name: str) -> Row:
        """The row called ``name`` (KeyError if absent)."""
        for row in self.rows:
            if row.name == name:
                return row
        raise KeyError(name)

    def aggregate(self, how: str = "sum", slices: int = 1) -> list[Slice]:
        """``how`` (sum, mean, min, max, last) of every row, per slice."""
        bounds = slice_bounds(len(self.buckets), slices)
        per_row = {r.name: aggregate(r.points, how, slices) for r in self.rows}
        edges = [*self.buckets, self.end]
        return [
            Slice(edges[a], edges[b], {name: values[i] for name, values in per_row.items()})
            for i, (a, b) in enumerate(bounds)
        ]

    def timeline(self) -> dict[str, list[tuple[int, float | None]]]:
        """Per row, ``(bucket start, value)`` points (Trifle's ``timeline`` formatter)."""
        return {r.name: list(zip(self.buckets, r.points, strict=True)) for r in self.rows}

    def category(self, how: str = "sum") -> list[CategoryItem]:
        """Per row, one total (Trifle's ``category`` formatter), largest first."""
        items = [CategoryItem(r.name, aggregate(r.points, how, 1)[0]) for r in self.rows]
        return sorted(items, key=lambda i: (i.value is None, -(i.value or 0.0), i.name))

    def to_pandas(self) -> Any:
        """A DataFrame indexed by bucket start, one column per row (needs pandas)."""
        import pandas as pd

        data = {r.name: r.points for r in self.rows}
        return pd.DataFrame(data, index=pd.DatetimeIndex(self.at(), name="bucket"), dtype=float)


class SqlResult(msgspec.Struct, frozen=True):
    """Columns, their ClickHouse types and rows of a read-only SQL query."""

    columns: list[str]
    types: list[str]
    rows: list[list[Any]]
