"""The Celery hook against real Celery, kombu's Redis transport and a real redis-server.

Runs in ``.venvs/celery`` (only the ``celery`` extra). The recording tracker stands in for
the client, so each assertion is about what the hook measured.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from types import SimpleNamespace

import pytest

from tally.ingest.jobs import JobFlow, current_run, report_result
from tally.ingest.jobs.testing import RecordingTracker

from .conftest import (
    CARD_TOKEN,
    PaymentDeclined,
    Shipped,
    assert_declined_execution,
    assert_only_framework,
    assert_retry_then_failure,
    by_job,
    charge,
)

pytestmark = pytest.mark.integration


class LockBusy(Exception):
    """A tenant lock was held: the run is ``limited``."""


def test_the_environment_has_celery_with_its_own_redis_transport_only():
    assert_only_framework("celery")
    import kombu
    import redis

    assert int(redis.__version__.split(".")[0]) >= 6  # what kombu's transport requires
    assert kombu.__version__


def celery_app(url: str, db: int):
    """A Celery app on the redis broker, configured as the quickstart says (no test transport)."""
    from celery import Celery

    app = Celery("tally_jobs_test", broker=f"{url}/{db}", set_as_current=False)
    app.conf.broker_connection_retry_on_startup = True
    app.conf.worker_hijack_root_logger = False
    return app


def test_celery_signals_measure_state_lag_and_retries(redis_server):
    from celery.contrib.testing.worker import start_worker

    from tally.ingest.jobs import instrument_celery

    app = celery_app(redis_server.url, 1)
    recorder = RecordingTracker()
    hooks = instrument_celery(
        app, recorder, key="event::celery", tenant=lambda t, *_: t, limited=(LockBusy,)
    )

    @app.task(name="billing.tasks.SyncInvoice")
    def sync_invoice(tenant: str, invoices: int) -> int:
        current_run().add_resources(invoices)
        return invoices

    @app.task(name="billing.tasks.boom")
    def boom(tenant: str) -> None:
        raise KeyError(tenant)

    @app.task(name="billing.tasks.locked", bind=True, max_retries=2)
    def locked(self, tenant: str) -> str:
        if self.request.retries == 0:
            raise self.retry(exc=LockBusy(), countdown=0.3)
        return "ok"

    try:
        sync_invoice.delay("acme", 3)  # published before the worker runs: it waits >= 0.4 s
        time.sleep(0.4)
        with start_worker(app, pool="solo", perform_ping_check=False, shutdown_timeout=10):
            boom.delay("acme")
            locked.delay("beta")
            calls = recorder.wait(4, timeout=30)
    finally:
        hooks.disconnect()

    jobs = by_job(calls)
    [ok] = jobs["billing__tasks__sync_invoice"]
    assert ok["state.success"] == 1 and ok["resources"] == 3
    assert ok["queue_lag.sum"] >= 400 and ok["queue_lag.count"] == 1
    assert ok["attempt"] == 1 and ok["retries"] == 0
    [failed] = jobs["billing__tasks__boom"]
    assert failed["state.failure"] == 1 and failed["errors.KeyError"] == 1
    first, second = jobs["billing__tasks__locked"]
    assert first["state.limited"] == 1 and "errors.LockBusy" not in first
    assert second["state.success"] == 1
    assert (second["attempt"], second["retries"]) == (2, 1)
    # the retry was due at its ETA (0.3 s after the retry), so its lag is measured from there
    assert second["queue_lag.sum"] < 300
    tenants = {c.keys[1] for c in calls}
    assert tenants == {"event::celery::acme", "event::celery::beta"}
    assert hooks.jobs.errors == 0


def test_celery_retried_attempts_are_retry_the_last_failure_with_message_and_traceback(
    redis_server,
):
    """Celery's autoretry: attempts it retries are ``retry``, the one after ``max_retries``
    is ``failure`` (issue #19 item 6); each carries the exception's message, traceback, the
    task id and the redacted arguments (item 2)."""
    from celery.contrib.testing.worker import start_worker

    from tally.ingest.jobs import instrument_celery
    from tally.traces import SamplingPolicy, TraceRecorder

    app = celery_app(redis_server.url, 7)
    recorder, shipped = RecordingTracker(), Shipped()
    traces = TraceRecorder(shipped, SamplingPolicy(every=1))
    hooks = instrument_celery(app, recorder, key="event::celery", traces=traces)

    @app.task(
        name="shop.charge",
        autoretry_for=(PaymentDeclined,),
        max_retries=2,
        retry_kwargs={"countdown": 0},
        retry_backoff=False,
    )
    def celery_charge(order: int, card_token: str) -> None:
        charge(order, card_token)

    try:
        with start_worker(app, pool="solo", perform_ping_check=False, shutdown_timeout=10):
            result = celery_charge.delay(100296, card_token=CARD_TOKEN)
            calls = recorder.wait(3, timeout=30)
            executions = shipped.wait(3, timeout=30)
    finally:
        hooks.disconnect()

    assert_retry_then_failure(by_job(calls)["shop__charge"], "PaymentDeclined")
    assert [e.state for e in executions] == ["retry", "retry", "failure"]
    for execution in executions:
        assert_declined_execution(execution, result.id)
    assert hooks.jobs.errors == 0


def test_a_decorated_task_under_the_hook_is_one_run_with_one_name(redis_server):
    """Hook + flow decorator on the same task: one event, the decorator's name, state,
    resources, code and tenant, fanned out to the flow's keys and the hook's keys."""
    from celery.contrib.testing.worker import start_worker

    from tally.ingest.jobs import instrument_celery

    app = celery_app(redis_server.url, 5)
    recorder = RecordingTracker()
    flow = JobFlow(recorder, limited=(LockBusy,))
    # the hook's tenant callable reads the first argument: right for calculate, wrong for the
    # cron, whose first argument is a batch number; the cron's decorator decides instead
    hooks = instrument_celery(app, recorder, tenant=lambda first, *_: first)

    @app.task(name="calc.tasks.cron")
    @flow.cron(name="calc.cron.CalculateJob")
    def cron(batch: int) -> None:
        for tenant in ("acme", "globex"):
            calculate.delay(tenant, batch)
            current_run().add_resources(1)

    @app.task(name="calc.tasks.calculate", bind=True, max_retries=1)
    @flow.resource(name="calc.CalculateJob", tenant=lambda self, tenant, batch: tenant)
    def calculate(self, tenant: str, batch: int) -> None:
        if tenant == "globex":
            if self.request.retries == 0:
                raise self.retry(exc=LockBusy(), countdown=0.1)  # limited, then retried
            return current_run().skip()
        report_result(code="OK")
        current_run().add_resources(3)

    try:
        with start_worker(app, pool="solo", perform_ping_check=False, shutdown_timeout=10):
            cron.delay(42)
            calls = recorder.wait(4, timeout=30)
            time.sleep(0.5)  # nothing else arrives: no second event per run
    finally:
        hooks.disconnect()

    assert len(recorder.calls) == 4
    jobs = by_job(recorder.calls)
    assert set(jobs) == {"calc__cron__calculate_job", "calc__calculate_job"}
    [cron_run] = jobs["calc__cron__calculate_job"]
    assert cron_run["resources"] == 2 and cron_run["state.success"] == 1
    cron_call = next(c for c in calls if "calc__cron__calculate_job" in c.values["jobs"])
    assert cron_call.keys == ("event::cron", "event::job", "event::job::system")  # not ::42
    acme, globex_limited, globex_skipped = jobs["calc__calculate_job"]
    assert acme["state.success"] == 1 and acme["codes.OK"] == 1 and acme["resources"] == 3
    assert globex_limited["state.limited"] == 1 and "errors.LockBusy" not in globex_limited
    assert globex_skipped["state.skipped"] == 1 and globex_skipped["attempt"] == 2
    keys = {c.keys for c in calls if "calc__calculate_job" in c.values["jobs"]}
    assert keys == {
        ("event::resource", "event::resource::acme", "event::job", "event::job::acme"),
        ("event::resource", "event::resource::globex", "event::job", "event::job::globex"),
    }
    assert hooks.jobs.errors == 0 and flow.errors == 0  # the tenant callable never misfired


def test_a_tenant_mapping_names_the_tenant_per_task(redis_server):
    from celery.contrib.testing.worker import start_worker

    from tally.ingest.jobs import instrument_celery

    app = celery_app(redis_server.url, 6)
    recorder = RecordingTracker()
    hooks = instrument_celery(
        app, recorder, tenant={"shop.tasks.order": lambda order, shop: shop, "shop.tasks.x": None}
    )

    @app.task(name="shop.tasks.order")
    def order(order: int, shop: str) -> None: ...

    @app.task(name="shop.tasks.nightly")
    def nightly(batch: int) -> None: ...

    try:
        with start_worker(app, pool="solo", perform_ping_check=False, shutdown_timeout=10):
            order.delay(7, "acme.co")
            nightly.delay(3)
            calls = recorder.wait(2, timeout=30)
    finally:
        hooks.disconnect()
    keys = sorted(c.keys for c in calls)
    assert keys == [("event::job", "event::job::acme_co"), ("event::job", "event::job::system")]
    assert hooks.jobs.errors == 0


def test_celery_due_time_is_the_later_of_publish_and_eta():
    from tally.ingest.jobs.celery import _due_at

    now = time.time()
    eta = datetime.fromtimestamp(now + 5, UTC)
    assert _due_at(SimpleNamespace(tally_enqueued_at=now, eta=None)) == now
    assert _due_at(SimpleNamespace(tally_enqueued_at=now, eta=eta.isoformat())) == eta.timestamp()
    assert _due_at(SimpleNamespace(eta="not a date")) is None
    assert _due_at(SimpleNamespace()) is None  # published without the header: no lag


def test_the_hook_is_reachable_from_the_package():
    import tally.ingest.jobs as jobs

    assert callable(jobs.instrument_celery) and "instrument_celery" in dir(jobs)
