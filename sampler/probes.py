"""One probe per framework: reads the framework's own Redis structures (sync redis-py).

- **RQ**: through RQ's API (``Queue``, ``Worker.all``): depth = jobs in the queue, oldest age
  from the first job's ``enqueued_at``, workers listening on the queue by state; stalled =
  busy on one job for longer than ``stall_after_s`` (from the job's ``started_at``).
- **Celery** (Redis broker): the queue is a list (``LPUSH``, consumed from the right): depth =
  its length, oldest = its right end; the age needs tally's ``tally_enqueued_at`` header (set
  by ``instrument_celery``). Workers are not in Redis (only ``celery inspect`` knows them);
  stalled = messages delivered but not acknowledged for longer than ``stall_after_s``
  (``unacked_index``; meaningful with ``acks_late=True``).
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
    stalled = int(redis.zcount("unacked_index", "-inf", now - stall_after_s))
    return QueueSample("celery", queue, depth, _age(now, oldest), None, None, stalled)


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
