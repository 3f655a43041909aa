"""Celery hook with traces, against real Celery on a real redis-server: parent links, job log."""

from __future__ import annotations

import threading
import time

import pytest

from tally.embedded.redis_server import start_redis
from tally.ingest.jobs.testing import RecordingTracker
from tally.traces import SamplingPolicy, TraceRecorder, trace
from tally.traces.model import Execution

pytestmark = pytest.mark.integration


class Shipped:
    def __init__(self) -> None:
        self.executions: list[Execution] = []
        self.lock = threading.Lock()

    def ship(self, execution: Execution) -> bool:
        with self.lock:
            self.executions.append(execution)
        return True

    def wait(self, n: int, timeout: float) -> list[Execution]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.executions) >= n:
                    return list(self.executions)
            time.sleep(0.05)
        raise AssertionError(f"{len(self.executions)} executions, wanted {n}")


def test_a_task_enqueued_by_a_traced_task_links_to_its_parent(tmp_path):
    from celery import Celery
    from celery.contrib.testing.worker import start_worker

    from tally.ingest.jobs import instrument_celery

    redis = start_redis(tmp_path / "redis")
    app = Celery("tally_traces_test", broker=f"{redis.url}/3", set_as_current=False)
    app.conf.broker_connection_retry_on_startup = True
    app.conf.worker_hijack_root_logger = False
    shipped = Shipped()
    recorder = TraceRecorder(shipped, SamplingPolicy(every=1))
    hooks = instrument_celery(app, RecordingTracker(), key="event::cron", traces=recorder)

    @app.task(name="cron.schedule")
    def schedule(tenant: str) -> None:
        with trace("enqueue resources"):
            for n in (1, 2):
                resource.delay(tenant, n)

    @app.task(name="cron.resource", bind=True, max_retries=1)
    def resource(self, tenant: str, n: int) -> int:
        with trace("calculate"):
            if n == 2:
                raise KeyError(n)
            if n == 1 and self.request.retries == 0:
                raise self.retry(countdown=0.1)
        return n

    try:
        with start_worker(app, pool="solo", perform_ping_check=False, shutdown_timeout=10):
            schedule.delay("acme")
            executions = shipped.wait(4, timeout=60)
    finally:
        hooks.disconnect()
        redis.stop()
    parent = next(e for e in executions if e.job == "cron__schedule")
    kids = [e for e in executions if e.job == "cron__resource"]
    # a retried task keeps its parent: the scheduler sees both attempts of the resource job
    assert {k.parent_id for k in kids} == {parent.id}
    assert sorted((k.state, k.attempt) for k in kids) == [
        ("failure", 1), ("retry", 1), ("success", 2),
    ]  # fmt: skip
    retried = next(k for k in kids if k.state == "retry")
    assert [e.event for e in retried.events] == ["started", "retried"]
    assert retried.sampled == "state:retry" and not any(
        e.event == "enqueued" for e in retried.events
    )
    enqueued = [e for e in parent.events if e.event == "enqueued"]
    assert sorted(e.ref for e in enqueued) == sorted({k.ref for k in kids})
    assert [e.job for e in enqueued] == ["cron__resource", "cron__resource"]
    assert enqueued[0].args == '[["acme",1],{}]'
    started = kids[0].events[0]
    assert started.event == "started" and started.args.startswith('[["acme",')
    assert [ln.name for ln in parent.lines] == ["enqueue resources"]
