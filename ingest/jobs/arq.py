"""arq: ``WorkerSettings = instrument_arq(WorkerSettings, tracker)`` tracks every function.

Each function and cron job's coroutine is wrapped, so the run is exactly the coroutine.
Queue lag = start - the later of ``ctx["enqueue_time"]`` and ``ctx["score"]`` (the time the
job was due: its ``_defer_until``/``_defer_by`` or its cron time). Attempt =
``ctx["job_try"]``. ``arq.Retry`` ends a run as ``retry`` while arq will run it again (try <
``max_tries``, the function's or the worker's), else as ``failure``; any other exception is a
``failure`` (arq does not retry it); a job timeout or abort ends it as ``failure`` with
``errors.CancelledError`` (arq cancels the coroutine).

With traces, a job enqueued from inside a running instrumented job (``ArqRedis.enqueue_job``,
e.g. ``ctx["redis"].enqueue_job(...)``; wrapped once, a no-op outside an instrumented job) gets
its parent link, and the enqueuing run's job log an ``enqueued`` event (function name, job id,
args). arq's job message has no headers or meta, and adding a keyword argument would break a
worker that does not strip it, so the parent's execution id goes into a side key
``tally:parent:<job_id>`` written before the job (``SET NX``, expiring with the job's
expiry plus a day); the child reads it from ``ctx["redis"]`` with ``ctx["job_id"]``. The job's
arguments and the user's function signature are untouched; arq retries keep the job id, so
every attempt links to the same parent. One extra Redis round trip per enqueue and per run,
only with traces.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import time
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from datetime import datetime, timedelta
from typing import Any
from uuid import uuid4

from arq.connections import ArqRedis
from arq.cron import CronJob
from arq.worker import Retry, func

from tally.ingest.jobs import tracking

Coroutine = Callable[..., Awaitable[Any]]
PARENT = "tally:parent:"  # + job id: the execution id of the run that enqueued it (traces)
DAY_MS = 86_400_000
DEFAULT_MAX_TRIES = 5  # arq's ``Worker(max_tries=5)``

# The tracker of the instrumented job running in this context (read by the enqueue wrapper).
_ENQUEUER: ContextVar[tracking.JobTracker | None] = ContextVar("tally_arq_enqueuer", default=None)


def _ms(value: object) -> int:
    """A duration (seconds or timedelta) or a datetime (from now) in milliseconds; 0 if none."""
    if isinstance(value, timedelta):
        return max(0, round(value.total_seconds() * 1000))
    if isinstance(value, datetime):
        return max(0, round((value.timestamp() - time.time()) * 1000))
    if isinstance(value, int | float):
        return max(0, round(value * 1000))
    return 0


def _wrap_enqueue_job() -> None:
    """Wrap ``ArqRedis.enqueue_job`` (once) so jobs enqueued inside a traced run are linked."""
    original = ArqRedis.enqueue_job
    if getattr(original, "_tally_wrapped", False):
        return

    @functools.wraps(original)
    async def enqueue_job(self: ArqRedis, function: str, *args: Any, **kwargs: Any) -> Any:
        jobs, run = _ENQUEUER.get(), tracking.ACTIVE_RUN.get()
        if jobs is None or jobs.traces is None or run is None or not run.execution_id:
            return await original(self, function, *args, **kwargs)
        job_id = kwargs.get("_job_id") or uuid4().hex  # what arq would choose
        kwargs["_job_id"] = job_id
        try:
            ttl = sum(_ms(kwargs.get(k)) for k in ("_expires", "_defer_by", "_defer_until"))
            await self.set(PARENT + job_id, run.execution_id, px=ttl + DAY_MS, nx=True)
        except Exception as exc:  # no link, but the job is still enqueued
            jobs.failed("arq enqueue", exc)
        job = await original(self, function, *args, **kwargs)
        if job is not None:
            try:
                user_kwargs = {k: v for k, v in kwargs.items() if not k.startswith("_")}
                jobs.traces.enqueued(run, jobs.name(function), job_id, [list(args), user_kwargs])
            except Exception as exc:
                jobs.failed("arq enqueue", exc)
        return job

    enqueue_job._tally_wrapped = True  # type: ignore[attr-defined]
    ArqRedis.enqueue_job = enqueue_job  # type: ignore[method-assign]


async def _parent(jobs: tracking.JobTracker, ctx: object) -> str | None:
    """The execution id stored for this job by the run that enqueued it, if any."""
    if jobs.traces is None or not isinstance(ctx, dict):
        return None
    redis, job_id = ctx.get("redis"), ctx.get("job_id")
    if redis is None or not isinstance(job_id, str) or job_id.startswith("cron:"):
        return None
    try:
        value = await redis.get(PARENT + job_id)
    except Exception as exc:
        jobs.failed("arq parent", exc)
        return None
    return value.decode() if isinstance(value, bytes) else value if isinstance(value, str) else None


def instrument_arq(
    settings: Any,
    tracker: tracking.Trackable,
    *,
    key: str = "event::job",
    tenant: tracking.HookTenant = None,
    limited: tracking.ExceptionTypes = (),
    skipped: tracking.ExceptionTypes = (),
    traces: object = None,
) -> Any:
    """A copy of ``settings`` (class or dict) with every function and cron job tracked.

    ``tenant`` is called with each job's arguments (without ``ctx``), or maps function names
    to such callables; None means tenant ``system``. ``traces``: a ``TraceRecorder`` (every
    run gets an execution id and a trace; see docs/traces.md).
    """
    jobs = tracking.JobTracker(
        tracker, key, limited=limited, skipped=skipped, retry=(Retry,), traces=traces
    )
    if traces is not None:
        _wrap_enqueue_job()
    source = settings if isinstance(settings, dict) else vars(settings)
    worker_tries = _setting(settings, "max_tries", DEFAULT_MAX_TRIES)
    if not _setting(settings, "retry_jobs", True):
        worker_tries = 1  # arq retries nothing: every exception is the final failure
    functions = [
        _wrap_function(jobs, func(f), tenant, worker_tries) for f in source.get("functions") or ()
    ]
    cron_jobs = [
        dataclasses.replace(
            c,
            coroutine=wrap_coroutine(
                jobs, c.coroutine, c.name, tenant, _tries(c.max_tries, worker_tries)
            ),
        )
        for c in source.get("cron_jobs") or ()
        if isinstance(c, CronJob)
    ]
    overrides = {"functions": functions, "cron_jobs": cron_jobs or source.get("cron_jobs")}
    if isinstance(settings, dict):
        return {**settings, **overrides}
    # arq reads only the class's own __dict__, so copy the attributes onto the new class.
    namespace = {k: v for k, v in vars(settings).items() if not k.startswith("__")}
    return type(settings.__name__, (settings,), {**namespace, **overrides})


def wrap_coroutine(
    jobs: tracking.JobTracker,
    coroutine: Coroutine,
    name: str,
    tenant: tracking.HookTenant = None,
    max_tries: int | None = None,
) -> Coroutine:
    """``coroutine(ctx, *args, **kwargs)`` measured as one run of job ``name``.

    With ``max_tries`` (the function's, else the worker's): ``arq.Retry`` raised on try
    ``max_tries`` is the final failure (arq will not run the job again), any other exception
    is a failure; without it an ``arq.Retry`` is always ``retry``.
    """
    job = jobs.name(name)
    entry = tracking.tracked_entry(coroutine)

    @functools.wraps(coroutine)
    async def tracked(ctx: dict, *args: Any, **kwargs: Any) -> Any:
        traced = jobs.traces is not None and isinstance(ctx, dict)
        run = jobs.start(
            job,
            jobs.hook_tenant(tenant, name, args, kwargs, entry),
            due_at=_due_at(ctx),
            attempt=ctx.get("job_try") if isinstance(ctx, dict) else None,
            parent=await _parent(jobs, ctx) if traced else None,
            ref=str(ctx.get("job_id") or "") if traced else "",
            args=[list(args), dict(kwargs)] if traced else None,
        )
        run.entry = entry
        token, enqueuer = tracking.ACTIVE_RUN.set(run), _ENQUEUER.set(jobs)
        try:
            result = await coroutine(ctx, *args, **kwargs)
        except BaseException as exc:
            _ENQUEUER.reset(enqueuer)
            tracking.ACTIVE_RUN.reset(token)
            jobs.finish(run, exc, retrying=_retrying(exc, run.attempt, max_tries))
            raise
        _ENQUEUER.reset(enqueuer)
        tracking.ACTIVE_RUN.reset(token)
        jobs.finish(run)
        return result

    return tracked


def _retrying(exc: BaseException, job_try: int | None, max_tries: int | None) -> bool | None:
    """Whether arq runs the job again after ``exc`` (None: unknown, the type decides).

    arq re-runs a job that raised ``Retry`` while ``job_try < max_tries``; a cancelled
    coroutine (timeout, abort or worker shutdown) is left to the exception types.
    """
    if max_tries is None or isinstance(exc, asyncio.CancelledError):
        return None
    if not isinstance(exc, Retry):
        return False
    return (job_try or 1) < max_tries


def _setting(settings: Any, name: str, default: Any) -> Any:
    """A worker setting from a settings class or dict."""
    if isinstance(settings, dict):
        return settings.get(name, default)
    return getattr(settings, name, default)


def _tries(own: int | None, worker: int) -> int:
    """A function's ``max_tries``, else the worker's (arq's rule)."""
    return worker if own is None else int(own)


def _wrap_function(
    jobs: tracking.JobTracker, function: Any, tenant: tracking.HookTenant, worker_tries: int
) -> Any:
    tries = _tries(function.max_tries, worker_tries)
    wrapped = wrap_coroutine(jobs, function.coroutine, function.name, tenant, tries)
    return dataclasses.replace(function, coroutine=wrapped)


def _due_at(ctx: object) -> float | None:
    """The later of the enqueue time and the score (due time in ms), in unix seconds."""
    if not isinstance(ctx, dict):
        return None
    due = None
    enqueued = ctx.get("enqueue_time")
    if isinstance(enqueued, datetime) and enqueued.tzinfo is not None:
        due = enqueued.timestamp()
    score = ctx.get("score")
    if isinstance(score, int | float) and score > 0:
        due = max(due or 0.0, score / 1000)
    return due
