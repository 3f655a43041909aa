"""Once a second: events produced, sent and aggregated, consumer lag, CPU and memory.

"Aggregated" is what is visible in ClickHouse: the sum of the marker paths (each workload event
adds exactly 1 to one of them) in the 1m rollups, minus what was there before the run.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from tally.loadtest.fleet import Fleet
from tally.loadtest.lag import LagProbe
from tally.loadtest.pacing import RateProfile
from tally.loadtest.resources import ResourceSampler
from tally.loadtest.scenarios import markers_sql
from tally.schemas.ddl import identifier


@dataclass
class Sample:
    """One row of the run's timeline; cumulative counts, rates derived later."""

    t: float
    target_rate: float
    tracked: int
    sent: int
    aggregated: int | None
    lag_records: int | None
    usage: dict[str, dict[str, float]] = field(default_factory=dict)


def aggregated_events(client, database: str) -> int:
    """Events visible in the minute rollups (sum of the marker paths)."""
    table = f"{identifier(database)}.rollups"
    sql = f"SELECT sum(value) FROM {table} WHERE granularity = '1m' AND {markers_sql()}"
    return int(client.query(sql).result_rows[0][0] or 0)


class Monitor(threading.Thread):
    """Samples until stopped; ``t`` counts from ``origin`` (unix seconds)."""

    def __init__(
        self,
        fleet: Fleet,
        lag: LagProbe | None,
        resources: ResourceSampler,
        clickhouse: Callable[[], object],
        database: str,
        profile: RateProfile,
        origin: float,
        aggregated_before: int = 0,
        period_s: float = 1.0,
        on_sample: Callable[[Sample], None] | None = None,
    ) -> None:
        super().__init__(name="monitor", daemon=True)
        self.fleet = fleet
        self.lag = lag
        self.resources = resources
        self.clickhouse = clickhouse
        self.database = database
        self.profile = profile
        self.origin = origin
        self.aggregated_before = aggregated_before
        self.period_s = period_s
        self.on_sample = on_sample
        self.samples: list[Sample] = []
        self._halt = threading.Event()

    def run(self) -> None:
        client = self.clickhouse()
        next_at = time.monotonic()
        while not self._halt.is_set():
            self.samples.append(self._sample(client))
            if self.on_sample is not None:
                self.on_sample(self.samples[-1])
            next_at += self.period_s
            self._halt.wait(max(0.0, next_at - time.monotonic()))

    def _sample(self, client) -> Sample:
        t = time.time() - self.origin
        counters = self.fleet.counters()
        try:
            aggregated: int | None = aggregated_events(client, self.database)
            aggregated -= self.aggregated_before
        except Exception:
            aggregated = None
        lag = self.lag.lag() if self.lag is not None else None
        return Sample(
            t=round(t, 3),
            target_rate=round(self.profile.rate_at(t), 1),
            tracked=counters.tracked,
            sent=counters.sent_events,
            aggregated=aggregated,
            lag_records=lag,
            usage=self.resources.sample(),
        )

    def latest(self) -> Sample | None:
        """The most recent sample."""
        return self.samples[-1] if self.samples else None

    def stop(self) -> None:
        """Stop sampling (after one last sample)."""
        self._halt.set()
        self.join(30)
