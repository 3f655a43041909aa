"""The run's report: one JSON-friendly dict, same-run ratios and the targets, met or missed."""

from __future__ import annotations

import json
import os
import platform
from dataclasses import asdict
from pathlib import Path

import psutil

from tally.loadtest.baselines import Rate
from tally.loadtest.flamesummary import summarize
from tally.loadtest.monitor import Sample
from tally.loadtest.pacing import Schedule
from tally.loadtest.parts import summarize as summarize_parts
from tally.loadtest.runner import RunData, config_dict

TARGETS = {
    "aggregator_vs_bare": 0.8,
    "aggregator_events_per_core_s": 300_000,
    "e2e_events_per_s": 100_000,
    "e2e_duration_s": 300,
    "freshness_p99_s": 5.0,
    "track_median_us": 5.0,
    "rows_per_event": 0.01,
    "timeline_30d_ms": 50.0,
}


def _rate(r: Rate | None) -> dict | None:
    return None if r is None else r.as_dict()


def _div(a: float | None, b: float | None, digits: int = 3) -> float | None:
    if a is None or not b:
        return None
    return round(a / b, digits)


def rates(samples: list[Sample]) -> list[dict]:
    """Per-sample rates (events/s) from the cumulative counters, plus lag and usage."""
    out = []
    prev = None
    for s in samples:
        row: dict = {"t": s.t, "target_rate": s.target_rate, "lag_records": s.lag_records}
        if prev is not None and s.t > prev.t:
            dt = s.t - prev.t
            row["t_mid"] = round(s.t - dt / 2, 3)
            row["produced_rate"] = round((s.tracked - prev.tracked) / dt)
            row["sent_rate"] = round((s.sent - prev.sent) / dt)
            if s.aggregated is not None and prev.aggregated is not None:
                row["aggregated_rate"] = round((s.aggregated - prev.aggregated) / dt)
        row["tracked"], row["aggregated"] = s.tracked, s.aggregated
        for group, usage in s.usage.items():
            row[f"{group.split(' ')[0]}_cpu_pct"] = usage["cpu_pct"]
            row[f"{group.split(' ')[0]}_rss_mb"] = usage["rss_mb"]
        out.append(row)
        prev = s
    return out


def _window_rate(samples: list[Sample], t0: float, t1: float, field: str) -> float | None:
    inside = [s for s in samples if t0 <= s.t <= t1 and getattr(s, field) is not None]
    if len(inside) < 2 or inside[-1].t <= inside[0].t:
        return None
    a, b = inside[0], inside[-1]
    return (getattr(b, field) - getattr(a, field)) / (b.t - a.t)


def load_section(data: RunData) -> dict:
    """What was produced and aggregated, overall and in the steady window (after the ramp)."""
    c = data.config
    prods = data.producers
    tracked = sum(p.tracked for p in prods)
    sent_events = sum(p.sent_events for p in prods)
    sent_records = sum(p.sent_records for p in prods)
    target = Schedule(c.rate_profile()).total
    steady = (min(c.ramp_s, c.duration_s), c.duration_s)
    produced = _window_rate(data.samples, *steady, "tracked")
    aggregated = _window_rate(data.samples, *steady, "aggregated")
    during = [s for s in data.samples if s.t <= c.duration_s]
    lags = [s.lag_records for s in during if s.lag_records is not None]
    return {
        "target_events": round(target),
        "tracked_events": tracked,
        "sent_events": sent_events,
        "sent_records": sent_records,
        "events_per_record": _div(sent_events, sent_records, 1),
        "refused": sum(p.refused for p in prods),
        "dropped": sum(p.dropped for p in prods),
        "generator_kept_up": tracked >= 0.98 * target,
        "producer_cpu_s": round(sum(p.cpu_s for p in prods), 2),
        "producer_flush_s": round(max((p.flush_s for p in prods), default=0.0), 2),
        "average_rate": round(tracked / c.duration_s),
        "steady_window_s": [steady[0], steady[1]],
        "steady_produced_rate": None if produced is None else round(produced),
        "steady_aggregated_rate": None if aggregated is None else round(aggregated),
        "drained": data.drained,
        "drain_s": round(data.drain_s, 2),
        "lag_records_max": max(lags, default=None),
        "lag_records_at_end": lags[-1] if lags else None,
        "lag_records_mean": round(sum(lags) / len(lags), 1) if lags else None,
    }


