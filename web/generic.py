"""The page for any key: widgets chosen from its paths, grouped by kind.

- **Counters** (summed paths): a KPI per headline count (``count``, ``total.count``) and a
  mean for each hand-sent ``<x>.count``/``<x>.sum`` pair; for each family of like paths
  (``codes.*``, ``tenants.*.count``) a stacked timeseries and a top-N category; a small chart
  per other path and a table of them. A set of measures of one thing (``total.*`` =
  count + retries + resources) is not a family: its members are never stacked. Sums of
  squares (``*.square``) are inputs of a standard deviation, never charted.
- **Distributions**: quantile bands per distribution (its ``.count``/``.sum``/``.square``
  companions are not repeated as counters).
- **Gauges**: the last reading per bucket, one chart per gauge.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping

from tally.web.model import Dashboard, RowSpec, Widget

MAX_FAMILIES = 6
MAX_SINGLES = 6
MAX_KIND = 8
MOMENTS = {"count", "sum", "square"}
TOP = 10


def _matches(pattern: str, path: str) -> bool:
    a, b = pattern.split("."), path.split(".")
    return len(a) == len(b) and all(x in ("*", y) for x, y in zip(a, b, strict=True))


def _alike(pattern: str, matches: set[str]) -> bool:
    """True when the matches are one quantity split by category (``codes.200``/``codes.500``,
    ``jobs.a.count``/``jobs.b.count``); False for measures of one thing (a member named
    ``count``, ``sum`` or ``square``: ``total.count``/``total.retries``)."""
    at = pattern.split(".").index("*")
    return not {m.split(".")[at] for m in matches} & MOMENTS


def _families(paths: list[str]) -> list[str]:
    """Wildcard patterns over 2+ like paths, largest first: one ``*`` in place of one
    segment."""
    counts: dict[str, int] = defaultdict(int)
    for path in paths:
        parts = path.split(".")
        for i in range(len(parts)):
            if len(parts) > 1:
                counts[".".join([*parts[:i], "*", *parts[i + 1 :]])] += 1
    found = [(p, n) for p, n in counts.items() if n >= 2 and not p.startswith("*")]
    found.sort(key=lambda item: (-item[1], -item[0].count("."), item[0]))
    chosen: list[str] = []
    covered: set[str] = set()
    for pattern, _ in found:
        matches = {p for p in paths if _matches(pattern, p)}
        if matches <= covered or not _alike(pattern, matches):
            continue
        chosen.append(pattern)
        covered |= matches
        if len(chosen) == MAX_FAMILIES:
            break
    return chosen


def _main(paths: set[str]) -> set[str]:
    """Job-instrumentation keys repeat every measure under jobs.<j> and tenants.<t>: keep
    total.* and the rest; the per-job/tenant split is shown by the jobs/tenants families."""
    if "total.count" not in paths:
        return paths
    return {p for p in paths if not p.startswith(("jobs.", "tenants."))}


def _heading(title: str, text: str) -> Widget:
    return Widget("text", title, span=12, text=text)


def _counters(present: set[str]) -> list[Widget]:
    main = _main(present)
    widgets = [
        Widget("kpi", h, [RowSpec(path=h)], span=3) for h in ("count", "total.count") if h in main
    ]
    bases = sorted(p[: -len(".count")] for p in main if p.endswith(".count"))
    for base in [b for b in bases if f"{b}.sum" in main][:2]:
        rows = [
            RowSpec(path=f"{base}.sum", hidden=True),
            RowSpec(path=f"{base}.count", hidden=True),
            RowSpec(expression=f"`{base}.sum` / `{base}.count`", label=f"mean {base}"),
        ]
        widgets.append(Widget("kpi", f"mean {base}", rows, span=3))
    families = _families(sorted(main))
    if "total.count" in present:  # job instrumentation: jobs.<j>.* and tenants.<t>.* mirror total
        for group in ("tenants", "jobs"):
            pattern = f"{group}.*.count"
            if any(_matches(pattern, p) for p in present):
                families.insert(0, pattern)
    for pattern in families:
        rows = [RowSpec(path=pattern)]
        widgets.append(Widget("timeseries", pattern, rows, span=8, style="stacked", top=TOP))
        widgets.append(Widget("category", pattern, rows, span=4, top=TOP))
    singles = [p for p in sorted(main) if not any(_matches(f, p) for f in families)]
    for path in singles[:MAX_SINGLES]:
        widgets.append(Widget("timeseries", path, [RowSpec(path=path)], span=4))
    if len(singles) > MAX_SINGLES:
        rows = [RowSpec(path=p) for p in singles[:100]]
        widgets.append(Widget("table", "other counters", rows, span=12))
    return widgets


def for_key(key: str, paths: list[str], kinds: Mapping[str, str] | None = None) -> Dashboard:
    """A dashboard for ``key`` from its ``paths`` and the ``kinds`` of those that are not
    summed (path -> ``distribution`` or ``gauge``); an empty list gives an empty page."""
    kinds = kinds or {}
    dists = sorted(p for p in paths if kinds.get(p) == "distribution")
    gauges = sorted(p for p in paths if kinds.get(p) == "gauge")
    companions = {f"{d}.{m}" for d in dists for m in MOMENTS}
    counters = {
        p for p in paths if p not in kinds and p not in companions and not p.endswith(".square")
    }
    widgets: list[Widget] = []
    if counters:
        widgets.append(_heading("Counters", "Summed per bucket."))
        widgets += _counters(counters)
    per_job = ("jobs.", "tenants.") if "total.count" in counters else ()
    shown = [d for d in dists if not d.startswith(per_job)] if per_job else dists
    if shown:
        widgets.append(_heading("Distributions", "Quantiles of the samples, within 1%."))
        widgets += [Widget("distribution", d, span=6, path=d) for d in shown[:MAX_KIND]]
    if gauges:
        widgets.append(_heading("Gauges", "The last reading per bucket."))
        widgets += [Widget("gauge", g, [RowSpec(path=g)], span=6) for g in gauges[:MAX_KIND]]
    return Dashboard(
        title=key, key=key, widgets=widgets, name="", description="Widgets chosen from the paths."
    )
