"""The RQ hook against real RQ and a real redis-server; runs in ``.venvs/rq`` (the ``rq`` extra)."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

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
PREFIX = "tests__frameworks__test_rq__"


class LockBusy(Exception):
    """A tenant lock was held: the run is ``limited``."""


def test_the_environment_has_rq_only():
    assert_only_framework("rq")


def rq_invoice(tenant: str, invoices: int) -> int:
    current_run().add_resources(invoices)
    return invoices


def rq_flaky(tenant: str) -> str:
    from rq import get_current_job

    if get_current_job().retries_left == 2:  # the first of Retry(max=2)
        raise LockBusy(tenant)
    return "ok"


def rq_again(tenant: str):
    from rq import Retry, get_current_job

    if not get_current_job().number_of_retries:
        return Retry(max=1)  # RQ 2+: a job may ask to be retried by returning Retry
    return "ok"


def rq_boom(tenant: str) -> None:
    raise ZeroDivisionError(tenant)


def test_rq_simple_worker_measures_lag_state_and_retries(redis_server):
    import redis
    from rq import Queue, Retry

    from tally.ingest.jobs import instrumented_rq_worker

    connection = redis.Redis.from_url(f"{redis_server.url}/2")
    queue = Queue("tally-simple", connection=connection)
    queue.enqueue(rq_invoice, "acme", 5)
    queue.enqueue(rq_boom, "acme")
    queue.enqueue(rq_flaky, "beta", retry=Retry(max=2))
    queue.enqueue(rq_again, "beta")
    time.sleep(0.3)
    recorder = RecordingTracker()
    worker = instrumented_rq_worker(
        [queue],
        recorder,
        key="event::rq",
        tenant=lambda tenant, *_: tenant,
        limited=(LockBusy,),
        connection=connection,
    )
    worker.work(burst=True, with_scheduler=False)
    calls = recorder.wait(6, timeout=10)

    jobs = by_job(calls)
    asked, retried = jobs[PREFIX + "rq_again"]
    assert asked["state.retry"] == 1 and "errors.Retry" not in asked
    assert retried["state.success"] == 1 and retried["attempt"] == 2
    [ok] = jobs[PREFIX + "rq_invoice"]
    assert ok["state.success"] == 1 and ok["resources"] == 5
    assert ok["queue_lag.sum"] >= 300 and ok["attempt"] == 1
    [failed] = jobs[PREFIX + "rq_boom"]
    assert failed["state.failure"] == 1 and failed["errors.ZeroDivisionError"] == 1
    first, second = jobs[PREFIX + "rq_flaky"]
    assert first["state.limited"] == 1
    assert second["state.success"] == 1 and (second["attempt"], second["retries"]) == (2, 1)
    assert {c.keys[1] for c in calls} == {"event::rq::acme", "event::rq::beta"}


def rq_charge(order: int, card_token: str) -> None:
    charge(order, card_token)


def test_rq_retried_attempts_are_retry_the_last_failure_with_message_and_traceback(redis_server):
    """RQ re-runs a job that raised while it has ``retries_left``: those attempts are
    ``retry``, not ``failure`` (issue #19 item 6); every one carries the exception's message,
    traceback, RQ's job id and the redacted arguments (item 2)."""
    import redis
    from rq import Queue, Retry

    from tally.ingest.jobs import instrumented_rq_worker
    from tally.traces import SamplingPolicy, TraceRecorder

    connection = redis.Redis.from_url(f"{redis_server.url}/6")
    queue = Queue("tally-retry", connection=connection)
    job = queue.enqueue(rq_charge, 100296, card_token=CARD_TOKEN, retry=Retry(max=2))
    recorder, shipped = RecordingTracker(), Shipped()
    worker = instrumented_rq_worker(
        [queue],
        recorder,
        key="event::rq",
        traces=TraceRecorder(shipped, SamplingPolicy(every=1)),
        connection=connection,
    )
    worker.work(burst=True, with_scheduler=False)

    assert_retry_then_failure(
        by_job(recorder.wait(3, timeout=30))[PREFIX + "rq_charge"], "PaymentDeclined"
    )
    executions = shipped.wait(3, timeout=30)
    assert [e.state for e in executions] == ["retry", "retry", "failure"]
    for execution in executions:
        assert_declined_execution(execution, job.id)


RECORDER = RecordingTracker()
FLOW = JobFlow(RECORDER, limited=(LockBusy,))


@FLOW.cron(name="calc.cron.CalculateJob")
def rq_cron(batch: int) -> None:
    current_run().add_resources(2)


@FLOW.resource(name="calc.CalculateJob", tenant=lambda tenant, n: tenant)
def rq_calculate(tenant: str, n: int) -> None:
    if n == 0:
        return current_run().skip()
    if n < 0:
        raise LockBusy(tenant)
    report_result(code="OK")
    current_run().add_resources(n)


def test_a_decorated_job_under_the_hook_is_one_run(redis_server):
    import redis
    from rq import Queue

    from tally.ingest.jobs import instrumented_rq_worker

    connection = redis.Redis.from_url(f"{redis_server.url}/5")
    queue = Queue("tally-flow", connection=connection)
    queue.enqueue(rq_cron, 42)
    queue.enqueue(rq_calculate, "acme", 4)
    queue.enqueue(rq_calculate, "acme", 0)
    queue.enqueue(rq_calculate, "globex", -1)
    worker = instrumented_rq_worker(
        [queue], RECORDER, tenant=lambda first, *_: first, connection=connection
    )
    worker.work(burst=True, with_scheduler=False)

    calls = RECORDER.wait(4, timeout=10)
    assert len(calls) == 4
    jobs = by_job(calls)
    [cron] = jobs["calc__cron__calculate_job"]
    assert cron["resources"] == 2
    assert calls[0].keys == ("event::cron", "event::job", "event::job::system")
    ok, skipped, limited = jobs["calc__calculate_job"]
    assert ok["state.success"] == 1 and ok["codes.OK"] == 1 and ok["resources"] == 4
    assert skipped["state.skipped"] == 1 and "state.success" not in skipped
    assert limited["state.limited"] == 1  # the decorator's limited type, seen by the hook
    assert calls[1].keys == (
        "event::resource",
        "event::resource::acme",
        "event::job",
        "event::job::acme",
    )
    assert FLOW.errors == 0 and worker.job_class  # the hook's tenant was never misapplied


class FileTracker:
    """Appends each event as a JSON line: survives the forked work horse's ``os._exit``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def track(self, keys, values, at=None, route=None) -> bool:
        # distributions (duration, queue lag) are ``Dist`` objects: written as their counters
        line = json.dumps(
            {"pid": os.getpid(), "keys": list(keys), "values": values},
            default=lambda d: {"count": d.count, "sum": d.total, "square": d.square},
        )
        with self._lock, self.path.open("a") as fh:
            fh.write(line + "\n")
        return True

    def flush(self, timeout: float = 0.0) -> bool:
        with self._lock, self.path.open("a") as fh:
            fh.write(json.dumps({"pid": os.getpid(), "flushed": True}) + "\n")
        return True


def test_rq_forking_worker_hands_horse_events_to_the_worker_without_a_flush(redis_server, tmp_path):
    """Issue #19 item 12: with RQ's forking ``Worker`` the horse does not flush (no broker
    round trip on the job's time); the worker process tracks the horse's events and ships
    its traces after the horse exits, so nothing is lost at ``os._exit``."""
    import redis
    from rq import Queue, Worker

    from tally.ingest.jobs import instrumented_rq_worker
    from tally.traces import SamplingPolicy, TraceRecorder

    connection = redis.Redis.from_url(f"{redis_server.url}/2")
    queue = Queue("tally-fork", connection=connection)
    first = queue.enqueue(rq_invoice, "acme", 2)
    queue.enqueue(rq_boom, "acme")
    out, shipped = tmp_path / "events.jsonl", Shipped()
    worker = instrumented_rq_worker(
        [queue],
        FileTracker(out),
        key="event::rq",
        worker_class=Worker,
        traces=TraceRecorder(shipped, SamplingPolicy(every=1)),
        connection=connection,
    )
    worker.work(burst=True, with_scheduler=False)

    lines = [json.loads(line) for line in out.read_text().splitlines()]
    events = [line for line in lines if "keys" in line]
    assert [e["pid"] for e in events] == [os.getpid()] * 2  # tracked by the worker process
    assert not [line for line in lines if line.get("flushed")]  # no horse waited on a flush
    assert events[0]["values"]["total"]["resources"] == 2
    assert events[1]["values"]["total"]["state"] == {"failure": 1}
    ok, failed = shipped.wait(2, timeout=10)  # the horses' traces reached this process
    assert (ok.ref, ok.state) == (first.id, "success")
    assert failed.state == "failure" and "ZeroDivisionError: acme" in failed.traceback


def test_the_hook_is_reachable_from_the_package():
    import tally.ingest.jobs as jobs

    assert callable(jobs.instrumented_rq_worker) and "instrumented_rq_worker" in dir(jobs)
