"""The terminal tables: an expression row has no sum (issue #21.19); data is never markup
(issue #21.9)."""

from __future__ import annotations

import io
import ipaddress

from rich.console import Console

from tally.read import Row, Series
from tally.read.render import buckets_table, cell, data_table, series_table, sparkline


def _text(renderable) -> str:
    console = Console(width=200, record=True, file=io.StringIO())
    console.print(renderable)
    return console.export_text()


def _cells(out: str) -> dict[str, list[str]]:
    return {
        parts[1]: parts[2:]
        for line in out.splitlines()
        if line.count("│") > 3
        for parts in [[p.strip() for p in line.split("│")]]
    }


SERIES = Series(
    key="calc",
    granularity="1d",
    time_zone="UTC",
    buckets=[0, 86400, 172800],
    end=259200,
    rows=[
        Row("count", "path", [10.0, 20.0, 30.0]),
        Row("success", "path", [5.0, 20.0, 27.0]),
        Row("success / count", "expression", [0.5, 1.0, 0.9]),
    ],
)


def test_an_expression_row_shows_mean_min_max_last_but_no_sum():
    rows = _cells(_text(series_table(SERIES)))
    # after the trend: sum, mean, min, max, last
    assert rows["count"][1:6] == ["60", "20", "10", "30", "30"]
    assert rows["success / count"][1:6] == ["", "0.8", "0.5", "1", "0.9"]


def test_markup_in_row_names_and_sql_values_prints_as_written():
    series = Series(
        key="k::[/b]", granularity="1h", time_zone="UTC", buckets=[0], end=3600,
        rows=[Row("codes.[/b]", "path", [1.0]), Row("[link=https://x.example]y", "path", [2.0])],
    )  # fmt: skip
    out = _text(series_table(series)) + _text(buckets_table(series))
    assert "k::[/b] · 1h" in out and out.count("codes.[/b]") == 2
    assert out.count("[link=https://x.example]y") == 2
    table = data_table(["[b]col"], title="[/i] title")
    table.add_row(cell("[/b]"))
    table.add_row(cell(ipaddress.ip_address("10.1.2.3")))
    table.add_row(cell(1234.5))
    out = _text(table)
    assert "[/i] title" in out and "[b]col" in out and "[/b]" in out
    assert "10.1.2.3" in out and "1,234" in out


def test_an_infinite_or_nan_point_prints():
    assert sparkline([1.0, float("inf"), None, 2.0, float("nan")]) == "▁! █!"
    assert sparkline([float("inf")]) == "!"
    series = Series(
        key="k", granularity="1h", time_zone="UTC", buckets=[0, 3600], end=7200,
        rows=[Row("count * 1e999", "expression", [float("inf"), 1.0])],
    )  # fmt: skip
    assert "count * 1e999" in _text(series_table(series))
