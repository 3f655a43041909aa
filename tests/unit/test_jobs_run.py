"""Names, lag buckets and the per-run values shape: pure functions, no services."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tally.ingest.flatten import flatten, flatten_all
from tally.ingest.jobs import Run, event_values, job_name, job_values, tenant_key
from tally.ingest.jobs.names import MAX_JOB, MAX_TENANT, callable_name, label
from tally.ingest.kinds import dist
from tally.schemas.limits import MAX_ABS_VALUE, Limits


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("billing.cron.ScheduleInvoicesJob", "billing__cron__schedule_invoices_job"),
        ("Billing::Cron::ScheduleInvoicesJob", "billing__cron__schedule_invoices_job"),
        ("commodity/resellers/ScheduleJob", "commodity__resellers__schedule_job"),
        ("HTTPClient.get", "http_client__get"),
        ("app.tasks.sync_invoice", "app__tasks__sync_invoice"),
        ("mod.outer.<locals>.inner", "mod__outer__inner"),
        ("weird name!.X", "weird_name__x"),
        ("...", "job"),
    ],
)
def test_job_names_are_sanitised_like_the_seeds(raw, expected):
    assert job_name(raw) == expected


def test_callable_names_use_module_and_qualname():
    class ScheduleInvoicesJob:
        def perform(self):
            pass

    name = callable_name(ScheduleInvoicesJob.perform)
    assert name.startswith("tests__unit__test_jobs_run__")
    assert name.endswith("schedule_invoices_job__perform")
    assert "locals" not in name


@pytest.mark.parametrize(
    ("tenant", "expected"),
    [
        (None, "system"),
        ("", "system"),
        ("acme", "acme"),
        ("Acme-Co_1", "Acme-Co_1"),
        ("acme.co", "acme_co"),
        ("acme::eu", "acme_eu"),
        (42, "42"),
    ],
)
def test_tenant_keys_are_safe_for_keys_and_paths(tenant, expected):
    assert tenant_key(tenant) == expected


@given(st.text(max_size=400))
def test_any_name_becomes_a_valid_path_segment(raw):
    for name in (job_name(raw), tenant_key(raw), label(raw)):
        assert name and "." not in name and ":" not in name
        assert len(name) <= max(MAX_JOB, MAX_TENANT)
        flatten({"jobs": {name: 1}}, Limits())  # raises if not a valid segment


def test_values_of_a_plain_success():
    run = Run("billing__sync", "acme", resources=3, duration_ms=12)
    assert job_values(run) == {
        "count": 1,
        "duration": dist(12),  # sketch + duration.count/.sum/.square in the rollups
        "resources": 3,
        "state": {"success": 1},
    }


def test_values_with_error_code_lag_attempt_and_measures():
    run = Run("calc", state="failure", error="KeyError", code="OUT OF STOCK", lag_ms=250)
    run.attempt = 3
    run.duration_ms = 7
    run.observe("price", 1_000)
    run.observe("price", 3_000)
    run.observe("count", 1)  # reserved: kept apart from the run count
    values = job_values(run)
    assert values["state"] == {"failure": 1}
    assert values["errors"] == {"KeyError": 1}
    assert values["codes"] == {"OUT_OF_STOCK": 1}
    assert values["queue_lag"] == dist(250)
    assert (values["retries"], values["attempt"]) == (1, 3)
    assert values["price"] == {"count": 2, "sum": 4_000, "square": 10_000_000}
    assert values["count"] == 1 and values["count_"] == {"count": 1, "sum": 1, "square": 1}


def test_first_attempts_are_not_retries():
    values = job_values(Run("j", attempt=1))
    assert (values["retries"], values["attempt"]) == (0, 1)


def test_huge_durations_are_valid_distribution_samples():
    run = Run("j", duration_ms=10**9, lag_ms=10**9)
    values = job_values(run)
    assert values["duration"].square == 1e18 and values["duration"].total == 1e9
    flatten_all(values, Limits())


def test_event_values_fan_out_the_same_measurement():
    values = job_values(Run("j", duration_ms=1))
    event = event_values("j", "acme", values)
    assert event == {"total": values, "jobs": {"j": values}, "tenants": {"acme": values}}
    paths, _, kinds = flatten_all(event, Limits())
    assert "jobs.j.state.success" in paths
    want = ["total.duration", "jobs.j.duration", "tenants.acme.duration"]
    assert [p for p, _ in kinds[0]] == want


@given(
    resources=st.integers(0, 10**6),
    duration=st.integers(0, 10**10),
    lag=st.none() | st.integers(0, 10**10),
    attempt=st.none() | st.integers(1, 100),
    state=st.none() | st.text(max_size=80),
    code=st.none() | st.text(max_size=80),
    tenant=st.none() | st.text(max_size=300),
)
def test_every_run_flattens_within_the_limits(
    resources, duration, lag, attempt, state, code, tenant
):
    run = Run(
        job_name("x" * 300),
        tenant,
        resources=resources,
        state=state,
        code=code,
        lag_ms=lag,
        attempt=attempt,
        duration_ms=duration,
    )
    event = event_values(run.job, tenant_key(run.tenant), job_values(run))
    paths, numbers, kinds = flatten_all(event, Limits())
    assert paths.count("total.count") == 1
    assert sum(1 for p in paths if p.startswith("total.state.")) == 1
    assert ("total.queue_lag" in dict(kinds[0])) == (lag is not None)
    assert all(abs(n) <= MAX_ABS_VALUE for n in numbers)


def test_lock_waits_are_a_distribution_and_timeouts_are_counted():
    from tally.ingest.jobs import JobTracker
    from tally.ingest.jobs.testing import RecordingTracker

    recorder = RecordingTracker()
    jobs = JobTracker(recorder, measure_resources=True)

    class LockTimeout(Exception):
        pass

    @jobs(name="sync", pass_run=True)
    def sync(run) -> None:
        with run.waiting("tenant-lock"):
            pass
        with pytest.raises(LockTimeout), run.waiting("tenant-lock", timeouts=(LockTimeout,)):
            raise LockTimeout
        with pytest.raises(TimeoutError), run.waiting("db.pool"):
            raise TimeoutError
        sum(range(200_000))  # some CPU

    sync()
    (call,) = recorder.calls
    flat, dists = call.flat, call.dists
    assert dists["total.locks.tenant-lock.wait_ms"].count == 2
    assert flat["total.locks.tenant-lock.timeouts"] == 1
    assert flat["total.locks.db_pool.timeouts"] == 1  # names become path segments
    assert dists["total.cpu_ms"].count == 1 and dists["total.cpu_ms"].vmin > 0
    assert dists["total.max_rss_growth_kb"].count == 1
    assert "tenants.system.locks.tenant-lock.wait_ms" in dists
