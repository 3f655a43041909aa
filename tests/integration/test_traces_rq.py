"""RQ hook with traces, against real RQ workers (SimpleWorker, forking Worker) on a real
redis-server: parent links, the ``enqueued`` job-log event, and sampling across horses."""

from __future__ import annotations

import os

import pytest

from tally.embedded.redis_server import start_redis
from tally.ingest.jobs.testing import RecordingTracker
from tally.traces import SamplingPolicy, TraceRecorder, trace

from .test_traces_celery import Shipped

pytestmark = pytest.mark.integration
PREFIX = "tests__integration__test_traces_rq__"


def rq_schedule(tenant: str) -> None:
    from rq import Queue, Retry, get_current_job

    current = get_current_job()
    queue = Queue(current.origin, connection=current.connection)
    with trace("enqueue resources"):
        for n in (1, 2):
            queue.enqueue(rq_resource, tenant, n, retry=Retry(max=1))


def rq_resource(tenant: str, n: int) -> int:
    from rq import get_current_job

    with trace("calculate"):
        if n == 1 and get_current_job().retries_left == 1:  # the first of Retry(max=1)
            raise KeyError(n)
    return n


def test_a_job_enqueued_by_a_traced_rq_job_links_to_its_parent(tmp_path):
    import redis
    from rq import Queue

    from tally.ingest.jobs import instrumented_rq_worker

    server = start_redis(tmp_path / "redis")
    try:
        connection = redis.Redis.from_url(f"{server.url}/3")
        shipped = Shipped()
        recorder = TraceRecorder(shipped, SamplingPolicy(every=1))
        queue = Queue("traces", connection=connection)
        queue.enqueue(rq_schedule, "acme")
        outside = queue.enqueue(rq_resource, "beta", 3)  # enqueued by no run: no parent
        worker = instrumented_rq_worker(
            [queue], RecordingTracker(), key="event::cron", traces=recorder, connection=connection
        )
        worker.work(burst=True)
        executions = shipped.wait(5, timeout=60)
    finally:
        server.stop()
    parent = next(e for e in executions if e.job == PREFIX + "rq_schedule")
    kids = [e for e in executions if e.job == PREFIX + "rq_resource" and e.ref != outside.id]
    lone = next(e for e in executions if e.ref == outside.id)
    assert not parent.parent_id and not lone.parent_id
    # a retried job keeps its parent: the scheduler sees both attempts of the resource job
    assert {k.parent_id for k in kids} == {parent.id}
    assert sorted((k.state, k.attempt) for k in kids) == [
        ("retry", 1), ("success", 1), ("success", 2),
    ]  # fmt: skip
    assert len({k.ref for k in kids}) == 2
    enqueued = [e for e in parent.events if e.event == "enqueued"]
    assert sorted(e.ref for e in enqueued) == sorted({k.ref for k in kids})
    assert [e.job for e in enqueued] == [PREFIX + "rq_resource"] * 2
    assert enqueued[0].args == '[["acme",1],{}]'
    assert not any(e.event == "enqueued" for k in kids for e in k.events)
    assert all(k.events[0].attempt == k.attempt for k in kids)  # the job log's retry number
    started = kids[0].events[0]
    assert started.event == "started" and started.args.startswith('[["acme",')
    assert [ln.name for ln in parent.lines] == ["enqueue resources"]


class FileShipper:
    """Appends each shipped execution's id and sampling reason to a file: one line per
    execution, written by the process that shipped it."""

    def __init__(self, path) -> None:
        self.path = path

    def ship(self, execution) -> bool:
        line = f"{os.getpid()} {execution.id} {execution.sampled or '-'}\n"
        with open(self.path, "a") as out:
            out.write(line)
        return True


def rq_sampled(n: int) -> int:
    return n


def test_one_in_n_sampling_holds_under_a_forking_rq_worker(tmp_path):
    import redis
    from rq import Queue, Worker

    from tally.ingest.jobs import instrumented_rq_worker

    out = tmp_path / "shipped.txt"
    server = start_redis(tmp_path / "redis")
    try:
        connection = redis.Redis.from_url(f"{server.url}/4")
        queue = Queue("traces-fork", connection=connection)
        for n in range(200):
            queue.enqueue(rq_sampled, n)
        recorder = TraceRecorder(FileShipper(out), SamplingPolicy(every=100))
        worker = instrumented_rq_worker(
            [queue], RecordingTracker(), key="event::fork", traces=recorder,
            worker_class=Worker, connection=connection,
        )  # fmt: skip
        worker.work(burst=True, with_scheduler=False)
    finally:
        server.stop()
    rows = [line.split() for line in out.read_text().splitlines()]
    # Each job ran in a new horse, which decided sampling and handed its execution to the
    # worker (``ingest/jobs/handoff.py``); the worker's shipper wrote every line.
    assert len(rows) == 200 and len({execution_id for _, execution_id, _ in rows}) == 200
    kept = {execution_id for _, execution_id, reason in rows if reason == "sample"}
    assert len(kept) <= 15  # 1 in 100 (binomial: 2 expected), not every run of every horse
    from tally.traces.sampling import keep_one_in

    # the same decision any process makes for that execution id
    assert kept == {execution_id for _, execution_id, _ in rows if keep_one_in(execution_id, 100)}
