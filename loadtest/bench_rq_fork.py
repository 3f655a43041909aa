"""Per-job cost of RQ's forking ``Worker`` with tally, before and after the horse hand-off.

``python -m tally.loadtest.bench_rq_fork --jobs 200`` starts a throwaway redis-server and
Kafka broker, then runs the same jobs through three instrumented workers in one run:

- ``fork+flush``: the horse tracks with the inherited ``Tracker`` and flushes before
  ``os._exit`` (the behaviour before the hand-off: a producer start and an acknowledged
  produce on every job's time);
- ``fork+handoff``: the horse appends its event to the hand-off file, the worker tracks it;
- ``simple``: ``SimpleWorker`` (no fork), for reference.

Prints ms per job for each and the ratio fork+flush / fork+handoff. Needs the ``rq`` extra.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import tempfile
import time
from pathlib import Path

import redis
from rq import Queue, SimpleWorker, Worker

from tally.embedded.kafka_broker import start_kafka
from tally.embedded.redis_server import start_redis
from tally.ingest import ClientSettings, Tracker
from tally.ingest.jobs import JobTracker, current_run
from tally.ingest.jobs.rq import rq_worker_class
from tally.kafka.admin import create_topic


def bench_job(n: int) -> int:
    """A job that does almost nothing, so the instrumentation is what is measured."""
    current_run().add_resources(n)
    return n


def run(mode: str, jobs: int, connection: redis.Redis, bootstrap: str, topic: str) -> float:
    """Seconds per job for one mode; every event is acknowledged before returning."""
    queue = Queue(f"bench-{mode}", connection=connection)
    for n in range(jobs):
        queue.enqueue("tally.loadtest.bench_rq_fork.bench_job", n)
    settings = ClientSettings(bootstrap_servers=bootstrap, topic=topic, source=f"bench-{mode}")
    tracker = Tracker(settings)
    tracker.track("bench::warmup", {"count": 1})  # the worker's producer is up before timing
    assert tracker.flush(60)
    tracked = JobTracker(tracker, "event::bench")
    base = SimpleWorker if mode == "simple" else Worker
    cls = rq_worker_class(tracked, base=base)
    if mode == "fork+flush":

        class FlushingHorse(cls):  # type: ignore[valid-type, misc]
            def main_work_horse(self, job: object, queue: object) -> object:
                return base.main_work_horse(self, job, queue)  # no hand-off: flush in the horse

        cls = FlushingHorse
    worker = cls([queue], connection=connection)
    started = time.perf_counter()
    worker.work(burst=True, with_scheduler=False)
    assert tracker.flush(60)
    elapsed = time.perf_counter() - started
    if mode != "fork+flush":  # the horses' own trackers are gone: only the worker's count
        assert tracker.stats().sent_events == jobs + 1, tracker.stats()
    tracker.close()
    return elapsed / jobs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=200)
    args = parser.parse_args()
    logging.getLogger("rq").setLevel(logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        server = start_redis(work / "redis")
        kafka = start_kafka(work / "kafka")
        try:
            asyncio.run(create_topic(kafka.bootstrap, "tally.bench", 1))
            connection = redis.Redis.from_url(f"{server.url}/0")
            per_job = {
                mode: run(mode, args.jobs, connection, kafka.bootstrap, "tally.bench")
                for mode in ("fork+flush", "fork+handoff", "simple")
            }
        finally:
            kafka.stop()
            server.stop()
    for mode, seconds in per_job.items():
        print(f"{mode:13s} {seconds * 1000:8.2f} ms/job")
    ratio = per_job["fork+flush"] / per_job["fork+handoff"]
    print(f"fork+flush / fork+handoff = {ratio:.1f}x ({args.jobs} jobs each, same run)")


if __name__ == "__main__":
    main()
