"""The Dramatiq middleware against real Dramatiq and a real redis-server; runs in
``.venvs/dramatiq`` (the ``dramatiq`` extra)."""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest

from tally.ingest.jobs import JobFlow, current_run, report_result
from tally.ingest.jobs.testing import RecordingTracker

from .conftest import (
    CARD_TOKEN,
    Shipped,
    assert_declined_execution,
    assert_only_framework,
    assert_retry_then_failure,
    by_job,
    charge,
)

pytestmark = pytest.mark.integration


def test_the_environment_has_dramatiq_only():
    assert_only_framework("dramatiq")


def test_dramatiq_middleware_measures_lag_state_skips_and_retries(redis_server):
    import dramatiq
    from dramatiq.brokers.redis import RedisBroker

    from tally.ingest.jobs import TallyMiddleware

    broker = RedisBroker(url=f"{redis_server.url}/4")
    recorder = RecordingTracker()
    broker.add_middleware(
        TallyMiddleware(recorder, key="event::dramatiq", tenant=lambda t, *_: t, limited=())
    )
    attempts: dict[str, int] = {}

    @dramatiq.actor(broker=broker, actor_name="sync_invoice")
    def sync_invoice(tenant: str, invoices: int) -> None:
        current_run().add_resources(invoices)

    @dramatiq.actor(broker=broker, actor_name="flaky", max_retries=2, min_backoff=50)
    def flaky(tenant: str) -> None:
        attempts[tenant] = attempts.get(tenant, 0) + 1
        if attempts[tenant] == 1:
            raise TimeoutError(tenant)

    @dramatiq.actor(broker=broker, actor_name="stale", max_age=100)
    def stale(tenant: str) -> None:
        raise AssertionError("a message past its max_age must not run")

    sync_invoice.send("acme", 4)
    stale.send("acme")
    flaky.send("beta")
    time.sleep(0.3)
    worker = dramatiq.Worker(broker, worker_threads=1, worker_timeout=50)
    worker.start()
    try:
        calls = recorder.wait(4, timeout=20)
    finally:
        worker.stop()
        broker.close()

    jobs = by_job(calls)
    [ok] = jobs["sync_invoice"]
    assert ok["state.success"] == 1 and ok["resources"] == 4
    assert ok["queue_lag.sum"] >= 300 and ok["attempt"] == 1
    [skipped] = jobs["stale"]
    assert skipped["state.skipped"] == 1
    first, second = jobs["flaky"]
    assert first["state.retry"] == 1 and first["errors.TimeoutError"] == 1  # retried
    assert first["queue_lag.sum"] >= 300
    assert second["state.success"] == 1 and (second["attempt"], second["retries"]) == (2, 1)
    assert second["queue_lag.sum"] < 300  # due at its retry's eta, not at the first send


def test_dramatiq_retried_attempts_are_retry_the_last_failure_with_message_and_traceback(
    redis_server,
):
    """The Retries middleware re-enqueues a failed message twice (``max_retries=2``): those
    attempts are ``retry``, the last ``failure`` (issue #19 item 6); each carries the
    exception's message, traceback, the message id and the redacted arguments (item 2)."""
    import dramatiq
    from dramatiq.brokers.redis import RedisBroker

    from tally.ingest.jobs import TallyMiddleware
    from tally.traces import SamplingPolicy, TraceRecorder

    broker = RedisBroker(url=f"{redis_server.url}/7")
    recorder, shipped = RecordingTracker(), Shipped()
    traces = TraceRecorder(shipped, SamplingPolicy(every=1))
    broker.add_middleware(TallyMiddleware(recorder, key="event::dramatiq", traces=traces))

    @dramatiq.actor(
        broker=broker, actor_name="charge", max_retries=2, min_backoff=10, max_backoff=50
    )
    def dramatiq_charge(order: int, card_token: str) -> None:
        charge(order, card_token)

    message = dramatiq_charge.send(100296, card_token=CARD_TOKEN)
    worker = dramatiq.Worker(broker, worker_threads=1, worker_timeout=50)
    worker.start()
    try:
        calls = recorder.wait(3, timeout=30)
        executions = shipped.wait(3, timeout=30)
    finally:
        worker.stop()
        broker.close()

    assert_retry_then_failure(by_job(calls)["charge"], "PaymentDeclined")
    assert [e.state for e in executions] == ["retry", "retry", "failure"]
    for execution in executions:
        assert_declined_execution(execution, message.message_id)


def test_a_decorated_actor_under_the_middleware_is_one_run(redis_server):
    import dramatiq
    from dramatiq.brokers.redis import RedisBroker

    from tally.ingest.jobs import TallyMiddleware

    broker = RedisBroker(url=f"{redis_server.url}/5")
    recorder = RecordingTracker()
    flow = JobFlow(recorder)
    broker.add_middleware(TallyMiddleware(recorder, tenant=lambda first, *_: first))

    @dramatiq.actor(broker=broker, actor_name="calculate")
    @flow.resource(name="calc.CalculateJob", tenant=lambda tenant, n: tenant)
    def calculate(tenant: str, n: int) -> None:
        if n == 0:
            return current_run().skip()
        report_result(code="OK")
        current_run().add_resources(n)

    @dramatiq.actor(broker=broker, actor_name="cron")
    @flow.cron(name="calc.cron.CalculateJob")
    def cron(batch: int) -> None:
        current_run().add_resources(1)

    calculate.send("acme", 2)
    calculate.send("acme", 0)
    cron.send(42)
    worker = dramatiq.Worker(broker, worker_threads=1, worker_timeout=50)
    worker.start()
    try:
        calls = recorder.wait(3, timeout=20)
        time.sleep(0.3)
    finally:
        worker.stop()
        broker.close()
    assert len(recorder.calls) == 3
    jobs = by_job(calls)
    ok, skipped = jobs["calc__calculate_job"]
    assert ok["codes.OK"] == 1 and ok["resources"] == 2 and skipped["state.skipped"] == 1
    [cron_run] = jobs["calc__cron__calculate_job"]
    assert cron_run["resources"] == 1
    assert {c.keys for c in calls} == {
        ("event::resource", "event::resource::acme", "event::job", "event::job::acme"),
        ("event::cron", "event::job", "event::job::system"),
    }


def test_dramatiq_due_time_prefers_the_latest_stamp():
    from tally.ingest.jobs.dramatiq import TallyMiddleware

    recorder = RecordingTracker()
    middleware = TallyMiddleware(recorder, tenant=lambda t: t)
    now_ms = int(time.time() * 1000)
    message = SimpleNamespace(
        message_id="m1",
        actor_name="sync_invoice",
        args=("acme",),
        kwargs={},
        failed=False,
        message_timestamp=now_ms - 60_000,
        options={"retries": 1, "requeue_timestamp": now_ms - 2_000, "eta": now_ms - 1_500},
    )
    middleware.before_process_message(None, message)
    middleware.after_process_message(None, message, exception=ValueError("x"))
    flat = recorder.calls[0].flat
    assert 1_500 <= flat["total.queue_lag.sum"] < 10_000  # from the eta, not the first send
    assert flat["total.attempt"] == 2 and flat["tenants.acme.errors.ValueError"] == 1


def test_the_hook_is_reachable_from_the_package():
    import tally.ingest.jobs as jobs

    assert isinstance(jobs.TallyMiddleware, type) and "TallyMiddleware" in dir(jobs)
