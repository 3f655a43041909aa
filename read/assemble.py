"""Pure functions from fetched ``(t, path, value)`` rows to :class:`Values` and :class:`Series`:
gap filling on the calendar's buckets, wildcard rows (top-N and ``other`` already chosen and
summed by ClickHouse, see ``queries.ranking``), expressions; and the size limits checked
before anything large is fetched."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from tally.read.errors import ReadError, TooLarge
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
    def wildcards(self) -> list[PathWildcard]:
        """The wildcards, in order."""
        return [i for i in self.items if isinstance(i, PathWildcard)]

    @property
    def rank_limit(self) -> int:
        """Matches to fetch per wildcard: ``top``, or one more than a series may have."""
        return self.top if self.top is not None else MAX_ROWS + 1


@dataclass(frozen=True, slots=True)
class Ranked:
    """A wildcard's kept matches, largest total first, and how many paths it matched."""

    keep: tuple[str, ...]
    matches: int

    @classmethod
    def of(cls, rows: Sequence[Sequence]) -> Ranked:
        """From ``queries.ranking`` rows ``(path, total, matches)``."""
        return cls(tuple(r[0] for r in rows), int(rows[0][2]) if rows else 0)

    @property
    def has_other(self) -> bool:
        """True when matches were left out (they are summed in an ``other`` row)."""
        return self.matches > len(self.keep)


def check_size(plan: SeriesPlan, ranked: Sequence[Ranked], buckets: int, max_points: int) -> None:
    """:class:`TooLarge` naming the limit if the series would exceed rows or points."""
    for wildcard, r in zip(plan.wildcards, ranked, strict=True):
        if plan.top is None and r.matches > MAX_ROWS:
            raise TooLarge(
                f"{wildcard.text!r} matches more than the {MAX_ROWS} rows a series may have;"
                " use top to keep the largest"
            )
    rows = len(plan.items) - len(ranked) + len(plan.expressions)
    rows += sum(len(r.keep) + r.has_other for r in ranked)
    if rows > MAX_ROWS:
        raise TooLarge(f"the series has more than {MAX_ROWS} rows; use top to cap wildcards")
    if rows * buckets > max_points:
        raise TooLarge(
            f"the series would have {rows * buckets} points ({rows} rows x {buckets} buckets),"
            f" more than the limit of {max_points} points per response; use a coarser"
            " granularity, a shorter range or a smaller top"
        )


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
    wildcard: PathWildcard, ranked: Ranked, rows: Iterable[Sequence], window: Window
) -> list[Row]:
    grid = _grid(window, rows)
    zeros = [0.0] * len(window.buckets)
    out = [Row(p, "match", grid.get(p, zeros), wildcard.text) for p in ranked.keep]
    if ranked.has_other:
        out.append(Row(wildcard.other_name, "other", grid.get("", zeros), wildcard.text))
    return out


def build_series(
    key: str,
    window: Window,
    time_zone: str,
    plan: SeriesPlan,
    rows: Iterable[Sequence],
    wildcards: Sequence[tuple[Ranked, Iterable[Sequence]]] = (),
    as_of: int | None = None,
) -> Series:
    """Rows in the order asked for; wildcard matches by total, largest first.

    ``rows`` are ``(t, path, value)`` of the concrete paths; ``wildcards`` holds, per wildcard
    of the plan, its ranking and its ``queries.wildcard_points`` rows.
    """
    grid = _grid(window, rows)
    n = len(window.buckets)
    parts = iter(wildcards)
    out: list[Row] = []
    for item in plan.items:
        if isinstance(item, PathWildcard):
            ranked, matched = next(parts)
            out += _wildcard_rows(item, ranked, matched, window)
        else:
            out.append(Row(item, "path", grid.get(item, [0.0] * n)))
    zeros = [0.0] * n
    for expr in plan.expressions:
        columns = {p: grid.get(p, zeros) for p in expr.paths}
        points = [expr.evaluate({p: c[i] for p, c in columns.items()}) for i in range(n)]
        out.append(Row(expr.text, "expression", points))
    if len(out) > MAX_ROWS:
        raise TooLarge(f"the series has more than {MAX_ROWS} rows; use top to cap wildcards")
    buckets = list(window.buckets)
    return Series(key, str(window.granularity), time_zone, buckets, out, window.end, as_of)
