"""The built-in dashboards as Grafana JSON for the official ClickHouse datasource plugin
(grafana-clickhouse-datasource): same key, segments (template variables), rows and layout,
as SQL over the ``rollups_<granularity>`` views with the plugin's macros.

``python -m tally.web.grafana grafana/dashboards`` rewrites the committed files; a test checks
they are current and that every query runs against ClickHouse with the macros substituted.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

from tally.read.expression import BinOp, Call, Const, Neg, Node, parse
from tally.read.expression import Path as PathNode
from tally.read.rollup_queries import QUANTILES
from tally.web.loader import load_all
from tally.web.model import Dashboard, RowSpec, Widget

DATASOURCE = {"type": "grafana-clickhouse-datasource", "uid": "tally-clickhouse"}
TABLE = "tally.rollups_${granularity}"
TIME = "$__timeFilter(bucket)"
FORMAT_TIMESERIES, FORMAT_TABLE = 0, 1
SQL_FUNCTIONS = {"abs": "abs", "min": "least", "max": "greatest", "coalesce": "coalesce"}


def _q(text: str) -> str:
    """A ClickHouse string literal (the texts come from our own YAML, never from a viewer)."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def key_sql(d: Dashboard) -> str:
    """The key as SQL: template variables for the segments; the first left at '' (All) ->
    the global key."""
    names = d.placeholders()
    if not names:
        return _q(d.key)
    segment = d.segments[names[0]]
    everyone = d.key
    for name in names:
        everyone = everyone.replace(f"::{{{name}}}", "").replace(f"{{{name}}}", "")
    everyone = segment.all or everyone
    parts: list[str] = []
    rest = d.key
    for name in names:
        before, _, rest = rest.partition(f"{{{name}}}")
        parts += [*([_q(before)] if before else []), f"${{{name}:sqlstring}}"]
    if rest:
        parts.append(_q(rest))
    first = f"${{{names[0]}:sqlstring}}"
    return f"if({first} = '', {_q(everyone)}, concat({', '.join(parts)}))"


def _wildcard(path: str) -> str:
    """A one-segment-per-* wildcard as a regular expression for ``match()``."""
    return "^" + r"\.".join("[^.]+" if p == "*" else re.escape(p) for p in path.split(".")) + "$"


def expression_sql(node: Node) -> str:
    """An expression over per-bucket sums; null where undefined, as the read API."""
    if isinstance(node, Const):
        return repr(float(node.value))
    if isinstance(node, PathNode):
        return f"sumIf(value, path = {_q(node.path)})"
    if isinstance(node, Neg):
        return f"(-{expression_sql(node.operand)})"
    if isinstance(node, BinOp):
        a, b = expression_sql(node.left), expression_sql(node.right)
        return f"({a} / nullIf({b}, 0))" if node.op == "/" else f"({a} {node.op} {b})"
    if isinstance(node, Call):
        args = [expression_sql(a) for a in node.args]
        if node.name == "sqrt":
            return f"if({args[0]} < 0, NULL, sqrt({args[0]}))"
        if node.name == "pow":
            return f"pow({args[0]}, {args[1]})"
        if node.name in ("sum", "mean"):
            joined = " + ".join(args)
            return f"({joined})" if node.name == "sum" else f"(({joined}) / {len(args)})"
        return f"{SQL_FUNCTIONS[node.name]}({', '.join(args)})"
    raise TypeError(node)


def _label(row: RowSpec) -> str:
    return row.label or row.path or row.expression or ""


