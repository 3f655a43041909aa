"""ClickHouse's parts pressure during a run, sampled every few seconds.

Each sample holds cumulative counters (inserts from ``system.events``, new parts and merges per
table from ``system.part_log``, ``TOO_MANY_PARTS`` from ``system.errors``) and gauges (active
parts per table and the fullest partition from ``system.parts``, merges in flight from
``system.merges``). ``summarize`` turns them into rates and maxima against ClickHouse's
documented limits (``parts_to_delay_insert`` / ``parts_to_throw_insert``, read from the server).
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

COUNTER_EVENTS = ("InsertQuery", "DelayedInserts", "RejectedInserts")
LIMIT_SETTINGS = ("parts_to_delay_insert", "parts_to_throw_insert")


@dataclass
class PartsSample:
    """One sample: ``t`` from the run's origin; counters cumulative since the server started."""

    t: float
    events: dict[str, int] = field(default_factory=dict)
    new_parts: dict[str, int] = field(default_factory=dict)
    merged_parts: dict[str, int] = field(default_factory=dict)
    active_parts: dict[str, int] = field(default_factory=dict)
    fullest_partition: dict[str, int] = field(default_factory=dict)
    merges_running: int = 0
    too_many_parts_errors: int = 0


def _params(database: str) -> dict[str, str]:
    return {"db": database}


def sample_parts(client, database: str, t: float) -> PartsSample:
    """Read the counters and gauges once (parameterised SQL, nothing built from input)."""
    p = _params(database)
    out = PartsSample(t=round(t, 3))
    names = ", ".join(f"'{n}'" for n in COUNTER_EVENTS)  # constants, not input
    for name, value in client.query(
        f"SELECT event, value FROM system.events WHERE event IN ({names})"
    ).result_rows:
        out.events[name] = int(value)
    for table, new, merged in client.query(
        "SELECT table, countIf(event_type = 'NewPart'), countIf(event_type = 'MergeParts')"
        " FROM system.part_log WHERE database = {db:String} GROUP BY table",
        parameters=p,
    ).result_rows:
        out.new_parts[table], out.merged_parts[table] = int(new), int(merged)
    for table, parts, fullest in client.query(
        "SELECT table, sum(c), max(c) FROM (SELECT table, partition, count() AS c"
        " FROM system.parts WHERE database = {db:String} AND active GROUP BY table, partition)"
        " GROUP BY table",
        parameters=p,
    ).result_rows:
        out.active_parts[table], out.fullest_partition[table] = int(parts), int(fullest)
    out.merges_running = int(
        client.query(
            "SELECT count() FROM system.merges WHERE database = {db:String}", parameters=p
        ).result_rows[0][0]
    )
    rows = client.query("SELECT value FROM system.errors WHERE name = 'TOO_MANY_PARTS'")
    out.too_many_parts_errors = int(sum(r[0] for r in rows.result_rows))
    return out


def part_limits(client) -> dict[str, int]:
    """The server's ``parts_to_delay_insert`` and ``parts_to_throw_insert``."""
    names = ", ".join(f"'{n}'" for n in LIMIT_SETTINGS)
    rows = client.query(
        f"SELECT name, value FROM system.merge_tree_settings WHERE name IN ({names})"
    ).result_rows
    return {name: int(value) for name, value in rows}


class PartsSampler(threading.Thread):
    """Samples every ``period_s`` until stopped; a failed sample is skipped, not fatal."""

    def __init__(
        self,
        clickhouse: Callable[[], object],
        database: str,
        origin: float,
        period_s: float = 3.0,
    ) -> None:
        super().__init__(name="parts-sampler", daemon=True)
        self.clickhouse = clickhouse
        self.database = database
        self.origin = origin
        self.period_s = period_s
        self.samples: list[PartsSample] = []
        self.limits: dict[str, int] = {}
        self.errors = 0
        self._halt = threading.Event()

    def run(self) -> None:
        client = self.clickhouse()
        try:
            self.limits = part_limits(client)
        except Exception:
            self.errors += 1
        next_at = time.monotonic()
        while True:
            try:
                self.samples.append(sample_parts(client, self.database, time.time() - self.origin))
            except Exception:
                self.errors += 1
            if self._halt.is_set():
                return
            next_at += self.period_s
            self._halt.wait(max(0.0, next_at - time.monotonic()))

    def stop(self) -> None:
        """Take one last sample and stop."""
        self._halt.set()
        self.join(30)