def storage_section(data: RunData, events: int) -> dict:
    """Rows and bytes per event, as inserted and after OPTIMIZE FINAL."""
    b, a, f = data.size_before, data.size_after, data.size_final
    if b is None or a is None or f is None:
        return {}
    return {
        "rows_before_optimize": a.rows - b.rows,
        "rows_after_optimize": f.rows - b.rows,
        "rows_per_event_before_optimize": _div(a.rows - b.rows, events, 5),
        "rows_per_event_after_optimize": _div(f.rows - b.rows, events, 5),
        "bytes_on_disk_before_optimize": a.bytes_on_disk - b.bytes_on_disk,
        "bytes_on_disk_after_optimize": f.bytes_on_disk - b.bytes_on_disk,
        "bytes_per_event_before_optimize": _div(a.bytes_on_disk - b.bytes_on_disk, events, 3),
        "bytes_per_event_after_optimize": _div(f.bytes_on_disk - b.bytes_on_disk, events, 3),
        "parts_before_optimize": a.parts,
        "parts_after_optimize": f.parts,
        "rows_after_optimize_by_class": [
            {**row, "rows_per_event": _div(row["rows"], events, 5)} for row in data.rows_by_class
        ],
    }


def baselines_section(data: RunData) -> dict | None:
    """The limit and the naive design."""
    b = data.baselines
    if b is None:
        return None
    return {
        "records": b.records,
        "payload_bytes": b.payload_bytes,
        "complete_topic": b.complete_topic,
        "consume_decode": _rate(b.consume_decode),
        "decode_only": _rate(b.decode_only),
        "fold_only": _rate(b.fold_only),
        "fold_rows": _rate(b.fold_rows),
        "fold_flush_events": b.fold_flush_events,
        "fold_rows_out": b.fold_rows_out,
        "naive": {
            "events": b.naive_events,
            "rows": b.naive_rows,
            "rows_per_event": _div(b.naive_rows, b.naive_events, 2),
            "expand": _rate(b.naive_expand),
            "insert_s": round(b.naive_insert_s, 3),
            "insert_rows_per_s": round(b.naive_rows / b.naive_insert_s)
            if b.naive_insert_s
            else None,
            "total": _rate(b.naive_total),
            "bytes_on_disk": b.naive_bytes_on_disk,
            "bytes_per_event": _div(b.naive_bytes_on_disk, b.naive_events, 2),
            "covers_run": b.naive_covers_run,
        },
        "select_1": asdict(b.select_1) if b.select_1 else None,
        "queries": [
            {
                "name": q.name,
                "rollups": asdict(q.rollups),
                "naive": asdict(q.naive),
                "naive_over_rollups": _div(q.naive.p50_ms, q.rollups.p50_ms, 2),
                "same_answer": q.same_answer,
            }
            for q in b.queries
        ],
    }


def ratios_section(report: dict) -> dict:
    """Same-run ratios: ours against the baselines."""
    base = report.get("baselines") or {}
    cd = base.get("consume_decode") or {}
    catchup = report.get("catchup") or {}
    storage = report.get("storage") or {}
    naive = base.get("naive") or {}
    load = report["load"]
    out = {
        "aggregator_vs_bare_per_core": _div(
            catchup.get("events_per_cpu_s"), cd.get("events_per_cpu_s")
        ),
        "aggregator_vs_bare_wall": _div(catchup.get("events_per_s"), cd.get("events_per_s")),
        "fold_only_vs_decode_only_per_core": _div(
            (base.get("fold_only") or {}).get("events_per_cpu_s"),
            (base.get("decode_only") or {}).get("events_per_cpu_s"),
        ),
        "e2e_steady_vs_bare_wall": _div(load.get("steady_aggregated_rate"), cd.get("events_per_s")),
        "e2e_steady_vs_aggregator_catchup": _div(
            load.get("steady_aggregated_rate"), catchup.get("events_per_s")
        ),
        "naive_over_rollups_rows_per_event": _div(
            naive.get("rows_per_event"), storage.get("rows_per_event_before_optimize"), 1
        ),
        "naive_over_rollups_bytes_per_event": _div(
            naive.get("bytes_per_event"), storage.get("bytes_per_event_before_optimize"), 1
        ),
        "naive_insert_vs_aggregator_catchup": _div(
            (naive.get("total") or {}).get("events_per_s"), catchup.get("events_per_s")
        ),
    }
    micro = report.get("micro") or []
    if micro:
        out["track_over_bare_loop_median"] = _div(
            micro[0]["track"]["median_us"], micro[0]["bare"]["median_us"], 1
        )
    return out


