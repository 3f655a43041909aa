"""``JobTracker``: start a run, classify its outcome, emit one ``track()`` call.

All instrumentation work is guarded: nothing here raises into the job. Problems (a tenant
function that raised, values the client rejected, a strict client raising) are counted in
``JobTracker.errors`` and logged at most every 10 s.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from tally.ingest.flatten import Kinds, flatten_all
from tally.ingest.jobs.decorators import JobDecorator, RunScope
from tally.ingest.jobs.names import SYSTEM, job_name, tenant_key
from tally.ingest.jobs.run import (
    ACTIVE_RUN,
    FAILURE,
    LIMITED,
    RETRY,
    SKIPPED,
    Run,
    TenantOf,
    event_values,
    job_values,
)
from tally.ingest.track_args import Keys, Values, When
from tally.schemas.limits import Limits

log = logging.getLogger("tally.ingest.jobs")

_NAME_CACHE_SIZE = 4096
_LIMITS = Limits()

ExceptionTypes = tuple[type[BaseException], ...]
# A hook's ``tenant``: one callable (or constant) for every task, or a mapping from task name
# to a callable (or constant) per task; tasks missing from the mapping belong to no tenant.
HookTenant = TenantOf | Mapping[str, object] | None


class Clock(Protocol):
    """A simulated clock for ``JobTracker(clock=...)`` (replays, backfills, tests)."""

    def time(self) -> float: ...

    def perf_counter_ns(self) -> int: ...


@runtime_checkable
class Trackable(Protocol):
    """Anything with ``Tracker.track``'s signature (the real ``Tracker``, or a test recorder)."""

    def track(
        self, keys: Keys, values: Values, at: When = None, route: str | None = None
    ) -> bool: ...


def _max_rss_kb() -> int:
    """The process's peak resident set so far, in KiB (0 where ``resource`` is missing)."""
    try:
        import resource

        return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    except (ImportError, OSError):
        return 0


def current_run() -> Run:
    """The run of the instrumented job executing in this context.

    Outside any instrumented job this returns a fresh detached ``Run`` that is never tracked,
    so job code can call ``current_run().add_resources(n)`` unconditionally.
    """
    run = ACTIVE_RUN.get()
    return run if run is not None else Run(job="untracked")


def active_run() -> Run | None:
    """The run executing in this context, or None."""
    return ACTIVE_RUN.get()


def tracked_entry(func: object) -> Callable | None:
    """The tally-decorated function ``func`` is, or wraps (``__wrapped__``), or None.

    Hooks put it on their run (``Run.entry``) so that the task's own decorator adopts the
    hook's run instead of tracking a second one.
    """
    func = getattr(func, "__func__", func)  # a bound method (Celery ``bind=True``)
    for _ in range(16):
        if func is None:
            return None
        if getattr(func, "tally_job", None) is not None:
            return func  # type: ignore[return-value]
        func = getattr(func, "__wrapped__", None)
    return None


