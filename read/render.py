"""Terminal rendering: sparklines, the series table, data tables. Data (keys, paths, SQL values
and column names) is always printed as written, never read as Rich markup."""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime

from rich.table import Table
from rich.text import Text

from tally.read import Series

BARS = "▁▂▃▄▅▆▇█"


def sparkline(points: Sequence[float | None]) -> str:
    """One character per point, scaled between the row's finite min and max; blank for null,
    ``!`` for an infinite or NaN point (an expression can overflow)."""
    present = [p for p in points if p is not None and math.isfinite(p)]
    if not present:
        return "".join(" " if p is None else "!" for p in points)
    low, high = min(present), max(present)
    span = high - low
    out = []
    for p in points:
        if p is None:
            out.append(" ")
        elif not math.isfinite(p):
            out.append("!")
        elif span == 0:
            out.append(BARS[0] if high == 0 else BARS[3])
        else:
            out.append(BARS[min(len(BARS) - 1, int((p - low) / span * (len(BARS) - 1) + 0.5))])
    return "".join(out)


def number(value: float | None) -> str:
    """Compact, exact for integers."""
    if value is None:
        return "-"
    if not math.isfinite(value):
        return str(value)
    if value == int(value):
        return f"{int(value):,}"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.4g}"


def plain(value: object) -> Text:
    """``value`` as text that is never read as Rich markup (data may hold ``[/b]``)."""
    return Text(value if isinstance(value, str) else str(value))


def cell(value: object) -> Text:
    """One SQL value: numbers compact, everything else (IPs, UUIDs, arrays, ...) as its text."""
    if isinstance(value, float | int) and not isinstance(value, bool):
        return Text(number(value), justify="right")
    return plain(value)


def data_table(columns: Sequence[object], title: str | None = None) -> Table:
    """A table whose title and headers are data: printed as written, never as markup."""
    table = Table(title=plain(title) if title is not None else None, title_justify="left")
    for column in columns:
        table.add_column(plain(column))
    return table


# An expression row is a ratio or the like per bucket: its sum over buckets means nothing.
_STATS = ("sum", "mean", "min", "max")
_EXPRESSION_STATS = ("mean", "min", "max")


def series_table(series: Series, width: int = 60) -> Table:
    """One line per row: sparkline (last ``width`` buckets), total, mean, min, max, last; an
    expression row leaves the total blank."""
    at = series.at()
    first = at[0].strftime("%Y-%m-%d %H:%M") if at else "-"
    last = _range_end(series, at)
    table = Table(
        title=plain(f"{series.key} · {series.granularity} · {first} → {last} {series.time_zone}"),
        title_justify="left",
    )
    for name, justify in (("row", "left"), ("trend", "left"), ("sum", "right"), ("mean", "right"),
                          ("min", "right"), ("max", "right"), ("last", "right")):  # fmt: skip
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    stats = {how: series.aggregate(how)[0].values for how in _STATS}
    for row in series.rows:
        shown = _EXPRESSION_STATS if row.kind == "expression" else _STATS
        table.add_row(
            plain(row.name),
            sparkline(row.points[-width:]),
            *(number(stats[how][row.name]) if how in shown else "" for how in _STATS),
            number(row.points[-1] if row.points else None),
        )
    return table


def _range_end(series: Series, at: list[datetime]) -> str:
    """The end of the range (exclusive): the last bucket's end, not its start."""
    if not at:
        return "-"
    if series.end:
        return datetime.fromtimestamp(series.end, at[-1].tzinfo).strftime("%Y-%m-%d %H:%M")
    return at[-1].strftime("%Y-%m-%d %H:%M")


def buckets_table(series: Series) -> Table:
    """One line per bucket, one column per row."""
    table = Table()
    table.add_column("bucket")
    for row in series.rows:
        table.add_column(plain(row.name), justify="right")
    for i, at in enumerate(series.at()):
        table.add_row(_when(at), *(number(r.points[i]) for r in series.rows))
    return table


def _when(at: datetime) -> str:
    return at.strftime("%Y-%m-%d %H:%M %Z")
