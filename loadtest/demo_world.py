"""The demo's world: cron -> schedule -> resource jobs per tenant on an RQ-shaped job queue.

Everything is tracked through the real instrumentation: ``JobFlow`` decorators for the cron,
schedule and resource jobs, a hook-shaped ``JobTracker`` on ``event::job`` (started and
finished the way the RQ hook does it, so the decorators adopt its runs), a ``TraceRecorder``
for executions, and queue gauges shaped like the sampler's. Time is simulated
(``JobTracker(clock=...)``): ``run_until(t)`` plays every job due before ``t`` at the rate
the schedule says, so a week of history and the live minutes have the same rate.
"""

from __future__ import annotations

import dataclasses
import hashlib
import heapq
import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from tally.ingest.jobs import JobFlow, JobTracker, Trackable, current_run, tracked_entry
from tally.ingest.jobs.tracking import ACTIVE_RUN
from tally.sampler.sample import QueueSample
from tally.sampler.service import KEY as QUEUE_KEY
from tally.traces import note, tag, trace
from tally.traces.recorder import TraceRecorder
from tally.traces.sampling import SamplingPolicy

TENANTS = {  # tenant -> size (resources per schedule run, before the time of day)
    "acme": 12, "globex": 9, "initech": 6, "umbrella": 8, "hooli": 5, "stark": 4,
    "wayne": 7, "wonka": 3, "tyrell": 3, "cyberdyne": 2, "soylent": 2, "aperture": 0,
}  # fmt: skip
# cron name -> (minute of the hour, schedule job, resource job); each runs once an hour
CRONS = {
    "billing.cron.ScheduleInvoicesJob": (5, "billing.tenants.ScheduleInvoicesJob",
                                         "billing.SyncInvoiceJob"),
    "commodity.cron.RefreshTargetsJob": (20, "commodity.tenants.ScheduleCalculationsJob",
                                         "commodity.product_targets.CalculateJob"),
    "reports.cron.DigestJob": (45, "reports.tenants.ScheduleDigestsJob",
                               "reports.SendDigestJob"),
}  # fmt: skip
QUEUES = {"default": 2, "resources": 2}  # RQ queue -> workers
SAMPLE_EVERY_S = 60
MAX_RETRIES = 2


class TenantLocked(Exception):
    """Another scheduler holds the tenant's lock (state ``limited``)."""


class UpstreamUnavailable(ConnectionError):
    """The accounting API answered 503 (retried)."""


class CredentialsExpired(PermissionError):
    """The accounting API rejects the demo's token: 401 (not retried)."""


class SimClock:
    """Simulated time: ``now`` moves only when set or advanced (``JobTracker.clock``)."""

    def __init__(self, now: float) -> None:
        self.now = now

    def time(self) -> float:
        return self.now

    def perf_counter_ns(self) -> int:
        return int(self.now * 1e9)

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass(order=True)
class Task:
    """One message on a queue: when it was enqueued, when a worker takes it, what it runs."""

    start_at: float
    seq: int
    enqueued_at: float = field(compare=False)
    queue: str = field(compare=False)
    name: str = field(compare=False)
    func: Callable = field(compare=False)
    args: tuple = field(compare=False)
    seconds: float = field(compare=False)
    attempt: int = field(compare=False, default=1)
    ref: str = field(compare=False, default="")


def _load(at: float) -> float:
    """Traffic by time of day: 0.35 at night, 1.0 mid-afternoon (UTC)."""
    hour = (at % 86400) / 3600
    return 0.675 - 0.325 * math.cos((hour - 3) / 24 * 2 * math.pi)


