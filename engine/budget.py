"""When to flush: the flush interval, and the row and memory bounds of what ranges hold."""

from __future__ import annotations

import time
from collections.abc import Iterable

from tally.engine.metrics import EngineMetrics
from tally.engine.partitions import PartitionState
from tally.engine.protocols import EngineSettings


class FlushBudget:
    """What live (not replaying) ranges hold, against ``flush_rows`` and ``max_fold_bytes``."""

    def __init__(self, settings: EngineSettings, metrics: EngineMetrics) -> None:
        self.settings = settings
        self.metrics = metrics
        self.next_flush = 0.0
        self.entries = 0
        self.nbytes = 0

    def restart_interval(self) -> None:
        """The next timed flush is one interval from now."""
        self.next_flush = time.monotonic() + self.settings.flush_interval_s

    def grow(self, entries: int, nbytes: int) -> bool:
        """Track what live ranges hold; True when over ``flush_rows`` or ``max_fold_bytes``."""
        self.entries += entries
        self.nbytes += nbytes
        s = self.settings
        return self.entries >= s.flush_rows or self.nbytes >= s.max_fold_bytes

    def recount(self, states: Iterable[PartitionState], letters: int) -> None:
        """Recompute what live ranges hold (replays are bounded by their range) plus the
        ``letters`` bytes of unacknowledged dead letters; update the gauges."""
        every = list(states)
        live = [s for s in every if s.replay is None]
        self.entries = sum(len(s.fold) for s in live)
        self.nbytes = sum(s.fold.nbytes for s in live) + letters
        self.metrics.fold_entries.set(sum(len(s.fold) for s in every))
        self.metrics.fold_bytes.set(sum(s.fold.nbytes for s in every) + letters)

    def due(self) -> bool:
        """True when a bound is reached or the interval is over (after ``recount``)."""
        s = self.settings
        over = self.entries >= s.flush_rows or self.nbytes >= s.max_fold_bytes
        return over or time.monotonic() >= self.next_flush
