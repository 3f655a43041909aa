"""Which partitions flush now: one at a time, staggered across the (stretched) interval.

Every ``spacing`` seconds (``PacingRule.spacing``) the partition with data that flushed longest
ago flushes, so each one flushes about once per interval and this process's inserts are spread
over it rather than made all at once. Turns that came due during a slow insert are taken
together (at most one round), so a slow ClickHouse gets concurrent inserts as before, never
more of them than the ceiling allows. With nothing to insert, an empty flush still runs once per
configured interval (it refreshes the lag gauges).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence

from aiokafka import TopicPartition

from tally.clickhouse.parts_pressure import PartsPressure
from tally.engine.metrics import EngineMetrics
from tally.engine.pacing import PacingRule

log = logging.getLogger("tally.aggregator")  # the name operators' log queries select

STRETCHED = 1.05  # an interval this much above the configured one counts as paced (logged)
QUIET_S = 60.0  # pacing switching on and off logs at most this often (parts pressure always)


class FlushPacer:
    """Picks the partition whose turn it is; tracks the effective interval and its gauges."""

    def __init__(
        self,
        rule: PacingRule,
        metrics: EngineMetrics,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rule = rule
        self.metrics = metrics
        self.clock = clock
        self.pressure: PartsPressure | None = None
        self.interval = rule.flush_interval_s
        self.next_slot = clock() + rule.flush_interval_s
        self.flushed_at: dict[TopicPartition, float] = {}
        self.cause: str | None = None  # why the interval is stretched, if it is
        self.logged_at = -math.inf
        metrics.flush_interval.set(self.interval)

    def restart(self) -> None:
        """The first slot is one configured interval from now (the loop starts)."""
        self.next_slot = self.clock() + self.rule.flush_interval_s

    def due(self, candidates: Sequence[TopicPartition]) -> list[TopicPartition] | None:
        """The partitions to flush now (``[]``: an empty flush for the gauges), or None."""
        now = self.clock()
        if now < self.next_slot:
            return None
        self._update(len(candidates))
        if not candidates:
            self.next_slot = now + self.rule.flush_interval_s
            return []
        # A token bucket of turns, one per ``spacing``, banking at most one round (``n``): when
        # inserts take longer than the spacing (a busy ClickHouse), the turns that came due
        # meanwhile flush together, concurrently, and the rate stays under the ceiling.
        n = len(candidates)
        spacing = self.rule.spacing(n, self.pressure)
        self.next_slot = max(self.next_slot, now - (n - 1) * spacing)
        turns = min(n, 1 + int((now - self.next_slot) / spacing))
        self.next_slot += turns * spacing
        oldest = sorted(candidates, key=lambda tp: self.flushed_at.get(tp, -math.inf))
        return oldest[:turns]

    def flushed(self, tps: Sequence[TopicPartition]) -> None:
        """Record a flush of ``tps`` (paced, forced by a bound, or on revoke)."""
        now = self.clock()
        for tp in tps:
            self.flushed_at[tp] = now

    def observe(self, pressure: PartsPressure) -> None:
        """A new reading of the parts pressure (``PressureWatch``)."""
        self.pressure = pressure
        m = self.metrics
        m.parts_active_max.set(pressure.max_active_parts)
        m.parts_pressure.set(round(pressure.ratio, 4))
        m.merges_running.set(pressure.merges)

    def _update(self, flushing: int) -> None:
        """The effective interval for ``flushing`` partitions; log when pacing starts, ends or
        changes cause (the insert ceiling, then parts pressure)."""
        rule, pressure = self.rule, self.pressure
        self.interval = rule.interval(flushing, pressure)
        self.metrics.flush_interval.set(round(self.interval, 3))
        cause = None
        if self.interval > rule.flush_interval_s * STRETCHED:
            by_parts = self.interval > rule.budget_interval(flushing) * STRETCHED
            cause = "parts pressure" if by_parts else "insert ceiling"
        if cause == self.cause:
            return
        self.cause = cause
        now = self.clock()
        if cause != "parts pressure" and now - self.logged_at < QUIET_S:
            return  # a partition count hovering at the ceiling: the gauge shows it
        self.logged_at = now
        if cause is None:
            log.info("flush pacing off: interval back to %.1f s", self.interval)
            return
        seen = (
            ""
            if pressure is None
            else f"; fullest partition {pressure.max_active_parts} of"
            f" {pressure.parts_to_delay_insert} parts, {pressure.merges} merges"
        )
        log.info(
            "flush pacing on (%s): interval %.1f s instead of %.1f s (%d partitions to flush,"
            " ceiling %.2f inserts/s%s)",
            cause,
            self.interval,
            rule.flush_interval_s,
            flushing,
            rule.max_inserts_per_s,
            seen,
            extra={"interval_s": round(self.interval, 3), "partitions": flushing},
        )
