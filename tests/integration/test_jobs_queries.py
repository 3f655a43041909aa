"""The job queries, on runs instrumented by ``tally.ingest.jobs`` and sent through the whole
pipeline: real Tracker -> Kafka -> 2 aggregators -> ClickHouse rollups.

One stack for the module. Four past hours of a billing and a commodity flow are replayed with
the decorators (a thin adapter stamps each event with the replayed hour); the duration
series is emitted with fixed durations so the trend is exact.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tally.embedded.stack import Stack, StackConfig, start_stack
from tally.ingest import ClientSettings, Tracker
from tally.ingest.jobs import (
    JobFlow,
    Run,
    current_run,
    enqueue_each,
    enqueue_for_tenant,
    report_result,
)
from tally.read.job_queries import JOB_QUERIES

from .conftest import wait_for

pytestmark = pytest.mark.integration

HOUR = 3600
GLOBAL_KEYS = ("event::cron", "event::schedule", "event::resource")
BILLING_CRON = "billing__cron__schedule_invoices_job"
COMMODITY_CRON = "commodity__cron__resellers__schedule_job"
BILLING_SCHEDULE = "billing__tenants__schedule_invoices_job"
COMMODITY_SCHEDULE = "commodity__resellers__schedule_job"
REPORTS = "reports__schedule_job"


class LockBusy(Exception):
    """The tenant's lock was held."""


@dataclass
class Replay:
    """A ``Trackable`` that stamps every event with the replayed time ``at``."""

    tracker: Tracker
    at: int = 0

    def track(
        self,
        keys: str | Iterable[str],
        values: Mapping[str, object],
        at: object = None,
        route: str | None = None,
    ) -> bool:
        return self.tracker.track(keys, values, at=self.at, route=route)


@dataclass
class Loaded:
    stack: Stack
    base: int
    runs: int

    def query(self, name: str, granularity: str = "1h", **params: object) -> list[tuple]:
        defaults = {
            "start": datetime.fromtimestamp(self.base, UTC),
            "current": datetime.fromtimestamp(self.base + 3 * HOUR, UTC),
            "end": datetime.fromtimestamp(self.base + 4 * HOUR, UTC),
        }
        client = self.stack.clickhouse_client()
        sql = JOB_QUERIES[name].sql("tally", granularity)
        return client.query(sql, parameters={**defaults, **params}).result_rows


