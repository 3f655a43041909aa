"""Dramatiq: ``broker.add_middleware(TallyMiddleware(tracker))`` tracks every message.

``before_process_message`` starts the run, ``after_process_message`` finishes it: an
exception the Retries middleware re-enqueues is ``retry``, the one after which it gives up (or
a ``throws`` type) is ``failure``, both with ``errors.<Type>`` (decided by Retries' own rule,
see ``_retrying``); ``RateLimitExceeded`` -> limited.
``after_skip_message`` tracks a skipped message. Queue lag = start - the latest of
``message_timestamp`` (when it was sent), ``options["requeue_timestamp"]`` (when a retry was
re-queued) and ``options["eta"]`` (when a delayed message was due). Attempt =
``options["retries"] + 1``, read before the Retries middleware bumps it.

``current_run()`` works in thread actors; AsyncIO actors run in another thread and see none.
"""

from __future__ import annotations

import contextlib
from contextvars import Token
from typing import Any

from dramatiq import Middleware
from dramatiq.errors import RateLimitExceeded, Retry
from dramatiq.middleware import Retries

from tally.ingest.jobs import tracking
from tally.ingest.jobs.run import SKIPPED, Run

PARENT = "tally_parent"  # message option: the execution id of the enqueuing run (traces)


class TallyMiddleware(Middleware):
    """Tracks each processed message as one run under ``key`` (and ``key::<tenant>``)."""

    def __init__(
        self,
        tracker: tracking.Trackable,
        *,
        key: str = "event::job",
        tenant: tracking.HookTenant = None,
        limited: tracking.ExceptionTypes = (RateLimitExceeded,),
        skipped: tracking.ExceptionTypes = (),
        traces: object = None,
    ) -> None:
        self.jobs = tracking.JobTracker(
            tracker, key, limited=limited, skipped=skipped, retry=(Retry,), traces=traces
        )
        self.tenant = tenant
        self._active: dict[str, tuple[Run, Token]] = {}

    def before_enqueue(self, broker: Any, message: Any, delay: int) -> None:
        """With traces: stamp the enqueuing run's execution id and log ``enqueued``."""
        traces, run = self.jobs.traces, tracking.ACTIVE_RUN.get()
        if traces is None or run is None or not run.execution_id:
            return
        try:
            message.options[PARENT] = run.execution_id
            name = self.jobs.name(message.actor_name)
            traces.enqueued(run, name, message.message_id, [list(message.args), message.kwargs])
        except Exception as exc:
            self.jobs.failed("dramatiq enqueue", exc)

    def before_process_message(self, broker: Any, message: Any) -> None:
        """Start the message's run."""
        try:
            entry = None
            with contextlib.suppress(Exception):  # an unknown actor: dramatiq fails it
                entry = tracking.tracked_entry(broker.get_actor(message.actor_name).fn)
            run = self._start(message, entry)
            self._active[message.message_id] = (run, tracking.ACTIVE_RUN.set(run))
        except Exception as exc:
            self.jobs.failed("dramatiq before", exc)

    def after_process_message(
        self,
        broker: Any,
        message: Any,
        *,
        result: object = None,
        exception: BaseException | None = None,
    ) -> None:
        """Finish the run with the actor's outcome."""
        run = self._pop(message)
        if run is None:
            return
        if exception is None and message.failed:  # failed by a middleware: never ran
            run.state = SKIPPED
        try:
            retrying = _retrying(broker, message, run, exception)
        except Exception as exc:  # an unknown actor, a raising retry_when
            self.jobs.failed("dramatiq retry", exc)
            retrying = None
        self.jobs.finish(run, exception, retrying=retrying)

    def after_skip_message(self, broker: Any, message: Any) -> None:
        """Track a skipped message (started or not) as ``skipped``."""
        try:
            run = self._pop(message) or self._start(message)
        except Exception as exc:
            self.jobs.failed("dramatiq skip", exc)
            return
        run.state = SKIPPED
        self.jobs.finish(run)

    def _start(self, message: Any, entry: object = None) -> Run:
        options = message.options
        jobs = self.jobs
        tenant = None
        if self.tenant is not None:
            args, kwargs = tuple(message.args), dict(message.kwargs)
            tenant = jobs.hook_tenant(self.tenant, message.actor_name, args, kwargs, entry)
        stamps = [message.message_timestamp, options.get("requeue_timestamp"), options.get("eta")]
        due = max((s for s in stamps if isinstance(s, int | float)), default=None)
        run = jobs.start(
            jobs.name(message.actor_name),
            tenant,
            due_at=due / 1000 if due is not None else None,
            attempt=int(options.get("retries") or 0) + 1,
            **self._trace_fields(message),
        )
        run.entry = entry
        return run

    def _trace_fields(self, message: Any) -> dict[str, Any]:
        if self.jobs.traces is None:
            return {}
        parent = message.options.get(PARENT)
        return {
            "parent": parent if isinstance(parent, str) else None,
            "ref": str(message.message_id),
            "args": [list(message.args), dict(message.kwargs)],
        }

    def _pop(self, message: Any) -> Run | None:
        entry = self._active.pop(message.message_id, None)
        if entry is None:
            return None
        run, token = entry
        with contextlib.suppress(ValueError):  # set in another context: leave it alone
            tracking.ACTIVE_RUN.reset(token)
        return run


def _retrying(broker: Any, message: Any, run: Run, exception: BaseException | None) -> bool | None:
    """Whether the Retries middleware enqueues the failed message again (None: no failure).

    Dramatiq calls ``after_process_message`` in reverse order of the middleware list, so a
    middleware added after Retries (the usual ``add_middleware``) runs first and the decision
    is predicted with Retries' own rule (``throws``, ``retry_when``, ``max_retries``); one
    added before it sees the outcome (``retries`` bumped, or the message failed). No Retries
    middleware: nothing is retried.
    """
    if exception is None:
        return None
    if message.failed:
        return False
    options = message.options
    retries = int(options.get("retries") or 0)
    if retries >= (run.attempt or 1):  # Retries ran before us and kept the message
        return True
    retrier = next((m for m in broker.middleware if isinstance(m, Retries)), None)
    if retrier is None:
        return False
    actor = broker.get_actor(message.actor_name)
    throws = options.get("throws") or actor.options.get("throws")
    if throws and isinstance(exception, throws):
        return False
    retry_when = actor.options.get("retry_when", retrier.retry_when)
    if retry_when is not None:
        return bool(retry_when(retries, exception))
    limit = options.get("max_retries", actor.options.get("max_retries", retrier.max_retries))
    return limit is None or retries < limit
