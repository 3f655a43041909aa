"""RQ hook with traces, against a real RQ SimpleWorker on a real redis-server: parent links and
the ``enqueued`` job-log event."""

from __future__ import annotations

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
