"""RQ: ``worker = instrumented_rq_worker(queues, tracker, connection=redis)`` tracks every job.

The worker uses a ``Job`` subclass whose ``perform()`` is measured, so the duration is the job
function alone (not RQ's bookkeeping). Queue lag = start - ``job.enqueued_at`` (for jobs
scheduled with ``enqueue_at``/``enqueue_in`` or retried with an interval, RQ sets
``enqueued_at`` when it moves the job to the queue, so that is the due time to within the
scheduler's poll interval). Attempt = 1 + previous runs: RQ's ``number_of_retries`` (jobs
that returned ``Retry``) plus the failures kept in ``job.meta["tally_failures"]`` (RQ itself
only keeps ``retries_left`` for exception retries). A job returning ``Retry`` ends as ``retry``.

With the forking ``Worker`` each job runs in a work horse that leaves with ``os._exit``, so
the horse flushes the tracker before it exits (one broker round trip per job); prefer
``SimpleWorker`` for high volume. ``SpawnWorker`` horses start a fresh interpreter and are not
instrumented.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC
from typing import Any

from rq.job import Job, Retry
from rq.worker import BaseWorker, SimpleWorker

from tally.ingest.jobs.run import RETRY, Run
from tally.ingest.jobs.tracking import (
    ACTIVE_RUN,
    ExceptionTypes,
    HookTenant,
    JobTracker,
    Trackable,
    tracked_entry,
)

FAILURES = "tally_failures"


def rq_job_class(jobs: JobTracker, tenant: HookTenant = None, base: type[Job] = Job) -> type[Job]:
    """A ``Job`` subclass of ``base`` whose ``perform()`` is one tracked run."""

    def start(job: Job) -> Run:
        try:
            args, kwargs = tuple(job.args), dict(job.kwargs)
            name, enqueued = job.func_name, job.enqueued_at
            retries = (job.number_of_retries or 0) + int(job.meta.get(FAILURES, 0))
            entry = tracked_entry(job.func)
        except Exception as exc:  # an undeserialisable job: RQ will fail it, we still count it
            jobs.failed("rq job", exc)
            args, kwargs, name, enqueued, retries, entry = (), {}, None, None, 0, None
        if enqueued is not None and enqueued.tzinfo is None:
            enqueued = enqueued.replace(tzinfo=UTC)
        run = jobs.start(
            jobs.name(name or "job"),
            jobs.hook_tenant(tenant, name or "job", args, kwargs, entry),
            due_at=enqueued.timestamp() if enqueued else None,
            attempt=retries + 1,
        )
        run.entry = entry
        return run

    def count_failure(job: Job) -> None:
        # RQ counts exception retries only as ``retries_left``; keep the attempt in ``meta``,
        # which RQ saves when it re-enqueues or schedules the retry.
        try:
            job.meta[FAILURES] = int(job.meta.get(FAILURES, 0)) + 1
        except Exception as exc:
            jobs.failed("rq meta", exc)

    class TallyJob(base):  # type: ignore[valid-type, misc]
        def perform(self) -> Any:
            run = start(self)
            token = ACTIVE_RUN.set(run)
            try:
                result = super().perform()
            except BaseException as exc:
                ACTIVE_RUN.reset(token)
                count_failure(self)
                jobs.finish(run, exc)
                raise
            ACTIVE_RUN.reset(token)
            if isinstance(result, Retry):  # RQ's "retry me" return value
                run.state = RETRY
            jobs.finish(run)
            return result

    TallyJob.__qualname__ = TallyJob.__name__ = f"Tally{base.__name__}"
    return TallyJob


def rq_worker_class(
    jobs: JobTracker,
    tenant: HookTenant = None,
    base: type[BaseWorker] = SimpleWorker,
    flush_timeout: float = 10.0,
) -> type[BaseWorker]:
    """A worker class of ``base`` using ``rq_job_class``; forked horses flush before exit."""

    class TallyWorker(base):  # type: ignore[valid-type, misc]
        job_class = rq_job_class(jobs, tenant, base.job_class)

        def perform_job(self, job: Job, queue: Any, execution: Any) -> bool:
            try:
                return super().perform_job(job, queue, execution)
            finally:
                if getattr(self, "_is_horse", False):
                    jobs.flush(flush_timeout)

    TallyWorker.__qualname__ = TallyWorker.__name__ = f"Tally{base.__name__}"
    return TallyWorker


def instrumented_rq_worker(
    queues: str | Sequence[Any],
    tracker: Trackable,
    *,
    key: str = "event::job",
    tenant: HookTenant = None,
    limited: ExceptionTypes = (),
    skipped: ExceptionTypes = (),
    worker_class: type[BaseWorker] = SimpleWorker,
    traces: object = None,
    **worker_kwargs: Any,
) -> BaseWorker:
    """An RQ worker (``SimpleWorker`` unless told) whose jobs are tracked under ``key``.

    ``tenant`` is called with each job's arguments, or maps function names (``job.func_name``,
    e.g. ``app.tasks.calculate``) to such callables; None means tenant ``system``. The other
    keyword arguments go to the worker (``connection=...`` at least). ``traces``: a
    ``TraceRecorder`` (every run gets an execution id and a trace; see docs/traces.md).
    """
    jobs = JobTracker(tracker, key, limited=limited, skipped=skipped, traces=traces)
    worker_class = rq_worker_class(jobs, tenant, worker_class)
    return worker_class(queues, **worker_kwargs)