def _row_sql(row: RowSpec, key: str, over_time: bool) -> str:
    time = "bucket AS time, " if over_time else ""
    group = " GROUP BY time ORDER BY time" if over_time else ""
    where = f"key = {key} AND {TIME}"
    if row.expression:
        value = expression_sql(parse(row.expression).tree)
        return f"SELECT {time}{value} AS {_ident(_label(row))} FROM {TABLE} WHERE {where}{group}"
    assert row.path is not None
    if "*" in row.path:
        at = row.path.split(".").index("*") + 1
        item = f"splitByChar('.', path)[{at}]"
        cond = f"match(path, {_q(_wildcard(row.path))})"
        if over_time:
            return (
                f"SELECT bucket AS time, {item} AS item, sum(value) AS value FROM {TABLE} "
                f"WHERE {where} AND {cond} GROUP BY time, item ORDER BY time"
            )
        return (
            f"SELECT {item} AS item, sum(value) AS value FROM {TABLE} WHERE {where} AND {cond} "
            "GROUP BY item ORDER BY value DESC LIMIT 50"
        )
    return (
        f"SELECT {time}sum(value) AS {_ident(_label(row))} FROM {TABLE} "
        f"WHERE {where} AND path = {_q(row.path)}{group}"
    )


def _ident(text: str) -> str:
    return "`" + text.replace("`", "") + "`"


def _table_sql(w: Widget, key: str) -> str:
    rows = [r for r in w.rows if not r.hidden and r.path]
    at = rows[0].path.split(".").index("*") + 1  # type: ignore[union-attr]
    columns = ", ".join(
        f"sumIf(value, match(path, {_q(_wildcard(r.path or ''))})) AS {_ident(_label(r))}"
        for r in rows
    )
    first = _ident(_label(rows[0]))
    return (
        f"SELECT splitByChar('.', path)[{at}] AS item, {columns} FROM {TABLE} "
        f"WHERE key = {key} AND {TIME} GROUP BY item ORDER BY {first} DESC LIMIT 100"
    )


def _panel(w: Widget, d: Dashboard, index: int, pos: dict) -> dict:
    key = key_sql(d)
    panel: dict = {"id": index + 1, "title": w.title or w.type, "gridPos": pos}
    if w.type == "text":
        return {**panel, "type": "text", "options": {"mode": "markdown", "content": w.text}}
    panel["datasource"] = DATASOURCE
    rows = [r for r in w.rows if not r.hidden]
    if w.type == "kpi":
        targets = [(_row_sql(r, key, over_time=False), FORMAT_TABLE) for r in rows]
        panel.update(type="stat", options={"reduceOptions": {"calcs": ["sum"]}})
        panel["fieldConfig"] = {"defaults": {"unit": _unit(w.unit)}, "overrides": []}
    elif w.type == "timeseries":
        targets = [(_row_sql(r, key, over_time=True), FORMAT_TIMESERIES) for r in rows]
        stacked = w.style in ("stacked", "normalized")
        custom = {
            "drawStyle": "bars" if stacked else "line",
            "fillOpacity": 80 if stacked else 20 if w.style == "area" else 0,
            "stacking": {"mode": "percent" if w.style == "normalized" else "normal"}
            if stacked
            else {"mode": "none"},
        }
        panel.update(type="timeseries")
        defaults = {"unit": _unit(w.unit), "custom": custom}
        panel["fieldConfig"] = {"defaults": defaults, "overrides": []}
    elif w.type == "category":
        targets = [(_row_sql(r, key, over_time=False), FORMAT_TABLE) for r in rows]
        panel.update(type="barchart", options={"orientation": "horizontal", "xField": "item"})
    elif w.type == "table":
        pivot = all(r.path and r.path.count("*") == 1 for r in rows)
        sql = _table_sql(w, key) if pivot else _row_sql(rows[0], key, over_time=False)
        targets = [(sql, FORMAT_TABLE)]
        panel.update(type="table")
    elif w.type == "gauge":  # the last reading per bucket (read.rollup_queries.GAUGE)
        targets = [(_gauge_sql(r.path or "", _label(r), key), FORMAT_TIMESERIES) for r in rows]
        panel.update(type="timeseries")
        panel["fieldConfig"] = {"defaults": {"unit": _unit(w.unit)}, "overrides": []}
    else:  # distribution: p50/p95/p99 per bucket (read.rollup_queries.QUANTILES)
        targets = [(_quantiles_sql(w.path or "", key), FORMAT_TIMESERIES)]
        panel.update(type="timeseries")
        panel["fieldConfig"] = {"defaults": {"unit": _unit(w.unit)}, "overrides": []}
    panel["targets"] = [
        {
            "refId": chr(ord("A") + i),
            "datasource": DATASOURCE,
            "editorType": "sql",
            "format": fmt,
            "rawSql": sql,
        }
        for i, (sql, fmt) in enumerate(targets)
    ]
    return panel