class World:
    """Plays the jobs of ``[start, until)`` through the instrumentation, in time order."""

    def __init__(
        self,
        tracker: Trackable,
        shipper,
        start: float,
        seed: int = 19,
        outage: tuple[float, float] | None = None,
    ) -> None:
        """``outage``: simulated ``[from, until)`` in which every resource job fails (the
        accounting API's token expired): the spike the demo's monitor alerts on."""
        self.clock = SimClock(start)
        self.outage = outage
        self.tracker = tracker
        self.traces = None
        if shipper is not None:
            # on the simulated clock: block timings and job-log times follow the simulated work
            policy = SamplingPolicy(every=20)
            self.traces = TraceRecorder(shipper, clock=self.clock, policy=policy)
        self.flow = JobFlow(tracker, limited=(TenantLocked,), clock=self.clock)
        self.hook = JobTracker(tracker, "event::job", traces=self.traces, clock=self.clock)
        self.flow.schedule.traces = self.flow.resource.traces = self.traces
        self.flow.cron.traces = self.traces
        self.rng = random.Random(seed)
        self.pending: list[Task] = []
        self.free = {q: [start] * n for q, n in QUEUES.items()}
        self.busy: dict[str, list[tuple[float, float]]] = {q: [] for q in QUEUES}
        self.waits: dict[str, list[tuple[float, float]]] = {q: [] for q in QUEUES}
        hour = start - start % 3600
        due = ((hour + minute * 60, cron) for cron, (minute, _, _) in CRONS.items())
        self.crons = sorted((at + 3600 if at < start else at, cron) for at, cron in due)
        self.next_sample = start - start % SAMPLE_EVERY_S + SAMPLE_EVERY_S
        self.seq = 0
        self.runs = 0
        self.samples = 0
        self._jobs = self._define()

    def index_all(self, on: bool) -> None:
        """Ship an index row for every execution (on) or only for those kept (off)."""
        if self.traces is not None:
            self.traces.policy = dataclasses.replace(self.traces.policy, index_unsampled=on)

    # --- the jobs (plain functions under the real decorators) ---------------------------
    def _define(self) -> dict[str, Callable]:
        flow, world = self.flow, self
        jobs: dict[str, Callable] = {}
        for cron, (_, schedule_name, resource_name) in CRONS.items():

            @flow.resource(name=resource_name, tenant=lambda tenant, item: tenant)
            def resource(tenant: str, item: int, _name: str = resource_name) -> None:
                world._resource(_name, tenant, item)

            @flow.schedule(name=schedule_name, tenant=lambda tenant: tenant)
            def schedule(
                tenant: str, _res: Callable = resource, _name: str = resource_name
            ) -> None:
                world._schedule(_name, _res, tenant)

            @flow.cron(name=cron)
            def cron_job(_sched: Callable = schedule, _name: str = schedule_name) -> None:
                world.work(0.05, 0.3)
                if world.rng.random() < 0.03:
                    raise RuntimeError("tenant list unavailable: settings database read-only")
                for tenant in TENANTS:
                    world.enqueue("default", _name, _sched, (tenant,), 0.2, 2.0)
                    current_run().add_resources(1)

            jobs[cron] = cron_job
        return jobs

    def work(self, low: float, high: float) -> None:
        """The job's own work: simulated seconds."""
        self.clock.advance(self.rng.uniform(low, high))

    def _schedule(self, resource_name: str, resource: Callable, tenant: str) -> None:
        rng = self.rng
        if rng.random() < 0.03:
            self.work(0.01, 0.05)
            raise TenantLocked(f"{tenant}: another scheduler holds the lock")
        if rng.random() < 0.01:
            self.work(0.02, 0.1)  # reading the tenant's settings
            raise ValueError(f"{tenant}: no billing settings for this tenant")
        with trace("Load ready items"):
            self.work(0.1, 1.5)
            count = int(TENANTS[tenant] * _load(self.clock.now) * rng.uniform(0.6, 1.4))
            note(f"{count} items ready for {tenant}")
        with trace("Enqueue resource jobs"):
            for item in range(count):
                self.enqueue("resources", resource_name, resource, (tenant, item), 2.0, 12.0)
                current_run().add_resources(1)

    def _resource(self, name: str, tenant: str, item: int) -> None:
        rng = self.rng
        tag("customer", f"c{item % 7}")
        roll = rng.random()
        with trace("Fetch source"):
            self.work(0.2, 1.5)
            if self.outage is not None and self.outage[0] <= self.clock.now < self.outage[1]:
                raise CredentialsExpired(f"accounting API: 401 token expired ({tenant}/{item})")
            if roll < 0.04:
                raise UpstreamUnavailable(f"accounting API down: 503 for {tenant}/{item}")
            if roll < 0.055:
                raise TimeoutError(f"source for item {item} did not answer within 30s")
        with trace("Apply"):
            self.work(0.5, 4.0)
            if roll < 0.07:
                raise LookupError(f"no source price for item {item} of {tenant}")
        if roll < 0.12:
            return current_run().skip()
        current_run().result(code="OUT_OF_STOCK" if roll < 0.25 else "SYNCED")

    # --- the queue and its workers ------------------------------------------------------
    def enqueue(
        self, queue: str, name: str, func: Callable, args: tuple, low: float, high: float,
        *, attempt: int = 1, at: float | None = None, ref: str = "",
    ) -> Task:  # fmt: skip
        """Put a message on ``queue``; the first free worker takes it (FIFO)."""
        now = self.clock.now if at is None else at
        seconds = self.rng.uniform(low, high)
        free = heapq.heappop(self.free[queue])
        start = max(now, free)
        heapq.heappush(self.free[queue], start + seconds)
        self.seq += 1
        ref = ref or hashlib.blake2b(f"{self.seq}".encode(), digest_size=8).hexdigest()
        task = Task(start, self.seq, now, queue, name, func, args, seconds, attempt, ref)
        heapq.heappush(self.pending, task)
        self.waits[queue].append((now, start))
        self.busy[queue].append((start, start + seconds))
        return task

    def _execute(self, task: Task) -> None:
        """Run one message the way the RQ hook does: the hook's run, adopted by the job."""
        self.clock.now = task.start_at
        hook = self.hook
        run = hook.start(
            task.name, None, due_at=task.enqueued_at, attempt=task.attempt, ref=task.ref,
            args=[list(task.args), {}],
        )  # fmt: skip
        run.entry = tracked_entry(task.func)
        token = ACTIVE_RUN.set(run)
        error: BaseException | None = None
        try:
            task.func(*task.args)
        except Exception as exc:  # the job's failure: tracked, maybe retried
            error = exc
        finally:
            ACTIVE_RUN.reset(token)
        again = isinstance(error, ConnectionError | TimeoutError) and task.attempt <= MAX_RETRIES
        hook.finish(run, error, retrying=again if error is not None else None)
        self.runs += 1
        if again:
            self.enqueue(
                task.queue, task.name, task.func, task.args, 2.0, 12.0,
                attempt=task.attempt + 1, at=self.clock.now + 30 * task.attempt, ref=task.ref,
            )  # fmt: skip

    # --- the clock ----------------------------------------------------------------------
    def run_until(self, until: float, every: Callable[[], None] | None = None) -> int:
        """Play crons, jobs and queue samples due before ``until``; returns the runs played."""
        played = self.runs
        while True:
            due = [(self.crons[0][0], 0), (self.next_sample, 1)]
            if self.pending:
                due.append((self.pending[0].start_at, 2))
            at, kind = min(due)
            if at >= until:
                break
            if kind == 0:
                self._cron(at)
            elif kind == 1:
                self._sample(at)
                if every is not None:
                    every()
            else:
                self._execute(heapq.heappop(self.pending))
        self.clock.now = max(self.clock.now, until)
        return self.runs - played

    def _cron(self, at: float) -> None:
        """The scheduler enqueues the cron due at ``at``; it is due again in an hour."""
        _, cron = heapq.heappop(self.crons)
        self.enqueue("default", cron, self._jobs[cron], (), 0.2, 1.0, at=at)
        heapq.heappush(self.crons, (at + 3600, cron))

    def _sample(self, at: float) -> None:
        """What the sampler would read at ``at``: depth, oldest wait, busy and idle workers."""
        for queue, workers in QUEUES.items():
            waits = self.waits[queue] = [(e, s) for e, s in self.waits[queue] if s > at]
            waiting = [e for e, s in waits if e <= at]
            busy = self.busy[queue] = [(s, e) for s, e in self.busy[queue] if e > at]
            running = sum(1 for s, _ in busy if s <= at)
            oldest = at - min(waiting) if waiting else None
            sample = QueueSample("rq", queue, len(waiting), oldest, running, workers - running, 0)
            keys = [QUEUE_KEY, f"{QUEUE_KEY}::rq::{queue}"]
            self.tracker.track(keys, sample.values(at), at=at, route=keys[-1])
            self.samples += 1
        self.next_sample = at + SAMPLE_EVERY_S
