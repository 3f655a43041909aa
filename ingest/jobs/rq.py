"""RQ: ``worker = instrumented_rq_worker(queues, tracker, connection=redis)`` tracks every job.

The worker uses a ``Job`` subclass whose ``perform()`` is measured, so the duration is the job
function alone (not RQ's bookkeeping). Queue lag = start - ``job.enqueued_at`` (for jobs
scheduled with ``enqueue_at``/``enqueue_in`` or retried with an interval, RQ sets
``enqueued_at`` when it moves the job to the queue, so that is the due time to within the
scheduler's poll interval). Attempt = 1 + previous runs: RQ's ``number_of_retries`` (jobs
that returned ``Retry``) plus the failures kept in ``job.meta["tally_failures"]`` (RQ itself
only keeps ``retries_left`` for exception retries). A job returning ``Retry`` ends as ``retry``.

``instrumented_rq_worker`` builds a ``SimpleWorker`` (jobs run in the worker process) unless
told otherwise. With the forking ``Worker`` each job runs in a work horse that leaves with
``os._exit``: the horse appends its events to a file the worker created before the fork
(``handoff``), and the worker hands them to its own tracker once the horse exited, so a job
costs no broker round trip and no producer start in the horse. ``SpawnWorker`` horses start a
fresh interpreter and are not instrumented.

With traces, a job enqueued from inside a running instrumented job (``Queue.enqueue``,
``enqueue_call``, ``enqueue_at``/``enqueue_in``, ``enqueue_many``: all go through
``Queue.create_job``) gets the enqueuing run's execution id in ``job.meta["tally_parent"]``
(saved with the job; RQ has no enqueue hook, so ``Queue.create_job`` is wrapped once, and the
wrapper does nothing outside an instrumented job), and the enqueuing run's job log gets an
``enqueued`` event (function name, job id, args). The child's run reads the parent back. RQ
retries re-enqueue the same job with its meta, so every attempt links to the same parent.
"""

from __future__ import annotations

import copy
import functools
import logging
from collections.abc import Sequence
from contextvars import ContextVar
from datetime import UTC
from typing import Any

from rq.job import Job, Retry
from rq.queue import Queue
from rq.worker import BaseWorker, SimpleWorker, Worker

from tally.ingest.jobs import tracking
from tally.ingest.jobs.handoff import Handoff, HandoffWriter, replay
from tally.ingest.jobs.run import FAILURE, RETRY, Run

log = logging.getLogger("tally.ingest.jobs")
FAILURES = "tally_failures"
PARENT = "tally_parent"  # job.meta: the execution id of the run that enqueued the job (traces)

# The tracker of the instrumented job running in this context (read by the enqueue wrapper).
_ENQUEUER: ContextVar[tracking.JobTracker | None] = ContextVar("tally_rq_enqueuer", default=None)


def _stamp_parent(jobs: tracking.JobTracker, job: Job) -> None:
    """Inside a traced run: the child's parent link, and "enqueued" in this run's job log."""
    traces, run = jobs.traces, tracking.ACTIVE_RUN.get()
    if traces is None or run is None or not run.execution_id:
        return
    try:
        job.meta[PARENT] = run.execution_id
        args = [list(job.args), dict(job.kwargs)]
        traces.enqueued(run, jobs.name(job.func_name or "job"), str(job.id), args)
    except Exception as exc:
        jobs.failed("rq enqueue", exc)


def _wrap_create_job() -> None:
    """Wrap ``Queue.create_job`` (once) so jobs created inside an instrumented job are stamped."""
    original = Queue.create_job
    if getattr(original, "_tally_wrapped", False):
        return

    @functools.wraps(original)
    def create_job(self: Queue, *args: Any, **kwargs: Any) -> Job:
        job = original(self, *args, **kwargs)
        jobs = _ENQUEUER.get()
        if jobs is not None:
            _stamp_parent(jobs, job)
        return job

    create_job._tally_wrapped = True  # type: ignore[attr-defined]
    Queue.create_job = create_job  # type: ignore[method-assign]


