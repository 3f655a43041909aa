"""One small load test through the CLI's run function on the embedded stack (~20k events)."""

from __future__ import annotations

import io
import json

import pytest
from rich.console import Console

from tally.loadtest.cli import execute
from tally.loadtest.config import RunConfig

pytestmark = pytest.mark.integration

SECTIONS = (
    "run", "load", "timeline", "freshness", "resources", "storage", "exactness", "micro",
    "baselines", "catchup", "timeline_30d", "ratios", "targets", "files",
)  # fmt: skip


def test_small_load_run_is_exact_and_reports_every_figure(tmp_path):
    config = RunConfig(
        rate=4_000,
        duration_s=5,
        ramp_s=0,
        producers=2,
        pool=5_000,
        customers=50,
        resellers=5,
        products=500,
        tenants=8,
        micro_calls=2_000,
        baseline_events=100_000,
        naive_events=100_000,
        catchup_max_s=40,
        timeline_keys=20,
        query_runs=2,
        drain_timeout_s=40,
        out_dir=tmp_path / "run",
    )
    report = execute(config, Console(file=io.StringIO(), width=120), live=False)

    assert set(SECTIONS) <= report.keys()
    load = report["load"]
    assert load["tracked_events"] == load["sent_events"] == 20_000
    assert load["generator_kept_up"] and load["drained"] and load["refused"] == 0
    assert report["exactness"]["exact"], report["exactness"]["mismatches"]
    assert report["exactness"]["expected_slots"] > 10_000
    assert report["exactness"]["catchup_replay_exact"] is True
    assert report["run"]["errors"] == []

    fresh = report["freshness"]
    assert fresh["probes"] >= 10 and fresh["visible"] == fresh["probes"]
    assert 0 < fresh["p50_s"] <= fresh["p99_s"]
    assert any(row.get("lag_records") is not None for row in report["timeline"])
    assert any(row.get("aggregated_rate") for row in report["timeline"])
    groups = {g["name"]: g for g in report["resources"]["groups"]}
    assert groups["aggregators"]["cpu_s"] > 0 and groups["aggregators"]["rss_mb_max"] > 0

    storage = report["storage"]
    for key in ("rows_per_event_before_optimize", "rows_per_event_after_optimize",
                "bytes_per_event_before_optimize", "bytes_per_event_after_optimize"):  # fmt: skip
        assert storage[key] > 0, key
    assert storage["rows_after_optimize"] <= storage["rows_before_optimize"]

    base = report["baselines"]
    assert base["complete_topic"]
    # The baselines count events as they are on the wire: the client fold sums repeats (same
    # keys, minute and shape) into one, so there are at most as many as were tracked.
    wire = base["consume_decode"]["events"]
    assert 0 < wire <= 20_000
    for key in ("consume_decode", "decode_only", "fold_only", "fold_rows"):
        assert base[key]["events"] == wire and base[key]["events_per_cpu_s"] > 0, key
    assert base["naive"]["events"] == wire and base["naive"]["rows_per_event"] > 1
    assert {q["name"] for q in base["queries"]} >= {"timeline_1h", "success_rate_1h"}
    assert all(q["same_answer"] for q in base["queries"])
    assert report["catchup"]["complete"] and report["catchup"]["events_per_cpu_s"] > 0
    assert report["timeline_30d"]["buckets_returned"] == 720
    assert report["micro"] and all(m["track"]["median_us"] > 0 for m in report["micro"])
    assert {t["name"] for t in report["targets"]} >= {"exact totals", "freshness p99"}
    assert report["ratios"]["aggregator_vs_bare_per_core"] is not None

    saved = json.loads((tmp_path / "run" / "report.json").read_text())
    assert saved["exactness"]["exact"] is True
    assert (tmp_path / "run" / "chart.png").stat().st_size > 10_000
