"""arq: ``WorkerSettings = instrument_arq(WorkerSettings, tracker)`` tracks every function.

Each function and cron job's coroutine is wrapped, so the run is exactly the coroutine.
Queue lag = start - the later of ``ctx["enqueue_time"]`` and ``ctx["score"]`` (the time the
job was due: its ``_defer_until``/``_defer_by`` or its cron time). Attempt =
``ctx["job_try"]``. ``arq.Retry`` ends a run as ``retry``; a job timeout or abort ends it as
``failure`` with ``errors.CancelledError`` (arq cancels the coroutine).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from arq.cron import CronJob
from arq.worker import Retry, func

from tally.ingest.jobs.tracking import (
    ACTIVE_RUN,
    ExceptionTypes,
    HookTenant,
    JobTracker,
    Trackable,
    tracked_entry,
)

Coroutine = Callable[..., Awaitable[Any]]


def instrument_arq(
    settings: Any,
    tracker: Trackable,
    *,
    key: str = "event::job",
    tenant: HookTenant = None,
    limited: ExceptionTypes = (),
    skipped: ExceptionTypes = (),
    traces: object = None,
) -> Any:
    """A copy of ``settings`` (class or dict) with every function and cron job tracked.

    ``tenant`` is called with each job's arguments (without ``ctx``), or maps function names
    to such callables; None means tenant ``system``. ``traces``: a ``TraceRecorder`` (every
    run gets an execution id and a trace; see docs/traces.md).
    """
    jobs = JobTracker(tracker, key, limited=limited, skipped=skipped, retry=(Retry,), traces=traces)
    source = settings if isinstance(settings, dict) else vars(settings)
    functions = [_wrap_function(jobs, func(f), tenant) for f in source.get("functions") or ()]
    cron_jobs = [
        dataclasses.replace(c, coroutine=wrap_coroutine(jobs, c.coroutine, c.name, tenant))
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
    jobs: JobTracker, coroutine: Coroutine, name: str, tenant: HookTenant = None
) -> Coroutine:
    """``coroutine(ctx, *args, **kwargs)`` measured as one run of job ``name``."""
    job = jobs.name(name)
    entry = tracked_entry(coroutine)

    @functools.wraps(coroutine)
    async def tracked(ctx: dict, *args: Any, **kwargs: Any) -> Any:
        run = jobs.start(
            job,
            jobs.hook_tenant(tenant, name, args, kwargs, entry),
            due_at=_due_at(ctx),
            attempt=ctx.get("job_try") if isinstance(ctx, dict) else None,
        )
        run.entry = entry
        token = ACTIVE_RUN.set(run)
        try:
            result = await coroutine(ctx, *args, **kwargs)
        except BaseException as exc:
            ACTIVE_RUN.reset(token)
            jobs.finish(run, exc)
            raise
        ACTIVE_RUN.reset(token)
        jobs.finish(run)
        return result

    return tracked


def _wrap_function(jobs: JobTracker, function: Any, tenant: HookTenant) -> Any:
    wrapped = wrap_coroutine(jobs, function.coroutine, function.name, tenant)
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
