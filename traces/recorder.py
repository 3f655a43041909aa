"""``TraceRecorder``: gives each run an execution id and a trace, and ships it at the end."""

from __future__ import annotations

import os
from typing import Protocol

from tally.ingest.jobs.run import FAILURE, RETRY, SUCCESS, Run
from tally.ingest.text import valid_text
from tally.traces.args import ArgsPolicy
from tally.traces.buffer import Clock, TraceBuffer
from tally.traces.failure import exception_message, exception_traceback
from tally.traces.limits import TraceLimits, cut, serialize
from tally.traces.model import Execution, LogEvent
from tally.traces.sampling import Sampler, SamplingPolicy

STARTED, FINISHED, FAILED, RETRIED, ENQUEUED = (
    "started",
    "finished",
    "failed",
    "retried",
    "enqueued",
)


class Shipper(Protocol):
    """Where finished executions go (``TraceShipper``, or a list-like recorder in tests)."""

    def ship(self, execution: Execution) -> bool: ...


def new_execution_id() -> str:
    """128 random bits as 32 hex digits (the shape of an OpenTelemetry trace id)."""
    return os.urandom(16).hex()


class TraceRecorder:
    """Pass one to ``JobTracker(..., traces=recorder)`` (or a framework hook's ``traces=``).

    ``begin`` runs at the start of every run, ``end`` at its end: the sampling decision is
    made there (``SamplingPolicy``), and the execution is handed to the shipper (a buffer
    append). Neither raises: ``JobTracker`` counts problems in ``errors``.
    """

    def __init__(
        self,
        shipper: Shipper,
        policy: SamplingPolicy | None = None,
        limits: TraceLimits | None = None,
        args: ArgsPolicy | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.shipper = shipper
        self.clock = clock  # simulated time (a backfill): the one its JobTracker runs on
        self.policy = policy or SamplingPolicy()
        self.limits = limits or TraceLimits()
        self.args = args or ArgsPolicy()
        self.sampler = Sampler(self.policy)

    def begin(
        self, run: Run, outer: Run | None, parent: str | None, ref: str = "", args: object = None
    ) -> None:
        """Give ``run`` an execution id, its parent's id and an empty trace buffer."""
        run.execution_id = new_execution_id()
        run.parent_id = valid_text(parent or (outer.execution_id if outer is not None else ""))
        buffer = TraceBuffer(self.limits, self.clock)
        buffer.ref = valid_text(ref)
        if args is not None:
            buffer.args = self.args_text(args)
        run.trace = buffer

    def args_text(self, args: object) -> str:
        """Job arguments as job-log text: redacted (``ArgsPolicy``), JSON where possible, cut
        to ``max_args_bytes``; empty when arguments are not recorded."""
        value = self.args.prepare(args)
        return "" if value is None else cut(serialize(value), self.limits.max_args_bytes)[0]

    def enqueued(self, run: Run | None, job: str, ref: str, args: object = None) -> None:
        """Record in ``run``'s job log that it enqueued ``job`` (framework id ``ref``)."""
        buffer = run.trace if run is not None else None
        if isinstance(buffer, TraceBuffer):
            buffer.event(
                ENQUEUED, job, 0, self.args_text(args) if args is not None else "", ref=ref
            )

    def end(self, run: Run, key: str, tenant: str, hook_key: str = "") -> bool:
        """Decide sampling and ship the execution; True if something was shipped.

        ``hook_key``: the framework hook's key when ``key`` is that of a decorator that adopted
        the hook's run; the executions of either key list it."""
        buffer = run.trace
        run.trace = None
        if not isinstance(buffer, TraceBuffer):
            return False
        state = run.state or SUCCESS
        tags = buffer.tags
        ref, args = buffer.ref, buffer.args
        reason = self.sampler.reason(run.job, state, tags, run.execution_id)
        if not reason and not self.policy.index_unsampled:
            return False
        attempt = run.attempt or 1
        end = FAILED if state == FAILURE else RETRIED if state == RETRY else FINISHED
        job, error = valid_text(run.job), valid_text(run.error or "")
        events = [
            LogEvent(buffer.start_us, STARTED, job, attempt, args, ref=ref),
            *buffer.events,
            LogEvent(buffer.start_us + buffer.offset_us(), end, job, attempt, "", error),
        ]
        message = traceback = ""
        exc = run.exception
        if exc is not None and state in (FAILURE, RETRY):
            message = exception_message(exc, self.limits)
            traceback = exception_traceback(exc, self.limits)
        execution = Execution(
            id=run.execution_id,
            parent_id=run.parent_id,
            ref=ref,
            job=job,
            tenant=valid_text(tenant),
            key=valid_text(key),
            state=valid_text(state),
            code=valid_text(run.code or ""),
            error=error,
            attempt=attempt,
            started_us=buffer.start_us,
            duration_us=buffer.offset_us(),
            tags=tags,
            sampled=reason,
            lines=buffer.lines if reason else [],
            events=events,
            dropped=buffer.dropped,
            message=message,
            traceback=traceback,
            hook_key=valid_text(hook_key),
        )
        return self.shipper.ship(execution)
