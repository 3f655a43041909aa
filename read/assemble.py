"""Pure functions from fetched ``(t, path, value)`` rows to :class:`Values` and :class:`Series`:
gap filling on the calendar's buckets, wildcard expansion with top-N and ``other``, expressions."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from tally.read.errors import ReadError
from tally.read.expression import Expression, parse
from tally.read.patterns import PathWildcard, check_path, is_wildcard
from tally.read.results import Row, Series, Values
from tally.read.timerange import Window

MAX_ROWS = 200


@dataclass(frozen=True)
class SeriesPlan:
    """What a series asks for: paths and wildcards (in order), then expressions; top-N."""

    items: tuple[str | PathWildcard, ...]
    expressions: tuple[Expression, ...]
    top: int | None

    @classmethod
    def build(
        cls, paths: Sequence[str], expressions: Sequence[str] = (), top: int | None = None
    ) -> SeriesPlan:
        """Validate everything up front (:class:`ReadError` subclasses with reasons)."""
        if isinstance(paths, str) or isinstance(expressions, str):
            raise ReadError("paths and expressions are lists of strings")
        if not paths and not expressions:
            raise ReadError("ask for at least one path or expression")
        if top is not None and top < 1:
            raise ReadError("top must be at least 1")
        items = tuple(PathWildcard.parse(p) if is_wildcard(p) else check_path(p) for p in paths)
        return cls(items, tuple(parse(e) for e in expressions), top)

    @property
    def paths(self) -> list[str]:
        """Concrete paths to fetch (asked for, and read by expressions)."""
        wanted = [i for i in self.items if isinstance(i, str)]
        wanted += [p for e in self.expressions for p in e.paths]
        return list(dict.fromkeys(wanted))

    @property
    def regexes(self) -> list[str]:
        """Regular expressions of the wildcards."""
        return [i.regex for i in self.items if isinstance(i, PathWildcard)]


def _grid(window: Window, rows: Iterable[Sequence]) -> dict[str, list[float]]:
    """path -> one sum per bucket of the window (0 where empty; never -0.0)."""
    index = {b: i for i, b in enumerate(window.buckets)}
    n = len(window.buckets)
    grid: dict[str, list[float]] = {}
    for t, path, value in rows:
        i = index.get(int(t))
        if i is None:
            continue  # outside the window (cannot happen with the same calendar)
        column = grid.get(path)
        if column is None:
            column = grid[path] = [0.0] * n
        column[i] += value
    return grid


def build_values(key: str, window: Window, time_zone: str, rows: Iterable[Sequence]) -> Values:
    """Trifle's ``values``: every bucket, ``{}`` where nothing was written."""
    index = {b: i for i, b in enumerate(window.buckets)}
    per_bucket: list[dict[str, float]] = [{} for _ in window.buckets]
    for t, path, value in rows:
        i = index.get(int(t))
        if i is not None:  # 0.0 + value: sums never show as -0.0
            per_bucket[i][path] = per_bucket[i].get(path, 0.0) + value
    return Values(key, str(window.granularity), time_zone, list(window.buckets), per_bucket)


def _wildcard_rows(
    wildcard: PathWildcard, grid: dict[str, list[float]], top: int | None, n: int
) -> list[Row]:
    pattern = re.compile(wildcard.regex)
    matched = [p for p in grid if pattern.match(p)]
    matched.sort(key=lambda p: (-math.fsum(grid[p]), p))
    keep = matched if top is None else matched[:top]
    out = [Row(p, "match", grid[p], wildcard.text) for p in keep]
    rest = matched[len(keep) :]
    if rest:
        other = [math.fsum(grid[p][i] for p in rest) + 0.0 for i in range(n)]
        out.append(Row(wildcard.other_name, "other", other, wildcard.text))
    return out


def build_series(
    key: str, window: Window, time_zone: str, plan: SeriesPlan, rows: Iterable[Sequence]
) -> Series:
    """Rows in the order asked for; wildcard matches by total, largest first."""
    grid = _grid(window, rows)
    n = len(window.buckets)
    out: list[Row] = []
    for item in plan.items:
        if isinstance(item, PathWildcard):
            out += _wildcard_rows(item, grid, plan.top, n)
        else:
            out.append(Row(item, "path", grid.get(item, [0.0] * n)))
    zeros = [0.0] * n
    for expr in plan.expressions:
        columns = {p: grid.get(p, zeros) for p in expr.paths}
        points = [expr.evaluate({p: c[i] for p, c in columns.items()}) for i in range(n)]
        out.append(Row(expr.text, "expression", points))
    if len(out) > MAX_ROWS:
        raise ReadError(f"the series has more than {MAX_ROWS} rows; use top to cap wildcards")
    return Series(key, str(window.granularity), time_zone, list(window.buckets), out, window.end)
