"""The pacing rule: how long a flush interval stretches for an insert ceiling and parts pressure.

Each owned partition with data flushes its own insert once per interval, so one process makes
``partitions / interval`` inserts per second. ``PacingRule.interval`` stretches the configured
interval until that stays under ``max_inserts_per_s``, then further, linearly, as the fullest
partition's active parts go from ``PRESSURE_FROM`` of ``parts_to_delay_insert`` to all of it,
where the interval reaches ``max_flush_interval_s``. Nothing else changes: each partition still
flushes its own range under its own token.
"""

from __future__ import annotations

from dataclasses import dataclass

from tally.clickhouse.parts_pressure import PartsPressure
from tally.engine.protocols import EngineSettings

# Share of ``parts_to_delay_insert`` at which parts pressure starts stretching the interval: the
# fullest partition stayed at or below 163 of 1000 in every loadtest so far (BENCHMARKS.md,
# "Many partitions"), so a healthy table never gets there.
PRESSURE_FROM = 0.25


@dataclass(frozen=True, slots=True)
class PacingRule:
    """The configured interval, the insert ceiling (0: none) and the longest interval."""

    flush_interval_s: float
    max_inserts_per_s: float
    max_flush_interval_s: float
    pressure_from: float = PRESSURE_FROM

    @property
    def longest(self) -> float:
        """The bound on any stretch (never below the configured interval)."""
        return max(self.max_flush_interval_s, self.flush_interval_s)

    def budget_interval(self, flushing: int) -> float:
        """The interval at which ``flushing`` partitions stay under the ceiling (bounded)."""
        paced = self.flush_interval_s
        if self.max_inserts_per_s > 0:
            paced = max(paced, flushing / self.max_inserts_per_s)
        return min(paced, self.longest)

    def pressure_share(self, pressure: PartsPressure | None) -> float:
        """0 below ``pressure_from`` of the delay threshold, 1 at it, linear between."""
        if pressure is None or self.pressure_from >= 1:
            return 0.0
        share = (pressure.ratio - self.pressure_from) / (1 - self.pressure_from)
        return min(1.0, max(0.0, share))

    def interval(self, flushing: int, pressure: PartsPressure | None = None) -> float:
        """Seconds between two flushes of one partition, with ``flushing`` partitions to flush."""
        paced = self.budget_interval(flushing)
        return paced + (self.longest - paced) * self.pressure_share(pressure)

    def spacing(self, flushing: int, pressure: PartsPressure | None = None) -> float:
        """Seconds between two inserts of this process: the interval shared by its partitions."""
        return self.interval(flushing, pressure) / max(1, flushing)


def pacing_rule(settings: EngineSettings) -> PacingRule:
    """The rule an engine's settings configure."""
    return PacingRule(
        flush_interval_s=settings.flush_interval_s,
        max_inserts_per_s=settings.max_inserts_per_s,
        max_flush_interval_s=settings.max_flush_interval_s,
    )
