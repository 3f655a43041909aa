"""Seeds-shaped job data for the dashboard tests: hourly runs over ``days`` days for
``tenants`` tenants under event::cron, event::schedule[::t] and event::job[::t], inserted
straight into ``rollups_input`` (as the aggregators do), deterministic (seeded random)."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from tally.embedded.clickhouse_http import EmbeddedClickHouse
from tally.ingest.flatten import flatten
from tally.schemas.limits import Limits
from tests.integration.readside import insert

CRON_JOB = "billing__cron__schedule_invoices_job"
SCHEDULE_JOB = "billing__tenants__schedule_invoices_job"
JOBS = ("billing__sync_invoice_job", "shop__price_product_job", "mail__send_receipt_job")
ERRORS = ("ConnectionError", "TimeoutError", "ValueError")
MISSED_HOURS = (5, 29)  # hours ago in which the cron did not run


def _run(rng: random.Random, runs: int, resources: int) -> dict:
    failures = sum(rng.random() < 0.06 for _ in range(runs))
    skipped = sum(rng.random() < 0.05 for _ in range(runs - failures))
    limited = sum(rng.random() < 0.03 for _ in range(runs - failures - skipped))
    retries = rng.randint(0, failures)
    durations = [rng.randint(20, 900) for _ in range(runs)]
    lags = [rng.choice((40, 300, 2_000, 15_000)) for _ in range(runs)]
    lag_buckets = {"le_100ms": 0, "le_1s": 0, "le_10s": 0, "le_60s": 0}
    for lag in lags:
        name = "le_100ms" if lag <= 100 else "le_1s" if lag <= 1000 else "le_10s"
        name = name if lag <= 10_000 else "le_60s"
        lag_buckets[name] += 1
    state = {
        "success": runs - failures - skipped - limited,
        "failure": failures,
        "skipped": skipped,
        "limited": limited,
    }
    lag = {"count": runs, "sum": sum(lags), "square": sum(x * x for x in lags)}
    lag["buckets"] = {k: n for k, n in lag_buckets.items() if n}
    v: dict = {
        "count": runs,
        "duration": {"count": runs, "sum": sum(durations), "square": sum(d * d for d in durations)},
        "resources": resources,
        "state": {k: n for k, n in state.items() if n},
        "queue_lag": lag,
        "retries": retries,
    }
    if retries:
        v["state"]["retry"] = retries
    if failures:
        v["errors"] = {rng.choice(ERRORS): failures}
    return v


def _rows(keys: list[str], minute: datetime, values: dict) -> tuple[list[str], datetime, dict]:
    paths, numbers = flatten(values, Limits(max_values=10_000, max_depth=16))
    return keys, minute, dict(zip(paths, numbers, strict=True))


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
    for hours_ago in range(days * 24, 0, -1):
        hour = now - timedelta(hours=hours_ago)
        if hours_ago not in MISSED_HOURS:
            v = _run(rng, 1, tenants)
            cron = {"total": v, "jobs": {CRON_JOB: v}, "tenants": {"system": v}}
            rows.append(_rows(["event::cron"], hour + timedelta(minutes=1), cron))
        for index, tenant in enumerate(names):
            weight = index + 1
            resources = 0 if index == 0 else rng.randint(0, 6 * weight)  # t01: an idle tenant
            v = _run(rng, 1, resources)
            schedule = {"total": v, "jobs": {SCHEDULE_JOB: v}, "tenants": {tenant: v}}
            keys = ["event::schedule", f"event::schedule::{tenant}"]
            rows.append(_rows(keys, hour + timedelta(minutes=2), schedule))
            job = JOBS[index % len(JOBS)]
            v = _run(rng, rng.randint(weight, 3 * weight), 0)
            v.pop("resources")
            jobs = {"total": v, "jobs": {job: v}, "tenants": {tenant: v}}
            keys = ["event::job", f"event::job::{tenant}"]
            rows.append(_rows(keys, hour + timedelta(minutes=3 + index % 50), jobs))
    for start in range(0, len(rows), 5000):
        insert(clickhouse, database, rows[start : start + 5000])
    return names
