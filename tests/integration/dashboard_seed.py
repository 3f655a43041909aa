"""Seeds-shaped job data for the dashboard tests: hourly runs over ``days`` days for
``tenants`` tenants under event::cron, event::schedule[::t] and event::job[::t] (duration and
queue lag as distributions), and hourly queue-sampler gauges under event::queue[::rq::<q>],
inserted straight into ``rollups_input`` (as the aggregators do), deterministic (seeded
random)."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from tally.embedded.clickhouse.process import EmbeddedClickHouse
from tally.ingest.flatten import flatten
from tally.schemas.limits import Limits
from tests.integration.readside import KindRow, insert, insert_kinds

CRON_JOB = "billing__cron__schedule_invoices_job"
SCHEDULE_JOB = "billing__tenants__schedule_invoices_job"
JOBS = ("billing__sync_invoice_job", "shop__price_product_job", "mail__send_receipt_job")
ERRORS = ("ConnectionError", "TimeoutError", "ValueError")
MISSED_HOURS = (5, 29)  # hours ago in which the cron did not run
QUEUES = ("default", "mail")


class Samples(tuple):
    """A distribution's samples inside a values tree (written as a sketch row)."""


def _run(rng: random.Random, runs: int, resources: int) -> dict:
    failures = sum(rng.random() < 0.06 for _ in range(runs))
    skipped = sum(rng.random() < 0.05 for _ in range(runs - failures))
    limited = sum(rng.random() < 0.03 for _ in range(runs - failures - skipped))
    retries = rng.randint(0, failures)
    durations = [rng.randint(20, 900) for _ in range(runs)]
    lags = [rng.choice((40, 300, 2_000, 15_000)) for _ in range(runs)]
    state = {
        "success": runs - failures - skipped - limited,
        "failure": failures,
        "skipped": skipped,
        "limited": limited,
    }
    v: dict = {
        "count": runs,
        "duration": Samples(durations),
        "resources": resources,
        "state": {k: n for k, n in state.items() if n},
        "queue_lag": Samples(lags),
        "retries": retries,
    }
    if retries:
        v["state"]["retry"] = retries
    if failures:
        v["errors"] = {rng.choice(ERRORS): failures}
    return v


def _split(values: dict, prefix: str, out: list[tuple[str, Samples]]) -> dict:
    """``values`` without its ``Samples`` leaves, which go to ``out`` as (path, samples)."""
    kept: dict = {}
    for name, v in values.items():
        if isinstance(v, Samples):
            out.append((prefix + name, v))
        elif isinstance(v, dict):
            kept[name] = _split(v, f"{prefix}{name}.", out)
        else:
            kept[name] = v
    return kept


def _rows(
    keys: list[str], minute: datetime, values: dict, kinds: list[KindRow]
) -> tuple[list[str], datetime, dict]:
    dists: list[tuple[str, Samples]] = []
    sums = _split(values, "", dists)
    kinds.extend(KindRow(keys, minute, path, tuple(samples)) for path, samples in dists)
    paths, numbers = flatten(sums, Limits(max_values=10_000, max_depth=16))
    return keys, minute, dict(zip(paths, numbers, strict=True))


def _queue_gauges(rng: random.Random, hour: datetime, kinds: list[KindRow]) -> None:
    """Two samples an hour per queue (the later one is the bucket's last reading)."""
    for queue in QUEUES:
        keys = ["event::queue", f"event::queue::rq::{queue}"]
        for minute in (10, 40):
            at = hour + timedelta(minutes=minute)
            ms = int(at.timestamp() * 1000)
            depth = rng.randint(0, 40 if queue == "default" else 8)
            busy = rng.randint(0, 4)
            readings = {
                "depth": depth,
                "oldest_age_s": round(depth * rng.uniform(0.5, 3.0), 3),
                "workers.busy": busy,
                "workers.idle": 4 - busy,
                "workers.stalled": int(rng.random() < 0.1),
            }
            kinds.extend(KindRow(keys, at, p, reading=(ms, v)) for p, v in readings.items())


def seed(
    clickhouse: EmbeddedClickHouse,
    database: str = "tally",
    days: int = 2,
    tenants: int = 4,
    now: datetime | None = None,
) -> list[str]:
    """Insert the history; returns the tenant names."""
    rng = random.Random(11)
    now = (now or datetime.now(UTC)).replace(minute=0, second=0, microsecond=0)
    names = [f"t{i:02d}" for i in range(1, tenants + 1)]
    rows: list[tuple[list[str], datetime, dict]] = []
    kinds: list[KindRow] = []
    for hours_ago in range(days * 24, 0, -1):
        hour = now - timedelta(hours=hours_ago)
        if hours_ago not in MISSED_HOURS:
            v = _run(rng, 1, tenants)
            cron = {"total": v, "jobs": {CRON_JOB: v}, "tenants": {"system": v}}
            rows.append(_rows(["event::cron"], hour + timedelta(minutes=1), cron, kinds))
        for index, tenant in enumerate(names):
            weight = index + 1
            resources = 0 if index == 0 else rng.randint(0, 6 * weight)  # t01: an idle tenant
            v = _run(rng, 1, resources)
            schedule = {"total": v, "jobs": {SCHEDULE_JOB: v}, "tenants": {tenant: v}}
            keys = ["event::schedule", f"event::schedule::{tenant}"]
            rows.append(_rows(keys, hour + timedelta(minutes=2), schedule, kinds))
            job = JOBS[index % len(JOBS)]
            v = _run(rng, rng.randint(weight, 3 * weight), 0)
            v.pop("resources")
            jobs = {"total": v, "jobs": {job: v}, "tenants": {tenant: v}}
            keys = ["event::job", f"event::job::{tenant}"]
            rows.append(_rows(keys, hour + timedelta(minutes=3 + index % 50), jobs, kinds))
        _queue_gauges(rng, hour, kinds)
    for start in range(0, len(rows), 5000):
        insert(clickhouse, database, rows[start : start + 5000])
    for start in range(0, len(kinds), 20000):
        insert_kinds(clickhouse, database, kinds[start : start + 20000])
    return names
