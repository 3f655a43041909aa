"""Dramatiq middleware with traces, on real Dramatiq and a real redis-server: parent links."""

from __future__ import annotations

import pytest

from tally.embedded.redis_server import start_redis
from tally.ingest.jobs.testing import RecordingTracker
from tally.traces import SamplingPolicy, TraceRecorder, trace

from .test_traces_celery import Shipped

pytestmark = pytest.mark.integration


def test_an_actor_sent_by_a_traced_actor_links_to_its_parent(tmp_path):
    import dramatiq
    from dramatiq.brokers.redis import RedisBroker

    from tally.ingest.jobs import TallyMiddleware

    redis = start_redis(tmp_path / "redis")
    broker = RedisBroker(url=f"{redis.url}/5")
    shipped = Shipped()
    recorder = TraceRecorder(shipped, SamplingPolicy(every=1))
    broker.add_middleware(TallyMiddleware(RecordingTracker(), key="event::dq", traces=recorder))

    @dramatiq.actor(broker=broker, actor_name="schedule")
    def schedule(tenant: str) -> None:
        with trace("enqueue"):
            resource.send(tenant, 1)
            resource.send(tenant, 2)

    @dramatiq.actor(broker=broker, actor_name="resource", max_retries=0)
    def resource(tenant: str, n: int) -> None:
        with trace("work"):
            if n == 2:
                raise KeyError(n)

    schedule.send("acme")
    worker = dramatiq.Worker(broker, worker_threads=1, worker_timeout=50)
    worker.start()
    try:
        executions = shipped.wait(3, timeout=30)
    finally:
        worker.stop()
        broker.close()
        redis.stop()
    parent = next(e for e in executions if e.job == "schedule")
    kids = [e for e in executions if e.job == "resource"]
    assert {k.parent_id for k in kids} == {parent.id}
    assert sorted(k.state for k in kids) == ["failure", "success"]
    enqueued = [e for e in parent.events if e.event == "enqueued"]
    assert sorted(e.ref for e in enqueued) == sorted(k.ref for k in kids)
    assert sorted(e.args for e in enqueued) == ['[["acme",1],{}]', '[["acme",2],{}]']
