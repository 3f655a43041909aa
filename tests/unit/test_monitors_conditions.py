"""Each condition on constructed series: the exact buckets where it fires and resolves."""

from __future__ import annotations

from tally.monitors.engine import advance
from tally.monitors.evaluate import frames
from tally.monitors.loader import load_text
from tally.monitors.source import Fetched

T0 = 1_700_000_040 - 1_700_000_040 % 60  # a minute boundary
M = 60


def monitor(body: str):
    loaded = load_text(body, "test.yaml")
    assert loaded.errors == ()
    (m,) = loaded.monitors
    return m


def run(body: str, series: dict[str, dict[str, list[float | None]]]) -> list[tuple[str, str, int]]:
    """Judge every bucket of ``series`` (key -> path -> values, None = not written);
    return (kind, segment, minute index) per notification."""
    m = monitor(body)
    n = max(len(v) for paths in series.values() for v in paths.values())
    buckets = [T0 + i * M for i in range(n)]
    grid = {
        key: {p: {buckets[i]: v for i, v in enumerate(vs) if v is not None} for p, vs in ps.items()}
        for key, ps in series.items()
    }
    step = advance(m, frames(m, Fetched(buckets, grid)), {}, 0)
    return [(n.kind, n.segment, (n.bucket - T0) // M) for n in step.notices]


def yaml(key: str, what: str, condition: str, extra: str = "") -> str:
    return f"""
monitors:
  - name: m
    key: "{key}"
    {what}
    granularity: 1m
    condition: {condition}
{extra}"""


def test_threshold_above_fires_after_for_and_resolves_after_keep_firing_for() -> None:
    body = yaml(
        "k", "path: x", "{type: threshold, above: 5}", "    for: 2m\n    keep_firing_for: 2m"
    )
    x = [1, 6, 1, 6, 6, 6, 1, 6, 1, 1, 1]
    # breach at 1 (one bucket only), 3..5 (fires at 4: held 2m), clear at 6, breach 7, clear 8-9
    assert run(body, {"k": {"x": x}}) == [("firing", "", 4), ("resolved", "", 9)]


def test_threshold_below_for_zero_fires_on_first_breach() -> None:
    body = yaml("k", "path: x", "{type: threshold, below: 2}")
    assert run(body, {"k": {"x": [3, 1, 1, 3]}}) == [("firing", "", 1), ("resolved", "", 3)]


def test_range() -> None:
    body = yaml("k", "path: x", "{type: range, min: 2, max: 4}")
    x = [3, 5, 3, 1, 3]
    assert run(body, {"k": {"x": x}}) == [
        ("firing", "", 1), ("resolved", "", 2), ("firing", "", 3), ("resolved", "", 4),
    ]  # fmt: skip


def test_expected_counts_missing_buckets_as_zero_over_a_window() -> None:
    # a cron expected at least twice per 3 minutes; it stops after minute 3, restarts at 7
    body = yaml("event::cron", "path: runs", "{type: expected, fewer_than: 2}", "    window: 3m")
    runs = [1, 1, 1, 1, None, None, None, 1, 1, 1]
    # windows ending at 4: [1,1,None] = 2 ok; at 5: [1,None,None] = 1 -> fires at 5;
    # at 8: [None,1,1] = 2 -> resolves at 8
    assert run(body, {"event::cron": {"runs": runs}}) == [("firing", "", 5), ("resolved", "", 8)]


def test_zero_for_too_long_counts_only_active_buckets() -> None:
    body = yaml(
        "event::schedule::*", "path: total.resources",
        "{type: zero, for: 3m, active: total.count}",
    )  # fmt: skip
    series = {
        # acme: runs every minute, touches nothing from minute 2 on, then 5 resources at 8
        "event::schedule::acme": {
            "total.count": [1, 1, 1, 1, 1, 1, 1, 1, 1],
            "total.resources": [4, 3, 0, 0, 0, 0, 0, 0, 5],
        },
        # globex: idle minutes are interleaved with minutes without a run (which do not count)
        "event::schedule::globex": {
            "total.count": [1, None, 1, None, 1, 1, 1, 1, 1],
            "total.resources": [0, None, 0, None, 2, 2, 2, 2, 2],
        },
    }
    assert run(body, series) == [("firing", "acme", 4), ("resolved", "acme", 8)]


def test_drift_cusum_fires_on_a_creeping_rise() -> None:
    body = yaml("k", "path: d", "{type: drift, history: 10, k: 0.5, h: 3}")
    flat = [100.0, 101, 99, 100, 100, 101, 99, 100, 101, 99]
    rising = [103.0, 106, 109, 112, 115]
    # at 10 the window is 1..10; baseline 1..6 (mean 100, sd 0.816); z of 103 = 3.67 and
    # the sum S = 0.72 at 8, 0 at 9, 3.17 at 10 > h
    assert run(body, {"k": {"d": flat + rising}}) == [("firing", "", 10)]
    assert run(body, {"k": {"d": flat + flat}}) == []


def test_anomaly_hampel_flags_one_outlier_and_resolves_next_bucket() -> None:
    body = yaml("k", "path: v", "{type: anomaly, history: 5, k: 3, floor: 1}")
    v = [10, 11, 10, 9, 10, 10, 30, 10, 10]
    # median 10, MAD*1.4826 = 1.48 at 6: |30-10| > 3*1.48 -> fires; 7 back to 10 -> resolves
    assert run(body, {"k": {"v": v}}) == [("firing", "", 6), ("resolved", "", 7)]


def test_anomaly_needs_three_points_of_history() -> None:
    body = yaml("k", "path: v", "{type: anomaly, history: 5, k: 3, floor: 1}")
    assert run(body, {"k": {"v": [10, 50, 10]}}) == []


def test_share_jump_for_one_segment_only() -> None:
    body = yaml(
        "event::schedule", "path: tenants.*.resources", "{type: share, jump: 0.3, history: 4}"
    )
    series = {
        "event::schedule": {
            "tenants.acme.resources": [10, 10, 10, 10, 10, 70, 10],
            "tenants.globex.resources": [10, 10, 10, 10, 10, 10, 10],
        }
    }
    # acme's share goes from 0.5 to 0.875 at 5; globex's drops (not a jump up)
    assert run(body, series) == [("firing", "acme", 5), ("resolved", "acme", 6)]


def test_share_above_on_key_segments() -> None:
    body = yaml("q::*", "path: n", "{type: share, above: 0.6}")
    series = {"q::a": {"n": [1, 1, 9, 1]}, "q::b": {"n": [1, 1, 1, 1]}}
    assert run(body, series) == [("firing", "a", 2), ("resolved", "a", 3)]


def test_no_data_per_key_segment() -> None:
    body = yaml("event::cron::*", "path: count", "{type: no_data}", "    for: 2m")
    series = {
        "event::cron::a": {"count": [1, 1, None, None, None, 1]},
        "event::cron::b": {"count": [1, 1, 1, 1, 1, 1]},
    }
    assert run(body, series) == [("firing", "a", 3), ("resolved", "a", 5)]


def test_expression_undefined_is_no_data_and_does_not_resolve_a_firing_alert() -> None:
    body = yaml("k", "expression: fail / runs", "{type: threshold, above: 0.5}")
    series = {"k": {"fail": [0, 3, 0, 0], "runs": [4, 4, 0, 4]}}
    # 1 fires; at 2 runs = 0 -> undefined: stays firing; 3 clear -> resolves
    assert run(body, series) == [("firing", "", 1), ("resolved", "", 3)]


def test_notify_every_repeats_while_firing() -> None:
    body = yaml("k", "path: x", "{type: threshold, above: 0}", "    notify_every: 3m")
    assert run(body, {"k": {"x": [1, 1, 1, 1, 1, 1, 1, 0]}}) == [
        ("firing", "", 0), ("repeat", "", 3), ("repeat", "", 6), ("resolved", "", 7),
    ]  # fmt: skip


def test_states_pass_through_pending_and_nodata() -> None:
    m = monitor(yaml("k", "expression: a / b", "{type: threshold, above: 1}", "    for: 3m"))
    buckets = [T0 + i * M for i in range(5)]
    a = [5, 5, 0, 5, 0]
    b = [1, 1, 0, 1, 1]
    grid = {"k": {"a": dict(zip(buckets, a, strict=True)), "b": dict(zip(buckets, b, strict=True))}}
    step = advance(m, frames(m, Fetched(buckets, grid)), {}, 0)
    assert [(t.before, t.after, (t.bucket - T0) // M) for _, t in step.transitions] == [
        ("ok", "pending", 0), ("pending", "nodata", 2), ("nodata", "pending", 3),
        ("pending", "ok", 4),
    ]  # fmt: skip
    assert step.notices == []


def test_failure_cluster_counts_failing_jobs_as_one_alert() -> None:
    body = "ready:\n  - failure_cluster: {jobs: 2, window: 1m}\n"
    series = {
        "event::job": {
            "jobs.a.state.failure": [0, 1, 1, 0, 1],
            "jobs.b.state.failure": [0, 0, 2, 0, 0],
            "jobs.c.state.failure": [0, 0, 1, 0, 0],
            "jobs.c.count": [5, 5, 5, 5, 5],
        }
    }
    # one failing job at 1 and 4 is not a cluster; three at 2 are
    assert run(body, series) == [("firing", "", 2), ("resolved", "", 3)]


def test_a_read_error_is_the_error_state_and_keeps_a_firing_alert() -> None:
    from tally.monitors.evaluate import Frames, Segment
    from tally.monitors.state import FIRING, AlertState

    m = monitor(yaml("k", "path: x", "{type: threshold, above: 1}"))
    buckets = [T0 + i * M for i in range(2)]
    seg = Segment("", "k")
    step = advance(m, Frames(buckets, {}), {seg: AlertState()}, 0, error="ClickHouse down")
    assert [(t.before, t.after) for _, t in step.transitions] == [("ok", "error")]
    assert step.states[seg].message == "ClickHouse down" and step.notices == []
    firing = AlertState(FIRING, since=T0 - M, last_bucket=T0 - M, notified_at=T0 - M)
    step = advance(m, Frames(buckets, {}), {seg: firing}, 0, error="ClickHouse down")
    assert step.states[seg].state == FIRING and step.transitions == []
