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


def test_the_outage_fails_every_resource_job_in_it_and_executions_keep_the_hook_key():
    shipped = Shipped()
    outage = (START + 3600, START + 2 * 3600)
    world = World(RecordingTracker(), shipped, START, outage=outage)
    world.index_all(True)
    world.run_until(START + 3 * 3600)
    resources = [ex for ex in shipped if ex.key == "event::resource"]
    inside = [ex for ex in resources if outage[0] <= ex.started_us / 1e6 < outage[1]]
    outside = [ex for ex in resources if ex not in inside]
    assert inside and {(ex.state, ex.error) for ex in inside} == {("failure", "CredentialsExpired")}
    assert sum(ex.state == "failure" for ex in outside) < len(outside) / 4
    # filed under the decorators' keys, findable from the hook's (the Jobs dashboard's link)
    assert {ex.hook_key for ex in shipped} == {"event::job"}
    assert {ex.key for ex in shipped} == {"event::cron", "event::schedule", "event::resource"}
