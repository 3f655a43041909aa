"""What one look at a queue finds."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class QueueSample:
    """One queue at one instant. ``None``: the framework does not expose it in Redis."""

    framework: str
    queue: str
    depth: int
    oldest_age_s: float | None = None
    busy: int | None = None
    idle: int | None = None
    stalled: int | None = None

    def values(self, at: float) -> dict:
        """The gauges of this sample for ``Tracker.track`` (``gauge()`` leaves)."""
        from tally.ingest.kinds import gauge

        out: dict = {"depth": gauge(self.depth, at), "sampled_at": gauge(at, at)}
        if self.oldest_age_s is not None:
            out["oldest_age_s"] = gauge(round(self.oldest_age_s, 3), at)
        workers = {
            name: gauge(value, at)
            for name, value in (("busy", self.busy), ("idle", self.idle), ("stalled", self.stalled))
            if value is not None
        }
        if workers:
            out["workers"] = workers
        return out
