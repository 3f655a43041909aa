"""Dashboards as code: YAML loading, errors naming file/line/reason, the per-key page."""

from __future__ import annotations

from pathlib import Path

from tally.web.generic import for_key
from tally.web.loader import load_all, load_dir, load_text
from tally.web.model import Dashboard, LoadError

GOOD = """\
title: Calculations
key: calc::customer::{customer}
segments:
  customer: {label: customer, all: calc}
range: 7d
granularity: 1d
widgets:
  - type: kpi
    rows:
      - {path: success, hidden: true}
      - {path: count, hidden: true}
      - {expression: success / count}
  - type: category
    top: 5
    drill: customer
    rows: [{path: codes.*}]
"""


def _error(text: str) -> LoadError:
    result = load_text(text, "x.yaml", "x")
    assert isinstance(result, LoadError), result
    return result


def test_a_valid_file_loads_with_its_segments():
    d = load_text(GOOD, "calc.yaml", "calc")
    assert isinstance(d, Dashboard)
    assert d.placeholders() == ["customer"]
    assert d.segments["customer"].all == "calc"
    assert [w.type for w in d.widgets] == ["kpi", "category"]
    assert d.widgets[0].rows[2].expression == "success / count"


def test_an_unnamed_segment_gets_defaults():
    d = load_text("title: t\nkey: a::{b}\nwidgets: [{type: text, text: hi}]\n", "f", "f")
    assert isinstance(d, Dashboard)
    assert d.segments["b"].optional


def test_yaml_syntax_error_names_the_line():
    error = _error("title: x\nkey: calc\nwidgets:\n  - type: kpi\n   rows: [\n")
    assert error.file == "x.yaml" and error.line in (5, 6)
    assert error.reason.startswith("YAML:")


def test_a_wrong_value_names_its_line_and_field():
    text = GOOD.replace("    top: 5", "    top: many")
    error = _error(text)
    assert error.line == 14
    assert "int" in error.reason and "widgets.1.top" in error.reason


def test_an_unknown_field_is_refused():
    error = _error(GOOD.replace("    top: 5", "    tpo: 5"))
    assert "tpo" in error.reason and error.line == 14


def test_a_bad_expression_names_its_row():
    error = _error(GOOD.replace("success / count}", "success / (count}"))
    assert error.line == 12 and error.reason.startswith("expression:")


def test_semantic_errors():
    assert "placeholder" in _error(GOOD.replace("drill: customer", "drill: tenant")).reason
    assert "range" in _error(GOOD.replace("range: 7d", "range: 2w")).reason
    assert _error(GOOD.replace("range: 7d", "range: 2w")).line == 5
    kpi_wildcard = GOOD.replace("{path: count, hidden: true}", "{path: codes.*}")
    assert "wildcard" in _error(kpi_wildcard).reason
    both = GOOD.replace("{expression: success / count}", "{path: a, expression: b}")
    assert "exactly one" in _error(both).reason
    assert "mapping" in _error("- just\n- a list\n").reason


def test_one_broken_file_does_not_stop_the_others(tmp_path: Path):
    (tmp_path / "calc.yaml").write_text(GOOD)
    (tmp_path / "broken.yaml").write_text("title: b\nkey: calc\nwidgets:\n  - type: pie\n")
    (tmp_path / "Bad Name.yaml").write_text(GOOD)
    loaded = load_dir(tmp_path)
    assert list(loaded.dashboards) == ["calc"]
    files = sorted(Path(e.file).name for e in loaded.errors)
    assert files == ["Bad Name.yaml", "broken.yaml"]
    broken = next(e for e in loaded.errors if e.file.endswith("broken.yaml"))
    assert broken.line == 4 and "pie" in broken.reason
    assert str(broken).startswith(f"{tmp_path / 'broken.yaml'}:4: ")


def test_builtins_load_in_order_and_a_user_file_replaces_one(tmp_path: Path):
    loaded = load_all(None)
    assert loaded.errors == []
    assert list(loaded.dashboards) == ["cron", "schedule", "jobs", "queues"]
    assert all(d.builtin for d in loaded.dashboards.values())
    (tmp_path / "jobs.yaml").write_text(GOOD)
    replaced = load_all(tmp_path)
    assert replaced.dashboards["jobs"].title == "Calculations"
    assert not replaced.dashboards["jobs"].builtin
    assert "does-not-exist" in str(load_all(tmp_path / "does-not-exist").errors[0])


