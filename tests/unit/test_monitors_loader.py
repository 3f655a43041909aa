"""Monitor files: errors name the file, line and reason; the other monitors still load."""

from __future__ import annotations

from pathlib import Path

from tally.monitors.loader import load_paths, load_text
from tally.monitors.ready import READY
from tally.monitors.spec import Anomaly, Drift, Expected, Share, Threshold, Zero

GOOD = """
channels:
  ops: {type: webhook, url: "http://127.0.0.1:9/alerts"}
monitors:
  - name: cron-stopped
    key: event::cron
    path: jobs.nightly.count
    condition: {type: expected, fewer_than: 1}
    for: 2m
    labels: {severity: page}
    annotations: {summary: "{{ monitor }} {{ value }}"}
    notify: [ops]
"""


def test_a_good_file_loads() -> None:
    loaded = load_text(GOOD, "good.yaml")
    assert loaded.errors == ()
    (m,) = loaded.monitors
    assert (m.name, m.for_s, m.labels, m.notify) == (
        "cron-stopped",
        120,
        {"severity": "page"},
        ("ops",),
    )
    assert m.condition == Expected(fewer_than=1.0)
    assert m.source == "good.yaml:5"


def test_each_bad_monitor_is_reported_with_its_line_and_the_rest_load() -> None:
    text = """monitors:
  - name: ok-1
    key: k
    path: x
    condition: {type: threshold, above: 1}
  - name: bad-type
    key: k
    path: x
    condition:
      type: thresold
  - name: bad-granularity
    key: k
    path: x
    granularity: 7m
    condition: {type: threshold, above: 1}
  - name: both
    key: k
    path: x
    expression: a / b
    condition: {type: threshold, above: 1}
  - name: template
    key: k
    path: x
    condition: {type: threshold, above: 1}
    annotations: {summary: "{{ nope }}"}
  - name: bad-duration
    key: k
    path: x
    for: soon
    condition: {type: threshold, above: 1}
  - name: ok-2
    key: "event::schedule::*"
    path: total.resources
    condition: {type: zero, for: 10m, active: total.count}
"""
    loaded = load_text(text, "m.yaml")
    assert [m.name for m in loaded.monitors] == ["ok-1", "ok-2"]
    assert loaded.monitors[1].condition == Zero(buckets=10, active="total.count")
    errors = loaded.errors
    assert len(errors) == 5
    assert errors[0].startswith("m.yaml:10: 'thresold' is not one of anomaly, drift, expected")
    assert errors[1].startswith("m.yaml:14: granularity '7m'")
    assert errors[2] == "m.yaml:16: a monitor needs exactly one of 'path' or 'expression'"
    assert errors[3].startswith("m.yaml:25: annotation 'summary' uses unknown {{ nope }}")
    assert errors[4].startswith("m.yaml:29: 'for': 'soon' is not a duration")


def test_invalid_yaml_names_the_line() -> None:
    loaded = load_text("monitors:\n  - name: [unclosed\n", "x.yaml")
    assert loaded.monitors == ()
    (error,) = loaded.errors
    assert error.startswith("x.yaml:3: invalid YAML")


def test_a_broken_file_does_not_stop_other_files(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(GOOD)
    (tmp_path / "b.yaml").write_text("monitors: [{name: x}]\n")
    loaded = load_paths([tmp_path])
    assert [m.name for m in loaded.monitors] == ["cron-stopped"]
    assert loaded.errors == (f"{tmp_path / 'b.yaml'}:1: 'key' is required",)


def test_unknown_channel_is_an_error() -> None:
    loaded = load_paths_from_text(GOOD.replace("[ops]", "[pager]"))
    assert any("unknown channel 'pager'" in e for e in loaded.errors)


def load_paths_from_text(text: str):
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        (Path(d) / "m.yaml").write_text(text)
        return load_paths([Path(d)])


ARGS = {
    "queue_depth": "queue: rq::default",
    "queue_stuck": "queue: rq::default",
    "failure_cluster": "jobs: 3",
}


def test_every_ready_made_monitor_is_one_line() -> None:
    lines = "\n".join(f"  - {name}: {{{ARGS.get(name, 'job: billing__job')}}}" for name in READY)
    loaded = load_text(f"ready:\n{lines}\n", "ready.yaml")
    assert loaded.errors == ()
    by_name = {m.name.split(":")[0]: m for m in loaded.monitors}
    assert set(by_name) == {n.replace("_", "-") for n in READY}
    assert by_name["cron-below-expected"].condition == Expected(fewer_than=1.0)
    assert by_name["cron-below-expected"].window == 60
    assert by_name["scheduler-idle"].key == "event::schedule::*"
    assert isinstance(by_name["duration-drift"].condition, Drift)
    assert isinstance(by_name["limited-increasing"].condition, Anomaly)
    assert isinstance(by_name["tenant-volume"].condition, Anomaly)
    assert by_name["tenant-volume"].path == "tenants.*.resources"
    assert isinstance(by_name["queue-latency"].condition, Threshold)
    assert by_name["queue-depth"].path == "depth"
    assert by_name["queue-depth"].gauge
    assert by_name["queue-depth"].key.startswith("event::queue::")
    assert not isinstance(by_name["failure-cluster"].condition, Share)
    assert by_name["failure-cluster"].path == "jobs.*.state.failure"
    assert by_name["failure-cluster"].count_above == 0.0


def test_ready_made_unknown_parameter_is_an_error() -> None:
    loaded = load_text("ready:\n  - scheduler_idle: {job: j, idle: 5m}\n", "r.yaml")
    (error,) = loaded.errors
    assert error.startswith("r.yaml:2: scheduler_idle has no parameter 'idle'; it takes ")
    assert "idle_for" in error


def test_ready_made_errors_name_the_line() -> None:
    loaded = load_text("ready:\n  - cron_below_expected: {}\n  - nope: {job: x}\n", "r.yaml")
    assert loaded.errors == (
        "r.yaml:2: cron_below_expected needs 'job' (text)",
        "r.yaml:3: unknown ready-made monitor 'nope'; one of " + str(sorted(READY)),
    )


def test_a_gauge_monitor_reads_one_concrete_path() -> None:
    head = "monitors:\n  - {name: g, key: q, condition: {type: threshold, above: 1}"
    good = load_text(head + ", path: depth, gauge: true}\n", "g.yaml")
    assert good.errors == () and good.monitors[0].gauge
    for bad in (", path: 'workers.*', gauge: true}", ", expression: depth * 2, gauge: true}",
                ", path: depth, gauge: 'yes'}"):  # fmt: skip
        (error,) = load_text(head + bad + "\n", "g.yaml").errors
        assert error.startswith("g.yaml:2: ") and "gauge" in error
