"""One job run and the values it is tracked with.

Every run is tracked as ONE event fanned out to ``key`` and ``key::<tenant>`` with

    {"total": v, "jobs": {<job>: v}, "tenants": {<tenant>: v}}

    v = {"count": 1,
         "duration": dist(ms),
         "resources": n,
         "state": {<state>: 1},                 # success, failure, limited, skipped, retry, ...
         "errors": {<ExceptionClass>: 1},       # failures and retries only
         "codes": {<CODE>: 1},                  # when the job reports a result code
         "queue_lag": dist(ms),                 # when known
         "retries": 0 | 1, "attempt": n,        # when the framework knows the attempt
         <measure>: {"count": 1, "sum": x, "square": x * x},  # run.observe(...)
         "locks": {<lock>: {"wait_ms": dist, "timeouts": n}},  # run.waiting(...)
         "cpu_ms": dist, "max_rss_growth_kb": dist}  # JobTracker(measure_resources=True)

``duration``, ``queue_lag`` and the other ``dist`` values are distributions: a sketch for
quantiles plus ``.count``/``.sum``/``.square`` (``tally.ingest.kinds``).

Durations and lags are integer milliseconds (rounded to nearest), so sums stay exact.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field

from tally.ingest.jobs.names import SYSTEM, label
from tally.ingest.kinds import Dist, dist

SUCCESS = "success"
FAILURE = "failure"
LIMITED = "limited"
SKIPPED = "skipped"
RETRY = "retry"

RESERVED = frozenset(
    {"count", "duration", "resources", "state", "errors", "codes", "queue_lag", "retries"}
    | {"attempt", "total", "jobs", "tenants", "locks", "cpu_ms", "max_rss_growth_kb"}
)
_STATES = frozenset({SUCCESS, FAILURE, LIMITED, SKIPPED, RETRY})


@dataclass(slots=True)
class Run:
    """What one job run reports; handed to the job (``pass_run``) or via ``current_run()``.

    Jobs may set ``resources``, ``tenant``, ``state`` and ``code`` directly or use the methods.
    """

    job: str
    tenant: object = SYSTEM
    resources: int = 0
    state: str | None = None
    code: str | None = None
    error: str | None = None
    lag_ms: int | None = None
    attempt: int | None = None
    measures: dict[str, dict[str, int | float]] | None = None
    duration_ms: int = 0
    started_ns: int = field(default=0, repr=False)
    # Set by a framework hook: the tally-decorated task function whose decorator adopts this
    # run instead of starting its own (cleared once adopted).
    entry: object = field(default=None, repr=False)
    # The decorator's ``JobTracker`` that adopted this run: its key and exception types join
    # the hook's, so one event carries the decorator's name, state, resources and keys.
    owner: object = field(default=None, repr=False)
    # Traces (set when the JobTracker has a TraceRecorder): this run's execution id, the id of
    # the run that enqueued or called it, and its trace buffer while it runs.
    execution_id: str = ""
    parent_id: str = ""
    trace: object = field(default=None, repr=False)
    # Lock waits: name -> wait times (ms) and timeouts (``waiting``).
    lock_waits: dict[str, list[float]] | None = None
    lock_timeouts: dict[str, int] | None = None
    # Per-run resources (``JobTracker(measure_resources=True)``): thread CPU time and how much
    # the process's peak RSS grew during the run.
    cpu_ms: float | None = None
    rss_growth_kb: int | None = None
    usage_start: tuple[int, int] | None = field(default=None, repr=False)
    # The exception a failed or retried run ended with (traces record its message and
    # traceback); dropped once the run is shipped.
    exception: BaseException | None = field(default=None, repr=False)

    @contextmanager
    def waiting(
        self, lock: str, timeouts: tuple[type[BaseException], ...] = (TimeoutError,)
    ) -> Iterator[None]:
        """Time a wait on ``lock``: ``with run.waiting("tenant-lock"): acquire()``.

        The wait (ms) becomes a sample of the distribution ``locks.<lock>.wait_ms``; a block
        that raises one of ``timeouts`` (re-raised) also counts ``locks.<lock>.timeouts``.
        """
        name = label(lock)
        started = time.perf_counter()
        try:
            yield
        except timeouts:
            counts = self.lock_timeouts if self.lock_timeouts is not None else {}
            self.lock_timeouts = counts
            counts[name] = counts.get(name, 0) + 1
            raise
        finally:
            waits = self.lock_waits if self.lock_waits is not None else {}
            self.lock_waits = waits
            waits.setdefault(name, []).append((time.perf_counter() - started) * 1000)

    def add_resources(self, n: int = 1) -> None:
        """Count ``n`` more resources touched or enqueued by this run."""
        self.resources += n

    def skip(self) -> None:
        """Mark the run ``skipped`` (it ran but had nothing to do)."""
        self.state = SKIPPED

    def result(self, state: str | None = None, code: str | None = None) -> None:
        """Report the result state (e.g. ``duplicate``) and/or a result code (e.g. ``OK``)."""
        if state is not None:
            self.state = state
        if code is not None:
            self.code = code

    def observe(self, name: str, value: int | float) -> None:
        """Add ``value`` to measure ``name`` as count/sum/square (e.g. price in cents)."""
        name = label(name)
        if name in RESERVED:
            name = f"{name}_"
        measures = self.measures if self.measures is not None else {}
        self.measures = measures
        slot = measures.setdefault(name, {"count": 0, "sum": 0, "square": 0})
        slot["count"] += 1
        slot["sum"] += value
        slot["square"] += value * value


def job_values(run: Run) -> dict:
    """The per-run measurement ``v`` (see the module docstring)."""
    ms = run.duration_ms
    state = run.state
    if state is None:
        state = SUCCESS
    elif state not in _STATES:
        state = label(state)
    values: dict = {
        "count": 1,
        # a distribution: the sketch at duration, and duration.count/.sum/.square as before
        "duration": dist(ms),
        "resources": int(run.resources),
        "state": {state: 1},
    }
    if run.error is not None:
        values["errors"] = {label(run.error): 1}
    if run.code is not None:
        values["codes"] = {label(run.code): 1}
    lag = run.lag_ms
    if lag is not None:
        values["queue_lag"] = dist(lag)  # quantiles replace the le_100ms ... gt_600s counters
    if run.attempt is not None:
        values["retries"] = int(run.attempt > 1)
        values["attempt"] = run.attempt
    if run.measures:
        values.update(run.measures)
    if run.lock_waits or run.lock_timeouts:
        locks: dict = {}
        for name, waits in (run.lock_waits or {}).items():
            locks[name] = {"wait_ms": Dist.of(waits)}
        for name, n in (run.lock_timeouts or {}).items():
            locks.setdefault(name, {})["timeouts"] = n
        values["locks"] = locks
    if run.cpu_ms is not None:
        values["cpu_ms"] = dist(run.cpu_ms)
    if run.rss_growth_kb is not None:
        values["max_rss_growth_kb"] = dist(run.rss_growth_kb)
    return values


def event_values(job: str, tenant: str, values: dict) -> dict:
    """The fanned-out shape: the same ``values`` under total, jobs.<job> and tenants.<tenant>."""
    return {"total": values, "jobs": {job: values}, "tenants": {tenant: values}}


def lag_ms(started_at: float, due_at: float | None) -> int | None:
    """Milliseconds from ``due_at`` (enqueue or ETA, unix seconds) to ``started_at``; >= 0."""
    if due_at is None:
        return None
    return max(0, round((started_at - due_at) * 1000))


# The run of the instrumented job executing in this context (set by decorators and hooks).
ACTIVE_RUN: ContextVar[Run | None] = ContextVar("tally_job_run", default=None)
# A job's tenant as a function of its arguments.
TenantOf = Callable[..., object]