def targets_section(report: dict) -> list[dict]:
    """Each target with its measured value and whether it was met (None: not measured)."""
    base = report.get("baselines") or {}
    catchup = report.get("catchup") or {}
    load, fresh, storage = report["load"], report["freshness"], report.get("storage") or {}
    ratios = report["ratios"]
    micro = report.get("micro") or []
    t30 = report.get("timeline_30d") or {}
    e2e = load.get("steady_aggregated_rate")
    duration = report["run"]["config"]["duration_s"]
    p99 = fresh.get("p99_s")
    exact = report["exactness"].get("exact")

    def row(name: str, target: str, measured, met: bool | None, note: str = "") -> dict:
        return {"name": name, "target": target, "measured": measured, "met": met, "note": note}

    def at_most(value, limit) -> bool | None:
        return None if value is None else value <= limit

    def at_least(value, limit) -> bool | None:
        return None if value is None else value >= limit

    calc = next((m for m in micro if m["kind"].startswith("calculation")), None)
    sustained = (
        None
        if e2e is None
        else (
            e2e >= TARGETS["e2e_events_per_s"]
            and duration >= TARGETS["e2e_duration_s"]
            and (p99 is not None and p99 <= TARGETS["freshness_p99_s"])
            and bool(exact)
        )
    )
    return [
        row(
            "aggregator vs bare consume+decode (per core)",
            ">= 0.8x",
            ratios.get("aggregator_vs_bare_per_core"),
            at_least(ratios.get("aggregator_vs_bare_per_core"), TARGETS["aggregator_vs_bare"]),
        ),
        row(
            "aggregator events/s on one core",
            ">= 300,000",
            catchup.get("events_per_cpu_s"),
            at_least(catchup.get("events_per_cpu_s"), TARGETS["aggregator_events_per_core_s"]),
            "catch-up replay: events / aggregator CPU seconds",
        ),
        row(
            "end to end sustained",
            ">= 100,000 events/s for 300 s, p99 <= 5 s, exact",
            {"events_per_s": e2e, "duration_s": duration, "freshness_p99_s": p99, "exact": exact},
            sustained,
        ),
        row(
            "freshness p99",
            "<= 5 s",
            p99,
            at_most(p99, TARGETS["freshness_p99_s"]) if fresh.get("probes") else None,
        ),
        row("exact totals", "every slot equal", exact, exact),
        row(
            "track() median (calculation event)",
            "<= 5 us",
            calc["track"]["median_us"] if calc else None,
            at_most(calc["track"]["median_us"], TARGETS["track_median_us"]) if calc else None,
        ),
        row(
            "rollup rows per event (after OPTIMIZE FINAL)",
            "<= 0.01",
            storage.get("rows_per_event_after_optimize"),
            at_most(storage.get("rows_per_event_after_optimize"), TARGETS["rows_per_event"]),
            "depends on rate vs cardinality; see BENCHMARKS.md",
        ),
        row(
            "30-day hourly timeline p50 (unmerged parts)",
            "<= 50 ms",
            (t30.get("unmerged") or {}).get("p50_ms"),
            at_most((t30.get("unmerged") or {}).get("p50_ms"), TARGETS["timeline_30d_ms"]),
        ),
        row(
            "bare consume+decode (reference)",
            "-",
            (base.get("consume_decode") or {}).get("events_per_cpu_s"),
            None,
            "events per CPU second",
        ),
    ]


def build(data: RunData) -> dict:
    """The whole report."""
    c = data.config
    load = load_section(data)
    mismatches = data.comparison.mismatches if data.comparison else []
    report: dict = {
        "run": {
            "id": data.run_id,
            "started_at": data.started_at,
            "finished_at": data.finished_at,
            "mode": "embedded" if c.embedded else "external",
            "host": {
                "cpus": os.cpu_count(),
                "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
                "python": platform.python_version(),
                "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
            },
            "endpoints": {
                "bootstrap": data.endpoints.bootstrap if data.endpoints else None,
                "clickhouse_url": data.endpoints.clickhouse_url if data.endpoints else None,
                "partitions": data.endpoints.partitions if data.endpoints else None,
            },
            "config": config_dict(c),
            "errors": data.errors,
        },
        "load": load,
        "timeline": rates(data.samples),
        "freshness": {
            **(asdict(data.freshness) if data.freshness else {}),
            "probes_series": [[round(t, 3), f and round(f, 3)] for t, f in data.probes],
        },
        "resources": {
            "window_s": round(data.usage_window_s, 1),
            "groups": [asdict(u) for u in data.usage],
            "other_processes_cpu_s": data.other_cpu_s,
        },
        "storage": storage_section(data, load["tracked_events"]),
        "parts": parts_section(data),
        "exactness": {
            "exact": data.comparison.exact if data.comparison else None,
            "expected_slots": data.comparison.expected_slots if data.comparison else None,
            "actual_slots": data.comparison.actual_slots if data.comparison else None,
            "mismatches": [[list(s), want, got] for s, want, got in mismatches],
            "catchup_replay_exact": data.catchup_exact,
        },
        "micro": [asdict(m) for m in data.micro],
        "baselines": baselines_section(data),
        "catchup": asdict(data.catchup) if data.catchup else None,
        "timeline_30d": asdict(data.timeline) if data.timeline else None,
        "files": {"flame": data.flame},
        "profile": [asdict(f) for f in summarize(Path(data.flame))] if data.flame else [],
    }
    report["ratios"] = ratios_section(report)
    report["targets"] = targets_section(report)
    return report


def parts_section(data: RunData) -> dict:
    """ClickHouse inserts/s, new parts/s per table, active parts, merges, TOO_MANY_PARTS."""
    c = data.config
    steady = (c.ramp_s, c.duration_s)
    return summarize_parts(data.parts, data.part_limits, *steady)


def write_json(report: dict, path: Path) -> Path:
    """Write ``report`` as indented JSON."""
    path.write_text(json.dumps(report, indent=2, default=str))
    return path