def replay_flows(replay: Replay, base: int) -> int:
    """Four hours of the seeds' flows; returns the number of runs tracked."""
    flow = JobFlow(replay, limited=(LockBusy,))
    enqueued: list[tuple] = []
    runs = 0

    @flow.cron(name="billing.cron.ScheduleInvoicesJob")
    def billing_cron(tenants: list[str]) -> None:
        for tenant in tenants:
            enqueue_for_tenant(lambda t: enqueued.append(("schedule", t)), tenant)

    @flow.cron(name="commodity.cron.resellers.ScheduleJob")
    def commodity_cron() -> None:
        current_run().add_resources(1)

    @flow.schedule(name="billing.tenants.ScheduleInvoicesJob", tenant=lambda t, n: t)
    def billing_schedule(tenant: str, invoices: int) -> None:
        enqueue_each(lambda *a: enqueued.append(a), ((tenant, i) for i in range(invoices)))

    @flow.schedule(name="commodity.resellers.ScheduleJob", tenant=lambda t, fail: t)
    def commodity_schedule(tenant: str, fail: bool) -> None:
        current_run().add_resources(3)
        if fail:
            raise ConnectionError("source down")

    @flow.schedule(name="commodity.resellers.ScheduleJob", tenant="busy")
    def locked_schedule() -> None:
        raise LockBusy

    @flow.resource(name="billing.SyncInvoiceJob", tenant=lambda t, code: t)
    def sync_invoice(tenant: str, code: str) -> None:
        report_result(code=code)

    def call(at: int, job, *args) -> None:
        nonlocal runs
        replay.at = at
        runs += 1
        with contextlib.suppress(ConnectionError, LockBusy):  # the job's own errors propagate
            job(*args)

    for hour in range(4):
        start = base + hour * HOUR
        for quarter in range(4):
            call(start + quarter * 900, billing_cron, ["acme", "globex"])
        for quarter in range((4, 1, 0, 0)[hour]):  # the commodity cron stops firing
            call(start + quarter * 900, commodity_cron)
        call(start + 60, billing_schedule, "acme", 200 if hour == 3 else 10)  # acme surges
        call(start + 120, billing_schedule, "globex", 10 if hour < 2 else 0)  # globex idles
        call(start + 180, commodity_schedule, "system", hour >= 2)  # fails from hour 2
        call(start + 240, sync_invoice, "acme", "OK")
    call(base + 300, locked_schedule)

    @flow.resource(name="commodity.CalculateJob", tenant=lambda t, outcome: t)
    def calculate(tenant: str, outcome: str) -> None:
        if outcome == "skip":
            return current_run().skip()
        if outcome == "locked":
            raise LockBusy
        if outcome == "fail":
            raise ConnectionError("source down")
        if outcome == "duplicate":
            return report_result("duplicate", code="ALREADY_PRICED")
        report_result(code=outcome)

    outcomes = ["PRICED", "PRICED", "OUT_OF_STOCK", "skip"]
    for i, outcome in enumerate(outcomes):
        call(base + 400 + i, calculate, "r1", outcome)
    for i, outcome in enumerate(["fail", "locked", "duplicate", "PRICED"]):
        call(base + 410 + i, calculate, "r2", outcome)
    call(base + 2 * HOUR + 400, calculate, "r2", "locked")
    # fixed durations for the trend: 100 ms for three hours, then 300 ms; 1 resource per run
    jobs = flow.schedule
    for hour, duration in enumerate((100, 100, 100, 300)):
        for i in range(2):
            replay.at = base + hour * HOUR + 600 + i
            run = Run(REPORTS, "system", resources=1, duration_ms=duration)
            assert jobs.emit(run)
            runs += 1
    # queue lag, measured for real: two quick pickups and one after 30 s
    replay.at = base + 700
    for waited in (0.05, 0.05, 30):
        with jobs.run("reports.LagProbeJob", due_at=time.time() - waited) as run:
            run.add_resources(1)
        runs += 1
    assert flow.errors == 0
    return runs


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Loaded]:
    workdir: Path = tmp_path_factory.mktemp("jobs-stack")
    stack = start_stack(workdir, StackConfig(partitions=4, aggregators=2, flush_interval_s=0.5))
    try:
        settings = ClientSettings(bootstrap_servers=stack.kafka.bootstrap, strict=True)
        tracker = Tracker(settings)
        base = (int(time.time()) // HOUR - 4) * HOUR
        runs = replay_flows(Replay(tracker), base)
        assert tracker.flush(60)
        stats = tracker.stats()
        assert stats.sent_events == runs and stats.invalid == 0
        tracker.close()
        client = stack.clickhouse_client()
        keys = ", ".join(f"'{k}'" for k in GLOBAL_KEYS)
        count = (
            "SELECT sum(value) FROM tally.rollups_1h "
            f"WHERE path = 'total.count' AND key IN ({keys})"
        )
        wait_for(lambda: client.query(count).result_rows[0][0] == runs, 90, f"{runs} runs")
        yield Loaded(stack, base, runs)
    finally:
        stack.stop()


def test_cron_runs_flags_the_cron_that_stopped_and_the_one_that_never_ran(loaded):
    rows = loaded.query(
        "cron_runs", key="event::cron", expected=4, jobs=["billing__cron__missing_job"]
    )
    runs = {}
    for job, _bucket, count, expected, too_few, _too_many in rows:
        assert expected == 4
        runs.setdefault(job, []).append((int(count), too_few))
    assert runs[BILLING_CRON] == [(4, 0)] * 4
    assert runs[COMMODITY_CRON] == [(4, 0), (1, 1), (0, 1), (0, 1)]  # zero-filled
    assert runs["billing__cron__missing_job"] == [(0, 1)] * 4
    # the billing cron counted the two tenants it scheduled on each run as resources
    resources = loaded.stack.clickhouse_client().query(
        f"SELECT sum(value) FROM tally.rollups_1h WHERE key = 'event::cron' "
        f"AND path = 'jobs.{BILLING_CRON}.resources'"
    )
    assert resources.result_rows[0][0] == 4 * 4 * 2


def test_idle_runs_finds_the_tenant_whose_scheduler_runs_but_finds_nothing(loaded):
    rows = loaded.query("idle_runs", key="event::schedule", group="tenants")
    # globex: 4 buckets with runs, the last 2 without resources; "busy" was stuck behind its lock
    assert [r[:4] for r in rows] == [("globex", 4, 2, 2), ("busy", 1, 1, 1)]
    idle_since, last_busy = rows[0][4], rows[0][5]
    assert int(idle_since.replace(tzinfo=UTC).timestamp()) == loaded.base + 2 * HOUR
    assert int(last_busy.replace(tzinfo=UTC).timestamp()) == loaded.base + HOUR
    by_job = loaded.query("idle_runs", key="event::schedule", group="jobs")
    assert by_job == []  # every scheduler touched resources in its last bucket


def test_tenant_surge_finds_the_tenant_that_enqueues_twenty_times_more(loaded):
    rows = loaded.query("tenant_surge", key="event::schedule", ratio=3.0, min_resources=1.0)
    assert [r[0] for r in rows] == ["acme"]
    _, current, baseline, ratio = rows[0]
    assert (current, baseline, ratio) == (200.0, 10.0, 20.0)


def test_failure_spread_shows_failures_isolated_to_one_scheduler(loaded):
    rows = loaded.query("failure_spread", key="event::schedule", group="jobs")
    by_item = {r[0]: r[1:] for r in rows}
    runs, failures, rate, share, overall, failing = by_item[COMMODITY_SCHEDULE]
    assert (runs, failures, rate, share, failing) == (5.0, 2.0, 0.4, 1.0, 1)
    assert by_item[BILLING_SCHEDULE][1] == 0 and by_item[BILLING_SCHEDULE][3] == 0
    total_runs = sum(r[1] for r in rows)
    assert overall == round(2 / total_runs, 4)
    limited = loaded.stack.clickhouse_client().query(
        "SELECT sum(value) FROM tally.rollups_1h WHERE key = 'event::schedule::busy' "
        f"AND path = 'jobs.{COMMODITY_SCHEDULE}.state.limited'"
    )
    assert limited.result_rows[0][0] == 1  # a busy lock is limited, not a failure


def test_duration_series_and_trend_show_the_slowdown(loaded):
    series = [
        r for r in loaded.query("duration_by_bucket", key="event::schedule", group="jobs")
        if r[0] == REPORTS
    ]  # fmt: skip
    assert [(r[2], r[3], r[5]) for r in series] == [
        (2.0, 100.0, 100.0),
        (2.0, 100.0, 100.0),
        (2.0, 100.0, 100.0),
        (2.0, 300.0, 300.0),
    ]
    trend = {
        r[0]: r[1:] for r in loaded.query("duration_trend", key="event::schedule", group="jobs")
    }
    prev_runs, prev_mean, cur_runs, cur_mean, growth, prev_per_res, cur_per_res = trend[REPORTS]
    assert (prev_runs, prev_mean, cur_runs, cur_mean, growth) == (6, 100, 2, 300, 3.0)
    assert (prev_per_res, cur_per_res) == (100.0, 300.0)  # slower, not more work


def test_queue_lag_quantiles_come_from_the_lag_distribution(loaded):
    rows = {r[0]: r[1:] for r in loaded.query("queue_lag", key="event::schedule", group="jobs")}
    runs, mean, p50, p95, p99 = rows["reports__lag_probe_job"]
    assert runs == 3
    # Lags measured for real: 50 ms, 50 ms and 30 s, plus however long a busy box takes to
    # start the run (upper bounds allow 1 s of that: they only tell the runs apart).
    assert 30_100 <= round(mean * 3) <= 31_000  # (50 + 50 + 30 000 ms + a little) / 3
    assert 49 <= p50 <= 1_000  # the middle run (about 50 ms), not the 30 s one
    assert 25_000 <= p95 <= p99 <= 31_000  # interpolated towards the 30 s run (numpy's way)


def test_resource_codes_arrive_per_tenant(loaded):
    client = loaded.stack.clickhouse_client()
    rows = client.query(
        "SELECT key, path, sum(value) FROM tally.rollups_1h WHERE key LIKE 'event::resource%' "
        "AND path LIKE '%codes.OK' GROUP BY key, path ORDER BY key, path"
    ).result_rows
    assert rows == [
        ("event::resource", "jobs.billing__sync_invoice_job.codes.OK", 4.0),
        ("event::resource", "tenants.acme.codes.OK", 4.0),
        ("event::resource", "total.codes.OK", 4.0),
        ("event::resource::acme", "jobs.billing__sync_invoice_job.codes.OK", 4.0),
        ("event::resource::acme", "tenants.acme.codes.OK", 4.0),
        ("event::resource::acme", "total.codes.OK", 4.0),
    ]


CALCULATE = "commodity__calculate_job"
SYNC = "billing__sync_invoice_job"


def test_job_states_per_tenant_and_per_job(loaded):
    by_tenant = loaded.query("job_states", key="event::resource", group="tenants")
    # item, runs, success, failure, limited, skipped, retry, other, success_rate
    assert by_tenant == [
        ("acme", 4, 4, 0, 0, 0, 0, 0, 1.0),
        ("r1", 4, 3, 0, 0, 1, 0, 0, 0.75),
        ("r2", 5, 1, 1, 2, 0, 0, 1, 0.2),  # other: the job's own state "duplicate"
    ]
    by_job = loaded.query("job_states", key="event::resource", group="jobs")
    assert by_job == [
        (SYNC, 4, 4, 0, 0, 0, 0, 0, 1.0),
        (CALCULATE, 9, 4, 1, 2, 1, 0, 1, 0.4444),
    ]


def test_state_timeline_overall_and_for_one_tenant(loaded):
    overall = loaded.query("state_timeline", key="event::resource")
    # bucket, runs, success, failure, limited, skipped, retry, other, success_rate
    assert [r[1:] for r in overall] == [
        (9, 5, 1, 1, 1, 0, 1, 0.5556),
        (1, 1, 0, 0, 0, 0, 0, 1.0),
        (2, 1, 0, 1, 0, 0, 0, 0.5),
        (1, 1, 0, 0, 0, 0, 0, 1.0),
    ]
    r2 = loaded.query("state_timeline", key="event::resource::r2")
    assert [int(r[0].replace(tzinfo=UTC).timestamp()) for r in r2] == [
        loaded.base,
        loaded.base + 2 * HOUR,
    ]
    assert [r[1:] for r in r2] == [(4, 1, 1, 1, 0, 0, 1, 0.25), (1, 0, 0, 1, 0, 0, 0, 0.0)]


def test_limited_runs_per_tenant_and_bucket(loaded):
    rows = loaded.query("limited_runs", key="event::resource", group="tenants")
    limited = [(r[0], r[2], r[3], r[4]) for r in rows if r[3] > 0]
    assert limited == [("r2", 4, 1, 0.25), ("r2", 1, 1, 1.0)]
    assert sum(r[2] for r in rows) == 13  # every run, in buckets with runs


def test_result_codes_per_tenant(loaded):
    rows = loaded.query("result_codes", key="event::resource", group="tenants")
    assert rows == [
        ("acme", "OK", 4, 1.0),
        ("r1", "PRICED", 2, 0.6667),
        ("r1", "OUT_OF_STOCK", 1, 0.3333),
        ("r2", "ALREADY_PRICED", 1, 0.5),
        ("r2", "PRICED", 1, 0.5),
    ]


def test_the_general_queries_on_job_data_with_their_job_paths(loaded):
    """What docs/jobs.md says about read.rollup_queries on job data holds."""
    from tally.read.rollup_queries import QUERIES

    client = loaded.stack.clickhouse_client()
    params = {
        "start": datetime.fromtimestamp(loaded.base, UTC),
        "end": datetime.fromtimestamp(loaded.base + 4 * HOUR, UTC),
    }
    codes = client.query(
        QUERIES["breakdown"].sql("tally", "1h"),
        parameters={**params, "key": "event::resource::r1", "prefix": "total.codes.", "suffix": ""},
    ).result_rows
    assert codes == [("PRICED", 2.0), ("OUT_OF_STOCK", 1.0)]
    rate = client.query(
        QUERIES["success_rate"].sql("tally", "1h"), parameters={**params, "key": "event::resource"}
    ).result_rows
    assert rate == []  # it reads top-level success/count, which job data does not have