def _quantiles_sql(path: str, key: str) -> str:
    """The documented QUANTILES query for p50/p95/p99, one column each."""
    inner = (
        QUANTILES.template.format(db="tally", g="${granularity}")
        .replace("{key:String}", key)
        .replace("{path:String}", _q(path))
        .replace("{qs:Array(Float64)}", "[0.5, 0.95, 0.99]")
        .replace("bucket >= {start:DateTime} AND bucket < {end:DateTime}", TIME)
    )
    return (
        "SELECT bucket AS time, quantiles[1] AS p50, quantiles[2] AS p95, quantiles[3] AS p99 "
        f"FROM ({inner}) ORDER BY time"
    )


def _gauge_sql(path: str, label: str, key: str) -> str:
    """The last reading of a gauge per bucket (as the GAUGE query)."""
    return (
        f"SELECT bucket AS time, last.2 AS {_ident(label)} FROM tally.sketches_${{granularity}} "
        f"WHERE key = {key} AND path = {_q(path)} AND last.1 > 0 AND {TIME} ORDER BY time"
    )


def _unit(unit: str) -> str:
    return {"ms": "ms", "s": "s", "%": "percent"}.get(unit, "short")


def _variables(d: Dashboard) -> list[dict]:
    out: list[dict] = [
        {
            "name": "granularity",
            "label": "granularity",
            "type": "custom",
            "query": "1m,1h,1d",
            "current": {"text": "1h", "value": "1h"},
            "options": [{"text": g, "value": g, "selected": g == "1h"} for g in ("1m", "1h", "1d")],
        }
    ]
    for name in d.placeholders():
        before = d.key.partition(f"{{{name}}}")[0]
        pattern = before.partition("{")[0]  # the key up to its first segment
        at = before.count("::") + 1  # the key's ::-separated part this segment is
        out.append(
            {
                "name": name,
                "label": d.segments[name].label or name,
                "type": "query",
                "datasource": DATASOURCE,
                "query": (
                    f"SELECT DISTINCT splitByString('::', key)[{at}] AS v FROM tally.keys_seen "
                    f"WHERE startsWith(key, {_q(pattern)}) AND v != '' ORDER BY 1"
                ),
                "includeAll": True,
                "allValue": "",
                "current": {"text": "All", "value": "$__all"},
                "refresh": 2,
            }
        )
    return out


def dashboard_json(d: Dashboard) -> dict:
    """One Grafana dashboard (schema 39) for ``d``."""
    panels, x, y, height = [], 0, 0, 0
    for i, w in enumerate(d.widgets):
        width = w.span * 2
        h = 4 if w.type == "kpi" else 9
        if x + width > 24:
            x, y, height = 0, y + height, 0
        panels.append(_panel(w, d, i, {"x": x, "y": y, "w": width, "h": h}))
        x, height = x + width, max(height, h)
    return {
        "uid": f"tally-{d.name}",
        "title": f"tally · {d.title}",
        "description": d.description,
        "tags": ["tally"],
        "schemaVersion": 39,
        "editable": True,
        "time": {"from": f"now-{d.range}", "to": "now"},
        "refresh": "",
        "templating": {"list": _variables(d)},
        "panels": panels,
    }


def write(directory: Path) -> list[Path]:
    """Write every built-in dashboard as ``<name>.json`` into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, d in load_all(None).dashboards.items():
        path = directory / f"{name}.json"
        path.write_text(json.dumps(dashboard_json(d), indent=2) + "\n")
        written.append(path)
    return written


if __name__ == "__main__":
    for p in write(Path(sys.argv[1] if len(sys.argv) > 1 else "grafana/dashboards")):
        print(p)
