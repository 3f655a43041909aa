"""Target rates over time: a steady rate with a linear ramp and periodic bursts.

``Schedule.due(t)`` is the exact number of events that should have been produced by ``t``
seconds into the run (the integral of the rate). Producers compare it with what they sent,
so a producer that falls behind catches up instead of drifting, and one that is ahead sleeps.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass


@dataclass(frozen=True)
class RateProfile:
    """``rate`` events/s for ``duration_s``, ramped linearly from 0 over ``ramp_s``;
    ``burst_factor`` times that for ``burst_length_s`` every ``burst_every_s`` seconds."""

    rate: float
    duration_s: float
    ramp_s: float = 0.0
    burst_factor: float = 1.0
    burst_every_s: float = 0.0
    burst_length_s: float = 0.0

    def __post_init__(self) -> None:
        if self.rate <= 0 or self.duration_s <= 0:
            raise ValueError("rate and duration must be positive")
        if self.ramp_s < 0 or self.burst_factor <= 0:
            raise ValueError("ramp must be >= 0 and burst factor > 0")
        if self.bursts and self.burst_length_s >= self.burst_every_s:
            raise ValueError("a burst must be shorter than the period between bursts")

    @property
    def bursts(self) -> bool:
        """True when the profile has bursts."""
        return self.burst_every_s > 0 and self.burst_length_s > 0 and self.burst_factor != 1

    def in_burst(self, t: float) -> bool:
        """True during a burst; the first starts at ``burst_every_s``."""
        return (
            self.bursts and t >= self.burst_every_s and t % self.burst_every_s < self.burst_length_s
        )

    def rate_at(self, t: float) -> float:
        """Target events/s at ``t`` seconds into the run."""
        if t < 0 or t >= self.duration_s:
            return 0.0
        rate = self.rate * (min(1.0, t / self.ramp_s) if self.ramp_s > 0 else 1.0)
        return rate * self.burst_factor if self.in_burst(t) else rate

    def breakpoints(self) -> list[float]:
        """Times where the rate changes slope or jumps, from 0 to the end."""
        points = {0.0, self.duration_s}
        if 0 < self.ramp_s < self.duration_s:
            points.add(self.ramp_s)
        if self.bursts:
            start = self.burst_every_s
            while start < self.duration_s:
                points.add(start)
                points.add(min(start + self.burst_length_s, self.duration_s))
                start += self.burst_every_s
        return sorted(points)


class Schedule:
    """Cumulative target of a profile; the rate is linear between breakpoints, so exact."""

    def __init__(self, profile: RateProfile) -> None:
        self.profile = profile
        self._points = profile.breakpoints()
        self._cumulative = [0.0]
        for a, b in zip(self._points, self._points[1:], strict=False):
            self._cumulative.append(self._cumulative[-1] + self._segment(a, b))

    def _segment(self, a: float, b: float) -> float:
        # The integral of a linear function over [a, b] is its length times the midpoint value.
        return (b - a) * self.profile.rate_at((a + b) / 2)

    @property
    def total(self) -> float:
        """Events due over the whole run."""
        return self._cumulative[-1]

    def due(self, t: float) -> float:
        """Events that should have been produced by ``t`` seconds into the run."""
        if t <= 0:
            return 0.0
        if t >= self.profile.duration_s:
            return self.total
        i = bisect.bisect_right(self._points, t) - 1
        return self._cumulative[i] + self._segment(self._points[i], t)