def test_the_key_page_chooses_widgets_from_paths():
    paths = [
        "total.count", "total.duration.count", "total.duration.sum", "total.duration.square",
        "total.state.success", "total.state.failure", "total.errors.ValueError",
        "total.errors.TimeoutError", "tenants.a.count", "tenants.b.count", "tenants.c.count",
        "total.resources",
    ]  # fmt: skip
    d = for_key("event::job", paths)
    titles = [w.title for w in d.widgets]
    assert "total.count" in titles and "mean total.duration" in titles
    assert "tenants.*.count" in titles
    assert "total.state.*" in titles and "total.errors.*" in titles
    assert {w.type for w in d.widgets} >= {"kpi", "timeseries", "category", "text"}
    assert d.segments == {}
    assert for_key("empty", []).widgets == []


def test_the_key_page_groups_by_kind_never_stacks_measures_nor_charts_squares():
    paths = [
        "total.count", "total.retries", "total.resources", "total.attempt",
        "total.duration", "total.duration.count", "total.duration.sum", "total.duration.square",
        "total.lag.count", "total.lag.sum", "total.lag.square", "jobs.a.count", "jobs.b.count",
        "jobs.a.duration", "jobs.a.duration.count", "jobs.a.duration.sum",
        "jobs.a.duration.square", "depth",
    ]  # fmt: skip
    kinds = {"total.duration": "distribution", "jobs.a.duration": "distribution",
             "depth": "gauge"}  # fmt: skip
    d = for_key("event::job", paths, kinds)
    headings = [w.title for w in d.widgets if w.type == "text"]
    assert headings == ["Counters", "Distributions", "Gauges"]
    drawn = [r.path or r.expression or "" for w in d.widgets for r in w.rows] + [
        w.path or "" for w in d.widgets
    ]
    assert not [p for p in drawn if p.endswith(".square")]
    stacked = [w.rows[0].path for w in d.widgets if w.style == "stacked"]
    assert stacked == ["jobs.*.count"]  # not total.* (count + retries + ...), not *.square
    assert [w.path for w in d.widgets if w.type == "distribution"] == ["total.duration"]
    assert [w.rows[0].path for w in d.widgets if w.type == "gauge"] == ["depth"]
    kpis = [w.title for w in d.widgets if w.type == "kpi"]
    assert kpis == ["total.count", "mean total.lag"]  # a distribution is not a hand-sent mean
    assert "total.duration.sum" not in drawn


def test_builtin_jobs_dashboard_has_what_the_issue_asks_for():
    jobs = load_all(None).dashboards["jobs"]
    paths = {r.path for w in jobs.widgets for r in w.rows if r.path}
    assert {"total.state.*", "total.errors.*", "tenants.*.count"} <= paths
    assert [w.path for w in jobs.widgets if w.type == "distribution"] == [
        "total.duration",
        "total.queue_lag",
    ]
    assert jobs.placeholders() == ["tenant"]


def test_builtin_queues_dashboard_reads_the_samplers_gauges():
    queues = load_all(None).dashboards["queues"]
    assert queues.key == "event::queue::{framework}::{queue}"
    assert {w.type for w in queues.widgets} == {"gauge"}
    paths = [r.path for w in queues.widgets for r in w.rows]
    assert paths == ["depth", "oldest_age_s", "workers.busy", "workers.idle", "workers.stalled"]


def test_a_gauge_row_is_one_concrete_path_and_sketches_have_no_heatmap():
    head = "title: t\nkey: k\nwidgets:\n"
    for row in ("{path: queues.*.depth}", "{expression: depth * 2}"):
        bad = load_text(head + f"  - {{type: gauge, rows: [{row}]}}\n", "q.yaml", "q")
        assert isinstance(bad, LoadError) and "gauge row" in bad.reason
    heat = load_text(head + "  - {type: distribution, path: d, style: heatmap}\n", "d.yaml", "d")
    assert isinstance(heat, LoadError) and "heatmap" in heat.reason
