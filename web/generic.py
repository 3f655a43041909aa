"""The page for any key: widgets chosen from its paths.

- a KPI per headline counter (``count``, ``total.count``) and a mean for each
  ``<x>.count``/``<x>.sum`` pair (Trifle's duration shape);
- for each family of paths that differ in one segment (``codes.*``, ``tenants.*.count``),
  a stacked timeseries and a top-N category;
- a table of every other path.
"""

from __future__ import annotations

from collections import defaultdict

from tally.web.model import Dashboard, RowSpec, Widget

MAX_FAMILIES = 6
MOMENTS = {"count", "sum", "square"}
TOP = 10


def _families(paths: list[str]) -> list[tuple[str, int]]:
    """Wildcard patterns with 2+ matches, largest first: one ``*`` in place of one segment."""
    counts: dict[str, int] = defaultdict(int)
    for path in paths:
        parts = path.split(".")
        for i in range(len(parts)):
            if len(parts) == 1:
                continue
            counts[".".join([*parts[:i], "*", *parts[i + 1 :]])] += 1
    found = [(p, n) for p, n in counts.items() if n >= 2 and not p.startswith("*")]
    found.sort(key=lambda item: (-item[1], -item[0].count("."), item[0]))
    chosen: list[tuple[str, int]] = []
    covered: set[str] = set()
    for pattern, n in found:
        matches = {p for p in paths if _matches(pattern, p)}
        at = pattern.split(".").index("*")
        if {m.split(".")[at] for m in matches} <= MOMENTS or matches <= covered:
            continue  # count/sum/square of one measure is not a family
        chosen.append((pattern, n))
        covered |= matches
        if len(chosen) == MAX_FAMILIES:
            break
    return chosen


def _matches(pattern: str, path: str) -> bool:
    a, b = pattern.split("."), path.split(".")
    return len(a) == len(b) and all(x in ("*", y) for x, y in zip(a, b, strict=True))


def _mean_pairs(paths: set[str]) -> list[str]:
    bases = sorted(p[: -len(".count")] for p in paths if p.endswith(".count"))
    return [b for b in bases if f"{b}.sum" in paths][:2]


def _main(paths: set[str]) -> set[str]:
    """Job-instrumentation keys repeat every measure under jobs.<j> and tenants.<t>: keep
    total.* and the rest; the per-job/tenant split is shown by the jobs/tenants families."""
    if "total.count" not in paths:
        return paths
    return {p for p in paths if not p.startswith(("jobs.", "tenants."))}


def for_key(key: str, paths: list[str]) -> Dashboard:
    """A dashboard for ``key`` from its ``paths`` (empty list: an empty page)."""
    present = set(paths)
    widgets: list[Widget] = []
    for headline in ("count", "total.count"):
        if headline in present:
            widgets.append(Widget("kpi", headline, [RowSpec(path=headline)], span=3))
    for base in _mean_pairs(present):
        rows = [
            RowSpec(path=f"{base}.sum", hidden=True),
            RowSpec(path=f"{base}.count", hidden=True),
            RowSpec(expression=f"`{base}.sum` / `{base}.count`", label=f"mean {base}"),
        ]
        widgets.append(Widget("kpi", f"mean {base}", rows, span=3))
    families = _families(sorted(_main(present)))
    if "total.count" in present:  # job instrumentation: jobs.<j>.* and tenants.<t>.* mirror total
        for group in ("jobs", "tenants"):
            pattern = f"{group}.*.count"
            if any(_matches(pattern, p) for p in present):
                families.insert(0, (pattern, 0))
    for pattern, _ in families:
        widgets.append(
            Widget("timeseries", pattern, [RowSpec(path=pattern)], span=8, style="stacked", top=TOP)
        )
        widgets.append(Widget("category", pattern, [RowSpec(path=pattern)], span=4, top=TOP))
    singles = [p for p in sorted(_main(present)) if not any(_matches(f, p) for f, _ in families)]
    if singles:
        first = [p for p in singles if not p.endswith(".square")][:6]
        widgets.append(Widget("timeseries", "paths", [RowSpec(path=p) for p in first], span=12))
        widgets.append(
            Widget("table", "other paths", [RowSpec(path=p) for p in singles[:100]], span=12)
        )
    return Dashboard(
        title=key, key=key, widgets=widgets, name="", description="Widgets chosen from the paths."
    )
