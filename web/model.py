"""Dashboards as data: a key with segment placeholders, a default range and widgets of rows."""

from __future__ import annotations

import re
from typing import Literal

import msgspec

WidgetType = Literal["kpi", "timeseries", "category", "table", "distribution", "gauge", "text"]
Style = Literal["line", "area", "stacked", "normalized"]
PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
RANGES = ("1h", "24h", "7d", "30d")
GRANULARITIES = ("auto", "1m", "1h", "1d", "1w", "1mo", "1q", "1y")


class RowSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    """One row of a widget: a path (wildcards allowed) or an expression over paths.

    ``hidden`` rows are fetched (for expressions and KPIs) but not drawn.
    """

    path: str | None = None
    expression: str | None = None
    label: str | None = None
    hidden: bool = False
    flag_zero: bool = False  # table: a zero here while the first column is non-zero is shaded


class Widget(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    """A panel: ``type`` decides how its rows are drawn; ``span`` is its width of 12 columns."""

    type: WidgetType
    title: str = ""
    rows: list[RowSpec] = []
    span: int = 6
    style: Style = "line"
    top: int | None = None
    unit: str = ""
    expected: float | None = None  # timeseries: runs expected per `expected_per` (shaded below)
    expected_per: str = ""  # a granularity such as 1h; empty: per bucket
    drill: str | None = None  # category: clicking a wildcard match sets this segment
    path: str | None = None  # distribution: its path (read through /api/v1/quantiles)
    text: str = ""  # text widget
    better: Literal["higher", "lower"] | None = None  # kpi: colours the change


class Segment(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    """A placeholder of the key. An optional one left at "(all)" reads ``all`` if set (e.g.
    ``calc`` for ``calc::customer::{customer}``), else the key without its ``::{name}``."""

    label: str = ""
    optional: bool = True
    all: str = ""


class Dashboard(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    """One dashboard file. ``name`` comes from the file name (``jobs.yaml`` -> ``jobs``)."""

    title: str
    key: str
    widgets: list[Widget]
    name: str = ""
    description: str = ""
    range: str = "24h"
    granularity: str = "auto"
    segments: dict[str, Segment] = {}
    empty: str = ""  # shown when the key has no data in the range (what emits it)
    builtin: bool = False
    order: int = 100  # position in the navigation (then by name)

    def placeholders(self) -> list[str]:
        """The key's segment names, in order."""
        return PLACEHOLDER.findall(self.key)


class LoadError(msgspec.Struct, frozen=True):
    """A dashboard file that could not be loaded: where and why."""

    file: str
    line: int | None
    reason: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.reason}"
