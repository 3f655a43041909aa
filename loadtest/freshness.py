"""End-to-end freshness: how long from ``track()`` until the event is visible in the 1m rollup.

Method: a probe thread tracks one event every ``interval_s`` through its own ``Tracker``
(default client settings, so the client's linger is included), each to the run's probe key with
a path no other event has (``probe.s<seq>``) and a routing key of its own, so probes land on
every partition and queue behind the load like any event. The thread polls the
``rollups_1m`` view every ``poll_s`` for the probe paths present. A probe's freshness is the
time of the first poll that saw its path minus the wall time of its ``track`` call: an upper
bound, at most one poll interval (plus the query's own latency) above the true value.
"""

from __future__ import annotations

import math
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from tally.ingest import ClientSettings, Tracker
from tally.loadtest.scenarios import PROBE_KEY
from tally.loadtest.trackers import close_in_background
from tally.schemas.ddl import identifier


@dataclass
class Probe:
    """One probe event: when it was tracked and when it was first seen (unix seconds)."""

    seq: int
    tracked_at: float
    visible_at: float | None = None

    @property
    def freshness_s(self) -> float | None:
        """Seconds from track to visible, or None if never seen."""
        return None if self.visible_at is None else self.visible_at - self.tracked_at


@dataclass(frozen=True)
class FreshnessSummary:
    """Percentiles over the probes sent during the load."""

    method: str
    probes: int
    visible: int
    p50_s: float | None
    p99_s: float | None
    max_s: float | None
    mean_s: float | None
    interval_s: float
    poll_s: float


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank ``q`` quantile (0..1] of sorted ``values``; None for no values."""
    if not values:
        return None
    return values[max(0, math.ceil(q * len(values)) - 1)]


class FreshnessProbe(threading.Thread):
    """Tracks probes while ``sending``; polls until every probe is seen or ``stop`` is called."""

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        clickhouse: Callable[[], object],
        database: str = "tally",
        interval_s: float = 0.25,
        poll_s: float = 0.1,
        key: str = PROBE_KEY,
    ) -> None:
        super().__init__(name="freshness", daemon=True)
        self.key = key  # one per run: paths of an earlier run must not count as seen
        self.settings = ClientSettings(bootstrap_servers=bootstrap, topic=topic, source="probe")
        self.clickhouse = clickhouse
        self.database = identifier(database)  # formatted into SQL below
        self.interval_s = interval_s
        self.poll_s = poll_s
        self.probes: list[Probe] = []
        self.sending = threading.Event()
        self._halt = threading.Event()
        self.errors = 0

    def run(self) -> None:
        tracker = Tracker(self.settings)
        client = self.clickhouse()
        sql = f"SELECT DISTINCT path FROM {self.database}.rollups_1m WHERE key = {{key:String}}"
        waiting: dict[str, Probe] = {}
        next_probe = time.time()
        try:
            while not self._halt.is_set():
                now = time.time()
                if self.sending.is_set() and now >= next_probe:
                    probe = Probe(len(self.probes) + 1, now)
                    path = f"s{probe.seq}"
                    tracker.track(self.key, {"probe": {path: 1}}, at=now, route=f"probe-{path}")
                    self.probes.append(probe)
                    waiting[f"probe.{path}"] = probe
                    next_probe = max(next_probe + self.interval_s, now)
                if waiting:
                    asked = time.time()
                    try:
                        rows = client.query(sql, parameters={"key": self.key}).result_rows
                    except Exception:
                        self.errors += 1
                        rows = []
                    for (path,) in rows:
                        found = waiting.pop(path, None)
                        if found is not None:
                            found.visible_at = asked
                self._halt.wait(self.poll_s)
        finally:
            close_in_background(tracker)

    def outstanding(self) -> int:
        """Probes tracked but not yet seen."""
        return sum(1 for p in self.probes if p.visible_at is None)

    def stop(self) -> None:
        """Stop polling and close the probe's tracker."""
        self._halt.set()
        self.join(30)

    def summary(self, until: float | None = None) -> FreshnessSummary:
        """Percentiles over probes tracked before ``until`` (unix seconds; default: all)."""
        probes = [p for p in self.probes if until is None or p.tracked_at <= until]
        seen = sorted(p.freshness_s for p in probes if p.freshness_s is not None)
        # Probes never seen count as infinitely late, so they can only raise the percentiles.
        ranked = seen + [math.inf] * (len(probes) - len(seen))

        def rounded(x: float | None) -> float | None:
            return None if x is None or math.isinf(x) else round(x, 3)

        return FreshnessSummary(
            method=(
                f"probe event every {self.interval_s}s on its own path, polled in "
                f"{self.database}.rollups_1m every {self.poll_s}s (upper bound)"
            ),
            probes=len(probes),
            visible=len(seen),
            p50_s=rounded(percentile(ranked, 0.5)),
            p99_s=rounded(percentile(ranked, 0.99)),
            max_s=rounded(seen[-1] if seen else None),
            mean_s=rounded(statistics.fmean(seen) if seen else None),
            interval_s=self.interval_s,
            poll_s=self.poll_s,
        )
