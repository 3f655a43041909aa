"""The monitor service: on each tick, judge every monitor's newest durable buckets and store
state, history and the outbox in ClickHouse; deliveries run beside it (:mod:`dispatch`), so
evaluation never waits for a receiver.

A monitor is judged on its granularity's boundaries: bucket ``[t, t+g)`` is judged once the
watermark says it is durable (never by the wall clock alone), in order, each bucket once. After
downtime the service catches up (at most ``max_catch_up`` buckets per monitor); on a first
start it judges only the newest durable bucket.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tally.monitors.dispatch import Dispatcher
from tally.monitors.engine import Notice, advance, buckets_of
from tally.monitors.evaluate import Frames, Segment, frames
from tally.monitors.files import WatchedFiles
from tally.monitors.lease import AlwaysHeld, Lease
from tally.monitors.loader import load_text, merge
from tally.monitors.metrics import MonitorMetrics
from tally.monitors.notify import Notifier
from tally.monitors.source import fetch
from tally.monitors.spec import Monitor, MonitorFile
from tally.monitors.state import AlertState
from tally.monitors.store import Store
from tally.monitors.watermark import Watermark
from tally.read import AsyncReader

log = logging.getLogger("tally.monitors")


@dataclass
class TickResult:
    """What one tick did (for tests, the status line and benchmarks)."""

    judged: dict[str, int] = field(default_factory=dict)  # monitor -> buckets judged
    segments: int = 0
    notices: list[Notice] = field(default_factory=list)
    delivered: int = 0
    failed: int = 0
    held: bool = True
    errors: list[str] = field(default_factory=list)
    now: float = 0.0


@dataclass
class MonitorService:
    """Wire the parts; ``run`` evaluates every ``tick_s`` and delivers beside it until stopped;
    ``tick(now)`` is one evaluation followed by a delivery pass it waits for (tests, bench)."""

    paths: list[Path]
    reader: AsyncReader
    store: Store
    watermark: Watermark
    notifier: Notifier
    lease: Lease | AlwaysHeld = field(default_factory=AlwaysHeld)
    base_url: str = ""
    tick_s: float = 5.0
    max_catch_up: int = 120
    clock: Callable[[], float] = time.time
    metrics: MonitorMetrics = field(default_factory=MonitorMetrics)
    metrics_port: int | None = None  # serve /metrics there (0: a free port)
    metrics_host: str = "127.0.0.1"
    budget_s: float = 60.0  # one delivery, all its attempts
    definitions: MonitorFile = field(default_factory=MonitorFile)
    files: WatchedFiles = field(init=False)
    dispatcher: Dispatcher = field(init=False)
    _states: dict[str, dict[Segment, AlertState]] = field(default_factory=dict)
    _held: bool = False

    def __post_init__(self) -> None:
        self.files = WatchedFiles(list(self.paths), load_text)
        self.dispatcher = Dispatcher(
            self.store, self.notifier, self.lease, self.metrics, self.budget_s
        )

    async def start(self) -> None:
        await self.store.start()
        await self.lease.start()
        self.reload()
        if self.metrics_port is not None:
            self.metrics_port = await self.metrics.serve(self.metrics_port, self.metrics_host)
            log.info("metrics on http://%s:%d/metrics", self.metrics_host, self.metrics_port)

    async def close(self) -> None:
        await self.dispatcher.close()
        await self.metrics.close()
        for part in (self.lease, self.watermark, self.notifier, self.store, self.reader):
            try:
                await part.close()
            except Exception as exc:  # closing everything matters more than one error
                log.warning("closing %s: %s", type(part).__name__, exc)

    def reload(self) -> bool:
        """Reload the definitions if a file changed; a broken file costs only itself (its
        ``file:line`` errors are logged, as are channels unusable in the notifier's
        environment) and is read again once it changes."""
        files = self.files.refresh()
        if files is None:
            return False
        before = {m.name for m in self.definitions.monitors}
        self.definitions = merge(files, self.notifier.env)
        for gone in before - {m.name for m in self.definitions.monitors}:
            with contextlib.suppress(KeyError):
                self.metrics.evaluation_lag.remove(gone)
        for error in self.definitions.errors:
            log.error("monitor definition: %s", error)
        self.notifier.channels = self.definitions.channels
        log.info("loaded %d monitors", len(self.definitions.monitors))
        return True

    async def tick(self, now: float | None = None) -> TickResult:
        """One evaluation, the reports due, then a delivery pass, waiting for all of it."""
        result = await self.evaluate(now)
        if result.held:
            await self.send_reports(result.now, result)
            outcome = await self.dispatcher.drain()
            result.delivered, result.failed = outcome.delivered, outcome.failed
        return result

    async def evaluate(self, now: float | None = None) -> TickResult:
        """Judge every monitor's new durable buckets and store the outcome (no delivery)."""
        started = time.monotonic()
        now = self.clock() if now is None else now
        result = TickResult(now=now)
        self.reload()
        held = await self.lease.held()
        result.held = held
        if not held:
            if self._held:
                log.warning("lease lost: another replica evaluates")
            self._held = False
            return result
        if not self._held:
            log.info("lease held: this replica evaluates")
            self._states.clear()  # another replica may have advanced: read state afresh
            self._held = True
        await self.watermark.refresh()
        for monitor in self.definitions.monitors:
            try:
                await self._evaluate(monitor, now, result)
                await self._observe_lag(monitor, now)
            except Exception as exc:
                log.exception("monitor %s failed", monitor.name)
                result.errors.append(f"{monitor.name}: {exc}")
        self.metrics.evaluations.inc()
        self.metrics.evaluation_seconds.observe(time.monotonic() - started)
        return result

    async def _observe_lag(self, monitor: Monitor, now: float) -> None:
        last = max((s.last_bucket for s in self._states.get(monitor.name, {}).values()), default=0)
        if last:
            clock = buckets_of(monitor, (await self.reader.schema()).calendar)
            self.metrics.evaluation_lag.labels(monitor.name).set(now - clock.next(last))

    async def _reports(self, now: float) -> None:
        try:
            await self.send_reports(now, TickResult(now=now))
        except Exception:
            log.exception("sending reports failed; retrying next tick")

    async def send_reports(self, now: float, result: TickResult) -> None:
        """Send each report once per period, once its last bucket is durable."""
        from tally.monitors import report as reports

        for definition in self.definitions.reports:
            _, end = reports.period(definition, now)
            if not await self.watermark.durable(end, now):
                continue
            done = await self.store.report_sent(definition.name, end)
            todo = [c for c in definition.notify if c not in done]
            if not todo:
                continue
            try:
                digest = await reports.build(self.reader, definition, now)
            except Exception as exc:
                result.errors.append(f"report {definition.name}: {exc}")
                continue
            for channel in todo:
                error = ""
                try:
                    if channel in self.notifier.channels:
                        await reports.send(digest, self.notifier.channels[channel],
                                           self.notifier.env)  # fmt: skip
                    else:
                        log.warning("%s", digest.text().replace("\n", " | "))
                except Exception as exc:
                    error = f"{type(exc).__name__}: {exc}"
                    log.error("report %s to %s failed: %s", definition.name, channel, error)
                status = "failed" if error else "delivered"
                await self.store.mark_report(definition.name, end, channel, status, error)

    async def _newest_durable(self, monitor: Monitor, now: float) -> int | None:
        clock = buckets_of(monitor, (await self.reader.schema()).calendar)
        newest = clock.prev(clock.floor(int(now)))
        if await self.watermark.durable(clock.next(newest), now):
            return newest  # the usual case: one lookup
        # Durability is monotone in time (offsets only grow): binary search the newest durable
        # bucket among the last ``max_catch_up``, a handful of lookups even while an
        # aggregator is down. starts[k] is k buckets before newest and ends at starts[k - 1].
        starts = [newest]
        for _ in range(self.max_catch_up - 1):
            starts.append(clock.prev(starts[-1]))
        lo, hi = 1, self.max_catch_up - 1
        if not await self.watermark.durable(starts[hi - 1], now):
            return None
        while lo < hi:
            k = (lo + hi) // 2
            if await self.watermark.durable(starts[k - 1], now):
                hi = k
            else:
                lo = k + 1
        return starts[lo]

    async def _evaluate(self, monitor: Monitor, now: float, result: TickResult) -> None:
        newest = await self._newest_durable(monitor, now)
        if newest is None:
            return
        calendar = (await self.reader.schema()).calendar
        clock = buckets_of(monitor, calendar)
        states = self._states.get(monitor.name)
        if states is None:
            states = self._states[monitor.name] = await self.store.states(monitor.name)
        last = max((s.last_bucket for s in states.values()), default=0)
        first = newest if last == 0 else clock.next(last)
        first = max(first, clock.back(newest, self.max_catch_up - 1))
        if first > newest:
            return
        buckets = clock.span(clock.back(first, monitor.history), newest)
        error = ""
        try:
            fetched = await fetch(self.reader, monitor, buckets, clock.next(newest))
            framed = frames(monitor, fetched, states.keys())
        except Exception as exc:
            error = f"{type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}"
            log.error("monitor %s: reading failed: %s", monitor.name, error)
            framed = Frames(buckets, {})
            if not states:
                states = {Segment("", monitor.key): AlertState()}
        step = advance(monitor, framed, states, monitor.history, self.base_url, error, calendar)
        changed = [s for s, st in step.states.items() if states.get(s) != st]
        notices = [] if monitor.paused else step.notices
        if not await self.lease.held():
            log.warning("lost the lease before saving %s; another replica takes over", monitor.name)
            self._held = False
            return
        channels = {monitor.name: monitor.notify}
        await self.store.save(
            monitor.name, step.states, changed, step.transitions, notices, channels
        )
        self._states[monitor.name] = step.states
        result.judged[monitor.name] = len(buckets) - monitor.history
        result.segments += len(step.states)
        result.notices.extend(notices)

    async def run(self, stop: asyncio.Event) -> None:
        """Evaluate every ``tick_s`` until ``stop`` is set; deliveries and reports run beside
        the evaluations and never hold them up."""
        wake = asyncio.Event()
        deliveries = asyncio.create_task(self.dispatcher.run(stop, wake, self.tick_s))
        reports: asyncio.Task[None] | None = None
        try:
            while not stop.is_set():
                started = time.monotonic()
                try:
                    result = await self.evaluate()
                    if result.notices:
                        wake.set()
                    if result.held and (reports is None or reports.done()):
                        reports = asyncio.create_task(self._reports(result.now))
                except Exception:
                    log.exception("monitor tick failed; retrying next tick")
                delay = max(0.0, self.tick_s - (time.monotonic() - started))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)
        finally:
            stop.set()
            for task in (deliveries, reports):
                if task is not None:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await task
