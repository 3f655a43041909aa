"""Load-test scenarios: which of the seeds' job kinds, at what cardinality, from which pool.

A producer does not generate events on its hot path (the generator costs ~15 µs an event,
more than ``track`` itself). It draws a pool of templates once from ``Workload`` and replays
them in order, stamping each with the current time. With a pool of tens of thousands of
templates every product, customer, reseller and tenant of the cardinality is touched, in the
generator's proportions, and the expected totals are a count per template per minute.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from tally.loadtest.workloads import CALC_KEY, REFRESH_KEY, Cardinality, TrackedEvent, Workload

# Weights of (calculation, refresh, cron/schedule) events.
MIXES: Mapping[str, tuple[int, int, int]] = {
    "mixed": (90, 6, 4),
    "calculations": (100, 0, 0),
    "refresh": (0, 100, 0),
    "scheduling": (0, 0, 100),
}

# Every workload event adds exactly 1 to exactly one of these (key, path) pairs, so their sum
# in the rollups is the number of events aggregated.
EVENT_MARKERS: tuple[tuple[str, str], ...] = (
    (CALC_KEY, "count"),
    (REFRESH_KEY, "count"),
    ("event::cron", "total.count"),
    ("event::schedule", "total.count"),
)

# Keys the load test itself writes (warm-up, freshness probes); excluded from exactness.
INTERNAL_PREFIX = "loadtest::"
WARMUP_KEY = INTERNAL_PREFIX + "warmup"
PROBE_KEY = INTERNAL_PREFIX + "probe"


@dataclass(frozen=True)
class Scenario:
    """A named job mix at a cardinality; ``pool`` templates per producer process."""

    name: str = "mixed"
    cardinality: Cardinality = field(default_factory=Cardinality)
    pool: int = 50_000
    seed: int = 7

    def __post_init__(self) -> None:
        if self.name not in MIXES:
            raise ValueError(f"scenario must be one of {sorted(MIXES)}, not {self.name!r}")
        if self.pool < 1:
            raise ValueError("pool must be at least 1")

    @property
    def mix(self) -> tuple[int, int, int]:
        """Weights of calculation, refresh and cron/schedule events."""
        return MIXES[self.name]

    def templates(self, producer: int) -> list[TrackedEvent]:
        """The pool producer ``producer`` replays (deterministic for seed and index)."""
        workload = Workload(self.cardinality, seed=self.seed * 1_000 + producer, mix=self.mix)
        return list(workload.events(self.pool, 0, 0))


def scaled(values: Mapping[str, object], factor: int) -> dict:
    """``values`` with every numeric leaf multiplied by ``factor`` (same nesting)."""
    return {
        name: scaled(value, factor) if isinstance(value, Mapping) else value * factor  # type: ignore[operator]
        for name, value in values.items()
    }


def markers_sql() -> str:
    """A WHERE condition selecting the marker (key, path) pairs (constants, no user input)."""
    pairs = ", ".join(f"('{key}', '{path}')" for key, path in EVENT_MARKERS)
    return f"(key, path) IN ({pairs})"
