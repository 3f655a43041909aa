"""Celery: ``instrument_celery(app, tracker)`` tracks every task of ``app`` through signals.

- ``before_task_publish`` stamps each published message (including retries) with a
  ``tally_enqueued_at`` header (unix seconds), because Celery messages carry no enqueue time.
- ``task_prerun`` starts the run: queue lag = now - max(tally_enqueued_at, eta); attempt =
  ``request.retries + 1``. Messages published without the header have no lag.
- ``task_failure`` / ``task_retry`` record the exception (for a retry: the one it retries on).
- ``task_postrun`` finishes it: SUCCESS -> success (or the state the task reported), FAILURE ->
  failure + ``errors.<Type>``, RETRY -> retry (``limited`` if the retry's cause is a limited
  type), IGNORED -> skipped, REJECTED -> failure.
- ``worker_process_shutdown`` flushes the tracker (prefork children exit without atexit).

Duration is task_prerun -> task_postrun, so it includes storing the result.

A task whose function is decorated by a ``JobTracker`` (``@flow.resource`` under
``@app.task``) is still one run: the decorator adopts this hook's run (see ``decorators``).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Mapping
from contextvars import Token
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from celery import signals
from celery.exceptions import Ignore, Reject, Retry

from tally.ingest.jobs import tracking
from tally.ingest.jobs.run import FAILURE, SKIPPED, Run

HEADER = "tally_enqueued_at"
PARENT = "tally_parent"  # the execution id of the run that published the message (traces)


@dataclass(slots=True)
class _Active:
    run: Run
    token: Token
    error: BaseException | None = None
    cause: BaseException | None = None


@dataclass(eq=False)
class CeleryHooks:
    """The signal receivers for one Celery app; ``disconnect()`` removes them."""

    app: Any
    jobs: tracking.JobTracker
    tenant: tracking.HookTenant = None
    _active: dict[str, _Active] = field(default_factory=dict, repr=False)

    def connect(self) -> CeleryHooks:
        """Connect the receivers (strong references; idempotent per hooks object)."""
        signals.before_task_publish.connect(self._publish, weak=False)
        signals.task_prerun.connect(self._prerun, weak=False)
        signals.task_failure.connect(self._failure, weak=False)
        signals.task_retry.connect(self._retry, weak=False)
        signals.task_postrun.connect(self._postrun, weak=False)
        signals.worker_process_shutdown.connect(self._flush, weak=False)
        return self

    def disconnect(self) -> None:
        """Disconnect every receiver this object connected."""
        signals.before_task_publish.disconnect(self._publish)
        signals.task_prerun.disconnect(self._prerun)
        signals.task_failure.disconnect(self._failure)
        signals.task_retry.disconnect(self._retry)
        signals.task_postrun.disconnect(self._postrun)
        signals.worker_process_shutdown.disconnect(self._flush)

    def _publish(
        self, headers: dict | None = None, body: object = None, sender: object = None, **_: object
    ) -> None:
        if isinstance(headers, dict):
            headers[HEADER] = time.time()
            traces = self.jobs.traces
            run = tracking.ACTIVE_RUN.get()
            if traces is not None and run is not None and run.execution_id:
                try:  # the child's parent link, and "enqueued" in this run's job log
                    if headers.get("id") and headers.get("id") == getattr(run.trace, "ref", ""):
                        headers[PARENT] = run.parent_id  # a retry of this task: same parent
                        return
                    headers[PARENT] = run.execution_id
                    args = body[:2] if isinstance(body, tuple | list) else None
                    name = headers.get("task") or sender or ""
                    traces.enqueued(
                        run, self.jobs.name(str(name)), str(headers.get("id", "")), args
                    )
                except Exception as exc:
                    self.jobs.failed("celery publish", exc)

    def _prerun(
        self,
        task_id: str | None = None,
        task: Any = None,
        args: tuple | None = None,
        kwargs: Mapping | None = None,
        **_: object,
    ) -> None:
        if task is None or task_id is None or getattr(task, "app", None) is not self.app:
            return
        jobs = self.jobs
        try:
            request = task.request
            entry = tracking.tracked_entry(getattr(task, "run", None))
            tenant = None
            if self.tenant is not None:
                args, kwargs = tuple(args or ()), dict(kwargs or {})
                tenant = jobs.hook_tenant(self.tenant, task.name, args, kwargs, entry)
            traced = jobs.traces is not None
            parent = getattr(request, PARENT, None) if traced else None
            run = jobs.start(
                jobs.name(task.name),
                tenant,
                due_at=_due_at(request),
                attempt=int(request.retries or 0) + 1,
                parent=parent if isinstance(parent, str) else None,
                ref=task_id if traced else "",
                args=[list(args or ()), dict(kwargs or {})] if traced else None,
            )
            run.entry = entry
            self._active[task_id] = _Active(run, tracking.ACTIVE_RUN.set(run))
        except Exception as exc:
            jobs.failed("celery prerun", exc)

    def _failure(
        self, task_id: str | None = None, exception: BaseException | None = None, **_: object
    ) -> None:
        active = self._active.get(task_id or "")
        if active is not None:
            active.error = exception

    def _retry(self, request: Any = None, reason: BaseException | None = None, **_: object) -> None:
        active = self._active.get(getattr(request, "id", None) or "")
        if active is not None:
            active.error = reason
            active.cause = getattr(reason, "exc", None)

    def _postrun(self, task_id: str | None = None, state: str | None = None, **_: object) -> None:
        active = self._active.pop(task_id or "", None)
        if active is None:
            return
        jobs, run = self.jobs, active.run
        with contextlib.suppress(ValueError):  # set in another context: leave it alone
            tracking.ACTIVE_RUN.reset(active.token)
        try:
            if state == "IGNORED":
                run.state = SKIPPED
            elif state == "RETRY":
                jobs.classify(run, active.error or Retry(), active.cause)
            elif state in ("FAILURE", "REJECTED"):
                error = active.error or (Reject() if state == "REJECTED" else None)
                if error is None:
                    run.state, run.error = FAILURE, "unknown"
                else:
                    jobs.classify(run, error)
        except Exception as exc:
            jobs.failed("celery postrun", exc)
        jobs.finish(run)

    def _flush(self, **_: object) -> None:
        self.jobs.flush()


def instrument_celery(
    app: Any,
    tracker: tracking.Trackable,
    *,
    key: str = "event::job",
    tenant: tracking.HookTenant = None,
    limited: tracking.ExceptionTypes = (),
    skipped: tracking.ExceptionTypes = (Ignore,),
    traces: object = None,
) -> CeleryHooks:
    """Track every task of ``app`` under ``key`` (and ``key::<tenant>``); one line of setup.

    ``tenant`` is called with the task's arguments, or maps task names to such callables
    (or constants); None, or a task missing from the mapping, means tenant ``system``.
    ``limited`` names exception types (raised or retried on) that mean a lock or limiter
    was busy. ``traces`` (a ``tally.traces.TraceRecorder``) gives every run an execution id and
    a trace, links a task to the run that published it, and logs its lifecycle.
    """
    jobs = tracking.JobTracker(
        tracker, key, limited=limited, skipped=skipped, retry=(Retry,), traces=traces
    )
    return CeleryHooks(app, jobs, tenant).connect()


def _due_at(request: Any) -> float | None:
    """When the message was due: the later of its publish time and its ETA (unix seconds)."""
    try:
        enqueued = getattr(request, HEADER, None)
        due = float(enqueued) if isinstance(enqueued, int | float) else None
        eta = getattr(request, "eta", None)
        if isinstance(eta, str):
            eta = datetime.fromisoformat(eta)
        if isinstance(eta, datetime) and eta.tzinfo is not None:
            due = max(due or 0.0, eta.timestamp())
        return due
    except (TypeError, ValueError, OverflowError):
        return None
