"""One probe per framework: reads the framework's own Redis structures (sync redis-py).

- **RQ**: through RQ's API (``Queue``, ``Worker.all``): depth = jobs in the queue, oldest age
  from the first job's ``enqueued_at``, workers listening on the queue by state; stalled =
  busy on one job for longer than ``stall_after_s`` (from the job's ``started_at``).
- **Celery** (Redis broker): the queue is a list (``LPUSH``, consumed from the right): depth =
  its length, oldest = its right end; the age needs tally's ``tally_enqueued_at`` header (set
  by ``instrument_celery``). Workers are not in Redis: they are asked with Celery's own
  broadcast (``inspect().active_queues()`` and ``active()``, 1 s timeout, needs the ``celery``
  package): busy = workers consuming the queue that run a task from it, idle = the others,
  stalled = workers running a task from the queue started more than ``stall_after_s`` ago.
- **Dramatiq** (Redis broker): ids in the list ``dramatiq:<queue>``, messages in the hash
  ``dramatiq:<queue>.msgs`` (``message_timestamp``); busy workers = live workers
  (``__heartbeats__``) holding messages of the queue in their ``__acks__`` sets, idle = the
  other live workers. Start times are not kept, so stalled is unknown.
- **arq**: the sorted set ``arq:queue`` (score = due time, ms) holds waiting and running jobs;
  running ones have an ``arq:in-progress:<id>`` key. depth = due jobs not in progress, oldest
  age from the smallest due score, busy = jobs in progress.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC

from redis import Redis

from tally.sampler.sample import QueueSample

Probe = Callable[[Redis, str, float], QueueSample]


def _age(now: float, since: float | None) -> float | None:
    return None if since is None else max(0.0, now - since)


def probe_rq(redis: Redis, queue: str, stall_after_s: float) -> QueueSample:
    """An RQ queue (needs the ``rq`` package)."""
    from rq import Queue, Worker

    now = time.time()
    q = Queue(queue, connection=redis)
    depth = q.count
    oldest = None
    first = q.get_job_ids(0, 1)
    if first:
        job = q.fetch_job(first[0])
        if job is not None and job.enqueued_at is not None:
            oldest = job.enqueued_at.replace(tzinfo=UTC).timestamp()
    busy = idle = stalled = 0
    for worker in Worker.all(queue=q):
        if worker.get_state() == "busy":
            busy += 1
            job = worker.get_current_job()
            started = job.started_at if job is not None else None
            if started is not None and now - started.replace(tzinfo=UTC).timestamp() > (
                stall_after_s
            ):
                stalled += 1
        else:
            idle += 1
    return QueueSample("rq", queue, depth, _age(now, oldest), busy, idle, stalled)


def probe_celery(redis: Redis, queue: str, stall_after_s: float) -> QueueSample:
    """A Celery queue on the Redis transport (kombu)."""
    now = time.time()
    depth = int(redis.llen(queue))
    oldest = None
    raw = redis.lindex(queue, -1) if depth else None
    if raw:
        try:
            enqueued = json.loads(raw).get("headers", {}).get("tally_enqueued_at")
            oldest = float(enqueued) if isinstance(enqueued, int | float) else None
        except (ValueError, AttributeError):
            oldest = None
    busy, idle, stalled = _celery_workers(redis, queue, now - stall_after_s)
    return QueueSample("celery", queue, depth, _age(now, oldest), busy, idle, stalled)


def _celery_workers(redis: Redis, queue: str, stalled_before: float) -> tuple[int, int, int]:
    """(busy, idle, stalled) workers of ``queue`` from Celery's inspect broadcast."""
    from celery import Celery

    kw = redis.connection_pool.connection_kwargs
    auth = f":{kw['password']}@" if kw.get("password") else ""
    url = f"redis://{auth}{kw.get('host', '127.0.0.1')}:{kw.get('port', 6379)}/{kw.get('db', 0)}"
    app = Celery("tally-sampler", broker=url, set_as_current=False)
    try:
        inspect = app.control.inspect(timeout=1.0)
        consuming = {
            worker
            for worker, queues in (inspect.active_queues() or {}).items()
            if any(q.get("name") == queue for q in queues or ())
        }
        busy = stalled = 0
        for worker, tasks in (inspect.active() or {}).items():
            mine = [
                t for t in tasks or () if (t.get("delivery_info") or {}).get("routing_key") == queue
            ]
            if worker in consuming and mine:
                busy += 1
                if any((t.get("time_start") or float("inf")) < stalled_before for t in mine):
                    stalled += 1
        return busy, len(consuming) - busy, stalled
    finally:
        app.close()


def probe_dramatiq(
    redis: Redis, queue: str, stall_after_s: float, namespace: str = "dramatiq"
) -> QueueSample:
    """A Dramatiq queue on its Redis broker."""
    now = time.time()
    key = f"{namespace}:{queue}"
    depth = int(redis.llen(key))
    oldest = None
    first = redis.lindex(key, 0) if depth else None
    if first:
        raw = redis.hget(f"{key}.msgs", first)
        try:
            stamp = json.loads(raw)["message_timestamp"] if raw else None
            oldest = stamp / 1000 if isinstance(stamp, int | float) else None
        except (ValueError, KeyError, TypeError):
            oldest = None
    live = [
        w.decode() if isinstance(w, bytes) else w
        for w in redis.zrangebyscore(f"{namespace}:__heartbeats__", (now - 60) * 1000, "+inf")
    ]
    busy = sum(1 for w in live if redis.scard(f"{namespace}:__acks__.{w}.{queue}") > 0)
    return QueueSample("dramatiq", queue, depth, _age(now, oldest), busy, len(live) - busy, None)


def probe_arq(redis: Redis, queue: str, stall_after_s: float) -> QueueSample:
    """An arq queue (``queue`` is its Redis key, ``arq:queue`` by default)."""
    now = time.time()
    due = redis.zrangebyscore(queue, "-inf", now * 1000, withscores=True)
    waiting: list[float] = []
    busy = 0
    for job_id, score in due:
        name = job_id.decode() if isinstance(job_id, bytes) else job_id
        if redis.exists(f"arq:in-progress:{name}"):
            busy += 1
        else:
            waiting.append(score / 1000)
    oldest = min(waiting) if waiting else None
    return QueueSample("arq", queue, len(waiting), _age(now, oldest), busy, None, None)


PROBES: dict[str, Probe] = {
    "rq": probe_rq,
    "celery": probe_celery,
    "dramatiq": probe_dramatiq,
    "arq": probe_arq,
}