@dataclass(eq=False)
class JobTracker:
    """Tracks job runs under ``key`` (and ``key::<tenant>`` when ``tenant_keys``).

    ``limited``, ``skipped`` and ``retry`` name exception types that end a run in those states
    instead of ``failure``; the exception still propagates to the caller unchanged.
    """

    tracker: Trackable
    key: str = "event::job"
    tenant_keys: bool = True
    limited: ExceptionTypes = ()
    skipped: ExceptionTypes = ()
    retry: ExceptionTypes = ()
    # A ``tally.traces.TraceRecorder``: every run gets an execution id and a trace.
    traces: Any = None
    # Per run: thread CPU time and growth of the process's peak RSS, as distributions.
    measure_resources: bool = False
    # Tests and backfills: a ``Clock`` (``time()``, ``perf_counter_ns()``) to read instead of
    # the ``time`` module; each run is then tracked at ``clock.time()`` when it ends.
    clock: Clock | None = None
    errors: int = field(default=0, init=False)
    _names: dict[str, str] = field(default_factory=dict, init=False, repr=False)
    _tenants: dict[str, tuple[str, tuple[str, ...]]] = field(
        default_factory=dict, init=False, repr=False
    )
    _last_warning: float = field(default=0.0, init=False, repr=False)
    _shapes: dict[tuple[str, str, tuple[str, ...]], tuple[str, ...]] = field(
        default_factory=dict, init=False, repr=False
    )

    def __call__(
        self,
        func: Callable | None = None,
        *,
        name: str | None = None,
        tenant: object | TenantOf = None,
        pass_run: bool = False,
    ) -> Any:
        """Decorator for a sync or async job: ``@jobs`` or ``@jobs(name=..., tenant=...)``.

        ``tenant`` is a constant or a callable taking the job's arguments; ``pass_run`` hands
        the ``Run`` to the job as the keyword argument ``run``.
        """
        decorator: JobDecorator = JobDecorator(self, name, tenant, pass_run)
        return decorator if func is None else decorator(func)

    def run(
        self,
        job: str,
        tenant: object = None,
        *,
        due_at: float | None = None,
        attempt: int | None = None,
    ) -> RunScope:
        """Context manager (``with`` or ``async with``) measuring the block as one run."""
        return RunScope(self, self.name(job), tenant, due_at, attempt)

    def name(self, raw: str) -> str:
        """``raw`` sanitised with ``job_name`` (cached per tracker)."""
        cached = self._names.get(raw)
        if cached is None:
            if len(self._names) >= _NAME_CACHE_SIZE:
                self._names.clear()
            cached = self._names[raw] = job_name(raw)
        return cached

    def start(
        self,
        job: str,
        tenant: object = None,
        *,
        due_at: float | None = None,
        attempt: int | None = None,
        parent: str | None = None,
        ref: str = "",
        args: object = None,
    ) -> Run:
        """A started run of ``job`` (an already sanitised name).

        ``due_at`` (unix seconds: enqueue time, or the ETA when later) gives the queue lag.
        A run started inside another instrumented run inherits its lag and attempt. With
        ``traces``: ``parent`` is the execution id of the run that enqueued this one (a hook
        reads it from the message), else the enclosing run's; ``ref`` is the framework's id of
        the message and ``args`` the job's arguments (for the job log).
        """
        run = Run(job, SYSTEM if tenant is None else tenant)
        clock = self.clock
        try:
            if due_at is not None:
                now = time.time() if clock is None else clock.time()
                run.lag_ms = max(0, round((now - due_at) * 1000))
            run.attempt = attempt
            outer = ACTIVE_RUN.get()
            if outer is not None:
                if run.lag_ms is None:
                    run.lag_ms = outer.lag_ms
                if run.attempt is None:
                    run.attempt = outer.attempt
            if self.traces is not None:
                self.traces.begin(run, outer, parent, ref, args)
        except Exception as exc:  # a bad due_at or attempt from a framework hook
            self.failed("start", exc)
        if self.measure_resources:
            run.usage_start = (time.thread_time_ns(), _max_rss_kb())
        run.started_ns = time.perf_counter_ns() if clock is None else clock.perf_counter_ns()
        return run

    def finish(
        self, run: Run, error: BaseException | None = None, *, retrying: bool | None = None
    ) -> bool:
        """Stop the clock, set the state from ``error``, and track; True if tracked.

        ``retrying`` is the framework's word on whether the job will run again (see
        ``classify``); None lets the exception types decide.
        """
        try:
            clock = self.clock
            now_ns = time.perf_counter_ns() if clock is None else clock.perf_counter_ns()
            run.duration_ms = (now_ns - run.started_ns + 500_000) // 1_000_000
            if run.usage_start is not None:
                cpu_ns, rss_kb = run.usage_start
                run.cpu_ms = (time.thread_time_ns() - cpu_ns) / 1e6
                run.rss_growth_kb = max(0, _max_rss_kb() - rss_kb)
            if error is not None:
                self.classify(run, error, retrying=retrying)
        except Exception as exc:  # e.g. a non-type in ``limited``
            self.failed("finish", exc)
            return False
        tracked = self.emit(run)
        if run.trace is not None:
            try:
                owner = run.owner
                jobs = owner if isinstance(owner, JobTracker) and owner is not self else self
                hook_key = self.key if jobs is not self else ""
                self.traces.end(run, jobs.key, jobs._tenant_keys(run.tenant)[0], hook_key)
            except Exception as exc:
                self.failed("trace", exc)
        run.exception = None  # let go of the traceback's frames
        return tracked

    def classify(
        self,
        run: Run,
        error: BaseException,
        cause: BaseException | None = None,
        *,
        retrying: bool | None = None,
    ) -> None:
        """Set ``run.state`` (and ``run.error``) for a run that ended with ``error``.

        One meaning for every framework: an attempt the framework will run again is
        ``retry``, the attempt after which it gives up is ``failure`` (``limited`` and
        ``skipped`` types win over both). ``retrying`` is the framework's word on that (RQ's
        ``retries_left``, Dramatiq's Retries middleware, arq's ``max_tries``); None means
        "an exception of a ``retry`` type is a retry". ``cause`` is the underlying exception
        when ``error`` is a framework's retry signal (e.g. Celery's ``Retry``): a retry
        caused by a ``limited`` type is ``limited``. The exception types of a decorator that
        adopted the run count as well as this tracker's.
        """
        reason = error if cause is None else cause
        limited, skipped, retry = self.limited, self.skipped, self.retry
        owner = run.owner
        if isinstance(owner, JobTracker) and owner is not self:
            limited, skipped = limited + owner.limited, skipped + owner.skipped
            retry = retry + owner.retry
        if isinstance(reason, limited) or isinstance(error, limited):
            run.state = LIMITED
            return
        if isinstance(reason, skipped) or isinstance(error, skipped):
            run.state = SKIPPED
            return
        again = isinstance(error, retry) if retrying is None else retrying
        run.state = RETRY if again else FAILURE
        run.error = type(reason).__name__
        run.exception = reason

    def emit(self, run: Run) -> bool:
        """Track ``run`` (already finished) as one event; never raises."""
        try:
            tenant, keys = self._tenant_keys(run.tenant)
            owner = run.owner
            if isinstance(owner, JobTracker) and owner is not self:
                # one event, fanned out to the adopting decorator's keys and this hook's keys
                _, owned = owner._tenant_keys(run.tenant)
                keys = owned + tuple(k for k in keys if k not in owned)
            values = job_values(run)
            at = None if self.clock is None else self.clock.time()
            track_flat = getattr(self.tracker, "track_flat", None)
            if track_flat is None:
                return self.tracker.track(keys, event_values(run.job, tenant, values), at=at)
            # Fast path: flatten the measurement once, reuse the fanned-out paths per shape.
            paths, numbers, kinds = flatten_all(values, _LIMITS)
            fanned = self._fanned_out(run.job, tenant, paths)
            if kinds is None:
                return track_flat(keys, fanned, numbers * 3, at=at)
            fanned_kinds = self._fanned_kinds(run, tenant, kinds)
            return track_flat(keys, fanned, numbers * 3, at=at, kinds=fanned_kinds)
        except Exception as exc:
            self.failed("track", exc)
            return False

    def _fanned_out(self, job: str, tenant: str, paths: tuple[str, ...]) -> tuple[str, ...]:
        """``paths`` under total, jobs.<job> and tenants.<tenant>, as ``event_values`` nests."""
        slot = (job, tenant, paths)
        found = self._shapes.get(slot)
        if found is None:
            if len(self._shapes) >= _NAME_CACHE_SIZE:
                self._shapes.clear()
            found = tuple(
                f"{prefix}.{path}"
                for prefix in ("total", f"jobs.{job}", f"tenants.{tenant}")
                for path in paths
            )
            self._shapes[slot] = found
        return found

    def _fanned_kinds(self, run: Run, tenant: str, kinds: Kinds) -> Kinds:
        """The distributions and gauges under total, jobs.<job> and tenants.<tenant>."""
        prefixes = ("total", f"jobs.{run.job}", f"tenants.{tenant}")
        dists = [(f"{pre}.{path}", d) for pre in prefixes for path, d in kinds[0]]
        gauges = [(f"{pre}.{path}", v, at) for pre in prefixes for path, v, at in kinds[1]]
        return dists, gauges

    def _tenant_keys(self, raw: object) -> tuple[str, tuple[str, ...]]:
        """The tenant's path segment and the keys to fan out to (cached per string tenant)."""
        cacheable = type(raw) is str
        if cacheable:
            hit = self._tenants.get(raw)
            if hit is not None:
                return hit
        tenant = tenant_key(raw)
        keys = (self.key, f"{self.key}::{tenant}") if self.tenant_keys else (self.key,)
        if cacheable:
            if len(self._tenants) >= _NAME_CACHE_SIZE:
                self._tenants.clear()
            self._tenants[raw] = (tenant, keys)
        return tenant, keys

    def flush(self, timeout: float = 10.0) -> bool:
        """Flush the underlying tracker (and the traces' shipper) if it can; never raises."""
        done = True
        shipper = getattr(self.traces, "shipper", None)
        for target in (self.tracker, shipper):
            flush = getattr(target, "flush", None)
            if flush is None:
                continue
            try:
                done = bool(flush(timeout)) and done
            except Exception as exc:
                self.failed("flush", exc)
                done = False
        return done

    def tenant_of(self, tenant: object | TenantOf, args: tuple, kwargs: Mapping) -> object:
        """Resolve a constant or callable tenant for one call; None on error (counted)."""
        if not callable(tenant):
            return tenant
        try:
            return tenant(*args, **kwargs)
        except Exception as exc:
            self.failed("tenant", exc)
            return None

    def hook_tenant(
        self, tenant: HookTenant, task: str, args: tuple, kwargs: Mapping, entry: object = None
    ) -> object:
        """A hook's tenant for one run of ``task`` (the framework's task name).

        ``tenant`` is a callable or constant for every task, or a mapping from task name (as
        the framework names it, or sanitised like the job name) to a callable or constant;
        a task missing from the mapping has no tenant. None when the task's own decorator
        (``entry``) decides the tenant, so the hook's callable is not asked.
        """
        if tenant is None or getattr(entry, "tally_tenant", False):
            return None
        if isinstance(tenant, Mapping):
            spec = tenant.get(task)
            if spec is None:
                spec = tenant.get(self.name(task))
            if spec is None:
                return None
            tenant = spec
        return self.tenant_of(tenant, args, kwargs)

    def adopt(
        self, run: Run, job: str, tenant: object | TenantOf, args: tuple, kwargs: Mapping
    ) -> None:
        """Make a hook's ``run`` this decorator's run: its name, its tenant, its keys.

        The tenant is the decorator's when it names one; a tracker without tenant keys (a
        cron) files its runs under ``system``; otherwise the hook's tenant stays.
        """
        run.entry = None
        run.owner = self
        run.job = job
        if tenant is not None:
            found = self.tenant_of(tenant, args, kwargs)
            run.tenant = SYSTEM if found is None else found
        elif not self.tenant_keys:
            run.tenant = SYSTEM

    def failed(self, where: str, exc: BaseException) -> None:
        """Count an instrumentation problem and log it (rate limited); never raises."""
        self.errors += 1
        now = time.monotonic()
        if now - self._last_warning > 10:
            self._last_warning = now
            log.warning("tally job instrumentation (%s) failed: %r", where, exc)
