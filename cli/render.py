"""Terminal rendering: sparklines and the series table."""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime

from rich.table import Table

from tally.read import Series

BARS = "▁▂▃▄▅▆▇█"


def sparkline(points: Sequence[float | None]) -> str:
    """One character per point, scaled between the row's min and max; blank for null."""
    present = [p for p in points if p is not None]
    if not present:
        return " " * len(points)
    low, high = min(present), max(present)
    span = high - low
    out = []
    for p in points:
        if p is None:
            out.append(" ")
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


def series_table(series: Series, width: int = 60) -> Table:
    """One line per row: sparkline (last ``width`` buckets), total, mean, min, max, last."""
    at = series.at()
    first = at[0].strftime("%Y-%m-%d %H:%M") if at else "-"
    last = at[-1].strftime("%Y-%m-%d %H:%M") if at else "-"
    table = Table(
        title=f"{series.key} · {series.granularity} · {first} → {last} {series.time_zone}",
        title_justify="left",
    )
    for name, justify in (("row", "left"), ("trend", "left"), ("sum", "right"), ("mean", "right"),
                          ("min", "right"), ("max", "right"), ("last", "right")):  # fmt: skip
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    stats = {how: series.aggregate(how)[0].values for how in ("sum", "mean", "min", "max")}
    for row in series.rows:
        table.add_row(
            row.name,
            sparkline(row.points[-width:]),
            *(number(stats[how][row.name]) for how in ("sum", "mean", "min", "max")),
            number(row.points[-1] if row.points else None),
        )
    return table


def buckets_table(series: Series) -> Table:
    """One line per bucket, one column per row."""
    table = Table()
    table.add_column("bucket")
    for row in series.rows:
        table.add_column(row.name, justify="right")
    for i, at in enumerate(series.at()):
        table.add_row(_when(at), *(number(r.points[i]) for r in series.rows))
    return table


def _when(at: datetime) -> str:
    return at.strftime("%Y-%m-%d %H:%M %Z")