def rq_job_class(
    jobs: tracking.JobTracker, tenant: tracking.HookTenant = None, base: type[Job] = Job
) -> type[Job]:
    """A ``Job`` subclass of ``base`` whose ``perform()`` is one tracked run.

    With traces, jobs enqueued while it runs record it as their parent (see the module doc).
    """
    if jobs.traces is not None:
        _wrap_create_job()

    def start(job: Job) -> Run:
        try:
            args, kwargs = tuple(job.args), dict(job.kwargs)
            name, enqueued = job.func_name, job.enqueued_at
            retries = (job.number_of_retries or 0) + int(job.meta.get(FAILURES, 0))
            entry = tracking.tracked_entry(job.func)
        except Exception as exc:  # an undeserialisable job: RQ will fail it, we still count it
            jobs.failed("rq job", exc)
            args, kwargs, name, enqueued, retries, entry = (), {}, None, None, 0, None
        traced = jobs.traces is not None
        parent = job.meta.get(PARENT) if traced and isinstance(job.meta, dict) else None
        if enqueued is not None and enqueued.tzinfo is None:
            enqueued = enqueued.replace(tzinfo=UTC)
        run = jobs.start(
            jobs.name(name or "job"),
            jobs.hook_tenant(tenant, name or "job", args, kwargs, entry),
            due_at=enqueued.timestamp() if enqueued else None,
            attempt=retries + 1,
            parent=parent if isinstance(parent, str) else None,
            ref=str(job.id) if traced else "",
            args=[list(args), kwargs] if traced else None,
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

    def will_retry(job: Job) -> bool:
        # RQ re-enqueues a job that raised while it has ``retries_left`` (``Retry(max=n)``)
        try:
            left = job.retries_left
            return left is not None and int(left) > 0
        except Exception as exc:
            jobs.failed("rq retry", exc)
            return False

    def retries_exhausted(job: Job, retry: Retry) -> bool:
        # a returned ``Retry`` past its ``max`` fails the job
        try:
            done = job.number_of_retries or 0
            return bool(done) and done >= int(retry.max)
        except Exception as exc:
            jobs.failed("rq retry", exc)
            return False

    class TallyJob(base):  # type: ignore[valid-type, misc]
        def perform(self) -> Any:
            run = start(self)
            token, enqueuer = tracking.ACTIVE_RUN.set(run), _ENQUEUER.set(jobs)
            try:
                result = super().perform()
            except BaseException as exc:
                _ENQUEUER.reset(enqueuer)
                tracking.ACTIVE_RUN.reset(token)
                count_failure(self)
                jobs.finish(run, exc, retrying=will_retry(self))
                raise
            _ENQUEUER.reset(enqueuer)
            tracking.ACTIVE_RUN.reset(token)
            if isinstance(result, Retry):  # RQ's "retry me" return value
                if retries_exhausted(self, result):  # RQ fails the job instead
                    run.state, run.error = FAILURE, type(result).__name__
                else:
                    run.state = RETRY
            jobs.finish(run)
            return result

    TallyJob.__qualname__ = TallyJob.__name__ = f"Tally{base.__name__}"
    return TallyJob


def rq_worker_class(
    jobs: tracking.JobTracker,
    tenant: tracking.HookTenant = None,
    base: type[BaseWorker] = SimpleWorker,
    flush_timeout: float = 10.0,
) -> type[BaseWorker]:
    """A worker class of ``base`` using ``rq_job_class``.

    With a forking ``base`` (``Worker`` and its subclasses) each horse hands its events to
    the worker process through a ``Handoff`` file and the worker tracks them after the horse
    exits: the horse never waits for the broker. A horse forked some other way (a custom
    ``main_work_horse``) flushes the tracker before it exits, as before.
    """
    forking = issubclass(base, Worker)

    class TallyWorker(base):  # type: ignore[valid-type, misc]
        job_class = rq_job_class(jobs, tenant, base.job_class)
        _tally_handoff: Handoff | None = None

        def execute_job(self, job: Job, queue: Any) -> Any:
            if not forking:
                return super().execute_job(job, queue)
            if self._tally_handoff is None:
                self._tally_handoff = Handoff()
            try:
                return super().execute_job(job, queue)
            finally:
                take_over(self._tally_handoff)

        def main_work_horse(self, job: Job, queue: Any) -> Any:
            if self._tally_handoff is not None:  # in the horse: hand events to the parent
                hand_off(jobs, self._tally_handoff.writer())
            return super().main_work_horse(job, queue)

        def perform_job(self, job: Job, queue: Any, execution: Any) -> bool:
            try:
                return super().perform_job(job, queue, execution)
            finally:
                if getattr(self, "_is_horse", False) and not isinstance(
                    jobs.tracker, HandoffWriter
                ):
                    jobs.flush(flush_timeout)

    def take_over(handoff: Handoff) -> None:
        try:
            shipper = getattr(jobs.traces, "shipper", None)
            replay(handoff.drain(), jobs.tracker, shipper)
        except Exception as exc:
            jobs.failed("rq handoff", exc)

    TallyWorker.__qualname__ = TallyWorker.__name__ = f"Tally{base.__name__}"
    return TallyWorker


def hand_off(jobs: tracking.JobTracker, writer: HandoffWriter) -> None:
    """In a horse: ``jobs`` tracks and ships through ``writer`` (this process's copy only)."""
    jobs.tracker = writer
    if jobs.traces is not None:
        jobs.traces = copy.copy(jobs.traces)
        jobs.traces.shipper = writer


def instrumented_rq_worker(
    queues: str | Sequence[Any],
    tracker: tracking.Trackable,
    *,
    key: str = "event::job",
    tenant: tracking.HookTenant = None,
    limited: tracking.ExceptionTypes = (),
    skipped: tracking.ExceptionTypes = (),
    worker_class: type[BaseWorker] = SimpleWorker,
    traces: object = None,
    **worker_kwargs: Any,
) -> BaseWorker:
    """An RQ worker whose jobs are tracked under ``key``: a ``SimpleWorker`` (every job runs in
    the worker process, no fork per job) unless ``worker_class`` says otherwise, e.g.
    ``rq.Worker`` (a forked horse per job, whose events the worker tracks; see the module doc).

    ``tenant`` is called with each job's arguments, or maps function names (``job.func_name``,
    e.g. ``app.tasks.calculate``) to such callables; None means tenant ``system``. The other
    keyword arguments go to the worker (``connection=...`` at least). ``traces``: a
    ``TraceRecorder`` (every run gets an execution id and a trace; see docs/traces.md).
    """
    jobs = tracking.JobTracker(tracker, key, limited=limited, skipped=skipped, traces=traces)
    log.info(
        "tally: RQ worker class %s (%s)",
        worker_class.__name__,
        "a forked horse per job, events handed to this process"
        if issubclass(worker_class, Worker)
        else "jobs run in this process; pass worker_class=rq.Worker to fork per job",
    )
    worker_class = rq_worker_class(jobs, tenant, worker_class)
    return worker_class(queues, **worker_kwargs)
