"""The demo world without services: its traces run on the simulated clock."""

from __future__ import annotations

from tally.ingest.jobs.testing import RecordingTracker
from tally.loadtest.demo_world import World
from tally.traces.model import BLOCK, Execution

START = 1_796_000_400.0  # a Monday, 00:00:00 + 400 s (UTC)


class Shipped(list):
    def ship(self, execution: Execution) -> bool:
        self.append(execution)
        return True


def test_trace_blocks_and_the_job_log_carry_simulated_time():
    shipped = Shipped()
    world = World(RecordingTracker(), shipped, START)
    world.index_all(True)
    assert world.run_until(START + 3 * 3600) > 50
    blocks = [line for ex in shipped for line in ex.lines if line.kind == BLOCK]
    fetch = [line for line in blocks if line.name == "Fetch source"]
    assert fetch, "no sampled resource execution"
    # the world's "Fetch source" takes 0.2-1.5 simulated seconds (less when it fails early)
    assert all(200_000 <= line.duration_us <= 1_500_001 for line in fetch), fetch[:3]
    for ex in shipped:
        assert ex.duration_us > 0, ex  # every job does simulated work, failures included
        assert START <= ex.started_us / 1e6 < START + 4 * 3600
        assert ex.events[0].at_us == ex.started_us
        assert ex.events[-1].at_us == ex.started_us + ex.duration_us
        assert all(line.offset_us + line.duration_us <= ex.duration_us for line in ex.lines)
