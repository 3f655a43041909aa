"""The cron -> schedule -> resource helpers: keys, resources counted, result states."""

from __future__ import annotations

import pytest

from tally.ingest.jobs import JobFlow, enqueue_each, enqueue_for_tenant, report_result
from tally.ingest.jobs.testing import RecordingTracker


class LockBusy(Exception):
    pass


def flow() -> tuple[JobFlow, RecordingTracker]:
    recorder = RecordingTracker()
    return JobFlow(recorder, limited=(LockBusy,)), recorder


def test_cron_counts_each_tenant_it_schedules_under_the_global_cron_key():
    jobs, recorder = flow()
    queued: list[tuple] = []

    @jobs.cron(name="billing.cron.ScheduleInvoicesJob")
    def billing_cron() -> None:
        for tenant in ("acme", "globex", "initech"):
            enqueue_for_tenant(lambda t, kind: queued.append((t, kind)), tenant, "invoices")

    billing_cron()
    [call] = recorder.calls
    assert call.keys == ("event::cron",)
    assert call.flat["jobs.billing__cron__schedule_invoices_job.resources"] == 3
    assert call.flat["tenants.system.count"] == 1
    assert queued == [("acme", "invoices"), ("globex", "invoices"), ("initech", "invoices")]


def test_schedule_counts_the_resources_it_enqueued_per_tenant():
    jobs, recorder = flow()
    queued: list[tuple] = []

    @jobs.schedule(name="billing.tenants.ScheduleInvoicesJob", tenant=lambda t: t)
    def schedule_invoices(tenant: str) -> None:
        enqueue_each(lambda *a: queued.append(a), ((tenant, i) for i in range(5)))

    schedule_invoices("acme")
    [call] = recorder.calls
    assert call.keys == ("event::schedule", "event::schedule::acme")
    assert call.flat["tenants.acme.resources"] == 5 and len(queued) == 5


def test_a_failed_enqueue_counts_only_what_was_enqueued_and_propagates():
    jobs, recorder = flow()

    def enqueue(i: int) -> None:
        if i == 2:
            raise ConnectionError("broker down")

    @jobs.schedule(tenant="acme")
    def schedule() -> None:
        enqueue_each(enqueue, ((i,) for i in range(5)))

    with pytest.raises(ConnectionError):
        schedule()
    flat = recorder.calls[0].flat
    assert flat["total.resources"] == 2
    assert flat["total.state.failure"] == 1 and flat["total.errors.ConnectionError"] == 1


def test_a_busy_tenant_lock_is_limited():
    jobs, recorder = flow()

    @jobs.schedule(tenant="acme")
    def schedule() -> None:
        raise LockBusy

    with pytest.raises(LockBusy):
        schedule()
    assert recorder.calls[0].flat["tenants.acme.state.limited"] == 1


def test_resource_jobs_report_state_and_code():
    jobs, recorder = flow()

    @jobs.resource(name="commodity.product_targets.CalculateJob", tenant=lambda t, p: t)
    def calculate(tenant: str, product: int) -> None:
        if product % 2:
            report_result("duplicate")
        else:
            report_result(code="OUT_OF_STOCK")

    calculate("reseller1", 1)
    calculate("reseller1", 2)
    duplicate, coded = (c.flat for c in recorder.calls)
    assert recorder.calls[0].keys == ("event::resource", "event::resource::reseller1")
    assert duplicate["jobs.commodity__product_targets__calculate_job.state.duplicate"] == 1
    assert coded["total.state.success"] == 1 and coded["total.codes.OUT_OF_STOCK"] == 1


def test_custom_keys_and_error_totals():
    recorder = RecordingTracker()
    jobs = JobFlow(recorder, cron_key="billing::cron", schedule_key="billing::schedule")
    with jobs.cron.run("c"):
        pass
    with jobs.schedule.run("s", "t1"):
        pass
    assert [c.keys for c in recorder.calls] == [
        ("billing::cron",),
        ("billing::schedule", "billing::schedule::t1"),
    ]
    assert jobs.errors == 0
