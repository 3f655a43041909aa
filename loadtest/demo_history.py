"""The demo's history in stretches: the last day first, so the 24h dashboards fill first.

The demo world is a simulation in time order, so one world plays one stretch of time. The
week is cut in two stretches with their own worlds: the last 25 hours (played first; that
world then goes on live) and the days before them (played next). Both run through the same
instrumentation at the same rate; the seam loses only the few jobs still queued when the
older stretch ends. (Playing the older stretch in a second process at the same time was
measured slower on 2 cores: the generator is not the bottleneck, ClickHouse's inserts are,
and the interleaved streams made more parts; see BENCHMARKS.md.)
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from tally.ingest import Tracker
from tally.loadtest.demo_world import World
from tally.loadtest.exactness import Expected
from tally.traces.transport import TraceShipper

GRANULARITIES = ("1m", "1h", "1d")
TRACE_FLUSH_EVERY = 720  # simulated minutes: keep the trace buffer (20,000 executions) from filling


@dataclass(frozen=True)
class Stretch:
    """Play ``[start, until)``; executions from ``index_from`` on each get an index row."""

    start: float
    index_from: float
    until: float


class CountingTracker:
    """The client, counting every job run it is given (``total.count``) for the final check."""

    def __init__(self, tracker: Tracker, expected: Expected) -> None:
        self.tracker = tracker
        self.expected = expected

    def track(self, keys: Any, values: Any, at: Any = None, route: str | None = None) -> bool:
        return self.tracker.track(keys, values, at=at, route=route)

    def track_flat(self, keys: Any, paths: tuple[str, ...], numbers: list, **kw: Any) -> bool:
        if "total.count" in paths:
            keys = (keys,) if isinstance(keys, str) else tuple(keys)
            self.expected.add_raw(keys, {"total": {"count": 1}}, int(kw.get("at") or time.time()))
        return self.tracker.track_flat(keys, paths, numbers, **kw)

    def flush(self, timeout: float) -> bool:
        return self.tracker.flush(timeout)

    def close(self) -> None:
        self.tracker.close()


def play_world(world: World, shipper: TraceShipper, stretch: Stretch) -> int:
    """Play ``stretch`` in ``world``; returns the runs played."""
    ticks = [0]

    def every_sim_minute() -> None:
        ticks[0] += 1
        if ticks[0] % TRACE_FLUSH_EVERY == 0:
            shipper.flush(60)

    world.index_all(False)
    runs = world.run_until(stretch.index_from, every_sim_minute)
    world.index_all(True)
    return runs + world.run_until(stretch.until, every_sim_minute)
