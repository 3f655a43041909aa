"""When to flush: the paced interval, and the row and memory bounds of what ranges hold."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping

from aiokafka import TopicPartition

from tally.engine.metrics import EngineMetrics
from tally.engine.pacer import FlushPacer
from tally.engine.partitions import PartitionState
from tally.engine.protocols import EngineSettings


class FlushBudget:
    """What live (not replaying) ranges hold, against ``flush_rows`` and ``max_fold_bytes``;
    which partitions are due (``pacer``: staggered, else all of them every interval)."""

    def __init__(
        self, settings: EngineSettings, metrics: EngineMetrics, pacer: FlushPacer | None = None
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self.pacer = pacer
        self.next_flush = 0.0
        self.entries = 0
        self.nbytes = 0

    def restart_interval(self) -> None:
        """The next timed flush is one interval from now."""
        self.next_flush = time.monotonic() + self.settings.flush_interval_s
        if self.pacer is not None:
            self.pacer.restart()

    def flushing(self, tps: Iterable[TopicPartition]) -> None:
        """A flush of ``tps`` starts (the unpaced interval restarts; the pacer notes them)."""
        self.next_flush = time.monotonic() + self.settings.flush_interval_s
        if self.pacer is not None:
            self.pacer.flushed(list(tps))

    def grow(self, entries: int, nbytes: int) -> bool:
        """Track what live ranges hold; True when over ``flush_rows`` or ``max_fold_bytes``."""
        self.entries += entries
        self.nbytes += nbytes
        return self.over()

    def over(self) -> bool:
        """True when what live ranges hold reaches ``flush_rows`` or ``max_fold_bytes``."""
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

    def due(self, states: Mapping[TopicPartition, PartitionState]) -> list[TopicPartition] | None:
        """The partitions to flush now (after ``recount``): all of them when a bound is
        reached; else the pacer's turn, or all of them once the interval is over; else None."""
        if self.over():
            return list(states)
        if self.pacer is not None:
            return self.pacer.due([tp for tp, s in states.items() if s.flushable()])
        return list(states) if time.monotonic() >= self.next_flush else None