def _rate(a: int, b: int, dt: float) -> float:
    return round((b - a) / dt, 2) if dt > 0 else 0.0


def timeline(samples: list[PartsSample]) -> list[dict]:
    """Per-interval rates and the gauges, one row per sample after the first."""
    out = []
    for prev, s in itertools.pairwise(samples):
        dt = s.t - prev.t
        tables = sorted(set(s.new_parts) | set(s.active_parts))
        out.append(
            {
                "t": s.t,
                "inserts_per_s": _rate(
                    prev.events.get("InsertQuery", 0), s.events.get("InsertQuery", 0), dt
                ),
                "new_parts_per_s": {
                    t: _rate(prev.new_parts.get(t, 0), s.new_parts.get(t, 0), dt) for t in tables
                },
                "active_parts": dict(s.active_parts),
                "fullest_partition": dict(s.fullest_partition),
                "merges_running": s.merges_running,
                "delayed_inserts": s.events.get("DelayedInserts", 0),
                "rejected_inserts": s.events.get("RejectedInserts", 0),
                "too_many_parts_errors": s.too_many_parts_errors,
            }
        )
    return out


def summarize(samples: list[PartsSample], limits: dict[str, int], t0: float, t1: float) -> dict:
    """Rates over ``t0..t1`` (the steady load), maxima over the whole run, limits, errors."""
    inside = [s for s in samples if t0 <= s.t <= t1] or samples
    rows = timeline(samples)
    summary: dict = {"limits": limits, "samples": len(samples)}
    if len(inside) >= 2:
        a, b = inside[0], inside[-1]
        dt = b.t - a.t
        summary["window_s"] = round(dt, 1)
        summary["inserts_per_s"] = _rate(
            a.events.get("InsertQuery", 0), b.events.get("InsertQuery", 0), dt
        )
        tables = sorted(set(b.new_parts))
        per_table = {t: _rate(a.new_parts.get(t, 0), b.new_parts.get(t, 0), dt) for t in tables}
        summary["new_parts_per_s"] = per_table
        summary["new_parts_per_s_total"] = round(sum(per_table.values()), 2)
        summary["merged_parts_per_s"] = {
            t: _rate(a.merged_parts.get(t, 0), b.merged_parts.get(t, 0), dt)
            for t in sorted(set(b.merged_parts))
        }
    tables = sorted({t for s in samples for t in s.active_parts})
    summary["active_parts_max"] = {
        t: max(s.active_parts.get(t, 0) for s in samples) for t in tables
    }
    summary["fullest_partition_max"] = max(
        (v for s in samples for v in s.fullest_partition.values()), default=0
    )
    summary["merges_running_max"] = max((s.merges_running for s in samples), default=0)
    if samples:
        first, last = samples[0], samples[-1]
        # The whole run, drain included: when aggregators lag (a loaded box), most inserts
        # happen after the load window. ``busy_s``: the intervals in which inserts were made.
        summary["run_inserts"] = last.events.get("InsertQuery", 0) - first.events.get(
            "InsertQuery", 0
        )
        summary["run_new_parts"] = {
            t: last.new_parts.get(t, 0) - first.new_parts.get(t, 0) for t in sorted(last.new_parts)
        }
        busy = sum(r["t"] - p["t"] for p, r in itertools.pairwise(
            [{"t": x.t, "i": x.events.get("InsertQuery", 0)} for x in samples]
        ) if r["i"] > p["i"])  # fmt: skip
        summary["busy_s"] = round(busy, 1)
        if busy > 0:
            summary["busy_inserts_per_s"] = round(summary["run_inserts"] / busy, 2)
            parts = sum(summary["run_new_parts"].values())
            summary["busy_new_parts_per_s"] = round(parts / busy, 2)
        for name in ("DelayedInserts", "RejectedInserts"):
            summary[name] = last.events.get(name, 0) - first.events.get(name, 0)
        summary["too_many_parts_errors"] = last.too_many_parts_errors - first.too_many_parts_errors
        hit = next(
            (s.t for s in samples if s.too_many_parts_errors > first.too_many_parts_errors), None
        )
        summary["first_too_many_parts_s"] = hit
    summary["timeline"] = rows
    return summary
