"""Values that are not summed: distribution samples (``dist``) and gauges (``gauge``).

``tracker.track(keys, {"duration": dist(ms), "depth": gauge(42)})``:

- ``dist(v)`` is one sample of a distribution; ``Dist.of(samples)`` pre-aggregates many on
  the client (one event, the same sketch the aggregator would build). A distribution at path
  ``P`` stores a sketch at ``P`` (quantiles with relative error 1%, min, max) and the counters
  ``P.count``, ``P.sum`` and ``P.square`` (so mean and stddev work as for summed values).
- ``gauge(v, at=None)`` is a value that is *set*: per bucket the last one by event time
  (``at``, milliseconds, default now; ties go to the larger value), plus min and max.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from tally.schemas.sketch import buckets_of, sample_problem


@dataclass(frozen=True, slots=True)
class Dist:
    """A distribution's samples, already bucketed: what one event carries for one path."""

    count: int
    total: float
    square: float
    vmin: float
    vmax: float
    buckets: dict[int, int] = field(default_factory=dict)
    problem: str | None = None  # why these samples are invalid (the event is then rejected)

    @classmethod
    def of(cls, samples: Iterable[float]) -> Dist:
        """Pre-aggregate ``samples`` (each must be 0 or in the sketch range)."""
        values = list(samples)
        if not values:
            return cls(0, 0.0, 0.0, 0.0, 0.0, {}, "empty_distribution")
        for v in values:
            problem = sample_problem(v)
            if problem:
                return cls(0, 0.0, 0.0, 0.0, 0.0, {}, problem)
        floats = [float(v) for v in values]
        return cls(
            len(floats),
            math.fsum(floats),
            math.fsum(v * v for v in floats),
            min(floats),
            max(floats),
            buckets_of(floats),
        )


def dist(value: float) -> Dist:
    """One sample of a distribution, e.g. ``{"duration": dist(ms)}``."""
    problem = sample_problem(value)
    if problem:
        return Dist(0, 0.0, 0.0, 0.0, 0.0, {}, problem)
    v = float(value)
    return Dist(1, v, v * v, v, v, buckets_of((v,)))


@dataclass(frozen=True, slots=True)
class Gauge:
    """A value that is set: the last one per bucket by ``at_ms`` wins; min and max are kept."""

    value: float
    at_ms: int | None


def gauge(value: float, at: datetime | float | None = None) -> Gauge:
    """A gauge reading, timestamped now unless ``at`` (aware datetime or unix seconds)."""
    if at is None:
        at_ms = time.time_ns() // 1_000_000
    elif isinstance(at, datetime):
        at_ms = round(at.timestamp() * 1000) if at.tzinfo is not None else None
    else:
        at_ms = round(float(at) * 1000)
    return Gauge(value, at_ms)


def heartbeat(at: datetime | float | None = None) -> Gauge:
    """ "Last seen at": a gauge of the time itself (unix seconds)."""
    reading = gauge(0.0, at)
    return Gauge((reading.at_ms or 0) / 1000, reading.at_ms)
