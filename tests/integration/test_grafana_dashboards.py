"""Grafana provisioning: the dashboards' JSON parses, matches the built-ins it is generated
from, and every SQL query in it (macros and variables substituted) runs on the real
ClickHouse; a KPI panel's number equals the read API's."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
import yaml

from tally.read import Reader
from tally.schemas.ddl import RollupSchema
from tally.web.grafana import DATASOURCE, dashboard_json
from tally.web.loader import load_all
from tests.integration.dashboard_seed import seed
from tests.integration.readside import apply_schema, settings, start

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2] / "grafana"


def _files() -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text()) for p in sorted((ROOT / "dashboards").glob("*.json"))}


@pytest.fixture(scope="module")
def reader(tmp_path_factory) -> Iterator[Reader]:
    clickhouse = start(tmp_path_factory.mktemp("grafana") / "clickhouse")
    try:
        apply_schema(clickhouse, RollupSchema(database="tally"))
        seed(clickhouse, "tally", days=2, tenants=3)
        with Reader(settings(clickhouse, "tally")) as r:
            yield r
    finally:
        clickhouse.stop()


def _substitute(sql: str, start: int, end: int, granularity: str, segment: str) -> str:
    sql = sql.replace(
        "$__timeFilter(bucket)",
        f"bucket >= toDateTime({start}, 'UTC') AND bucket < toDateTime({end}, 'UTC')",
    )
    sql = sql.replace("${granularity}", granularity)
    return re.sub(r"\$\{[a-z_]+:sqlstring\}", "'" + segment.replace("'", "''") + "'", sql)


def test_json_parses_and_matches_the_builtins():
    files = _files()
    builtins = load_all(None).dashboards
    assert sorted(files) == sorted(builtins)
    for name, d in builtins.items():
        assert files[name] == dashboard_json(d), f"regenerate: python -m tally.web.grafana ({name})"
    provisioning = yaml.safe_load((ROOT / "provisioning/datasources/clickhouse.yaml").read_text())
    source = provisioning["datasources"][0]
    assert (source["type"], source["uid"]) == (DATASOURCE["type"], DATASOURCE["uid"])
    provider = yaml.safe_load((ROOT / "provisioning/dashboards/tally.yaml").read_text())
    compose = yaml.safe_load((ROOT.parent / "docker-compose.yml").read_text())
    grafana = compose["services"]["grafana"]
    assert re.fullmatch(r"grafana/grafana:\d+\.\d+\.\d+", grafana["image"])
    mounted = {v.split(":")[1] for v in grafana["volumes"]}
    assert provider["providers"][0]["options"]["path"] in mounted


def test_every_query_runs_with_its_macros_substituted(reader):
    end = int(time.time())
    start = end - 2 * 86400
    ran = 0
    for name, dashboard in _files().items():
        queries = [t["rawSql"] for p in dashboard["panels"] for t in p.get("targets", [])]
        variables = [v for v in dashboard["templating"]["list"] if v["type"] == "query"]
        for variable in variables:
            values = reader.sql(variable["query"]).rows
            if name in ("jobs", "schedule"):
                assert [r[0] for r in values] == ["t01", "t02", "t03"]
        segments = [""] + (["t02"] if variables else [])
        for sql in queries:
            for segment in segments:
                for g in ("1h", "1d"):
                    reader.sql(_substitute(sql, start, end, g, segment))  # raises on error
                    ran += 1
    assert ran > 100


def test_a_kpi_panel_equals_the_api(reader):
    end = int(time.time())
    start = end - 86400
    runs = next(p for p in _files()["jobs"]["panels"] if p["title"] == "Runs")
    for segment, key in (("", "event::job"), ("t02", "event::job::t02")):
        sql = _substitute(runs["targets"][0]["rawSql"], start, end, "1h", segment)
        shown = reader.sql(sql).rows[0][0]
        series = reader.series(key, ["total.count"], (), start, end, "1h")
        api = sum(series.rows[0].points[1:])  # the API includes the bucket containing `since`
        assert shown == pytest.approx(api) and shown > 0


def _panel(dashboard: str, title: str) -> dict:
    return next(p for p in _files()[dashboard]["panels"] if p["title"] == title)


def test_a_quantiles_panel_equals_the_api(reader):
    end = int(time.time())
    start = end - 86400
    panel = _panel("jobs", "Duration p50 / p95 / p99 (ms)")
    sql = _substitute(panel["targets"][0]["rawSql"], start, end, "1h", "t02")
    rows = reader.sql(sql).rows
    api = reader.quantiles("event::job::t02", "total.duration", (0.5, 0.95, 0.99), start, end)
    expected = [
        (b, *(api.quantile(q)[i] for q in (0.5, 0.95, 0.99)))
        for i, b in enumerate(api.buckets)
        if api.count[i] and b >= start  # the API includes the bucket containing `since`
    ]
    shown = [(int(datetime.fromisoformat(str(r[0])).timestamp()), *r[1:]) for r in rows]
    assert len(shown) == len(expected) > 10
    for got, want in zip(shown, expected, strict=True):
        assert got[0] == want[0]
        assert got[1:] == pytest.approx(want[1:], rel=1e-9)


def test_a_gauge_panel_equals_the_api(reader):
    end = int(time.time())
    start = end - 86400
    panel = _panel("queues", "Depth (waiting jobs)")
    raw = panel["targets"][0]["rawSql"].replace("${framework:sqlstring}", "'rq'")
    sql = _substitute(raw.replace("${queue:sqlstring}", "'default'"), start, end, "1h", "")
    key = "event::queue::rq::default"
    rows = reader.sql(sql).rows
    api = reader.gauge(key, "depth", start, end)
    points = zip(api.buckets, api.last, strict=True)
    expected = [v for b, v in points if v is not None and b >= start]
    assert [r[1] for r in rows] == expected and len(expected) > 10
