"""ClickHouse paused (SIGSTOP) mid-insert, an aggregator killed meanwhile, then ClickHouse killed
(SIGKILL) and restarted on the same data path: the surviving aggregator replays the dead one's
ranges against the restarted server, and every total stays exact.

The dead aggregator's inserts were in flight while the server was paused: they land once it
resumes, but nobody hears the answer, so their intents stay pending. The survivor replays them
under the same tokens after ClickHouse restarted; ClickHouse must drop them as duplicates. Before
the fix it did not: the aggregator's start ran ``ALTER TABLE ... MODIFY QUERY`` on the views,
which changes the ids ClickHouse 26.9 gives the views' blocks until the server restarts (it then
loads the views from disk), so the replay counted the ranges twice (observation 1 of the issue).
"""

from __future__ import annotations

import os
import signal
import time

import pytest

from tally.embedded.clickhouse.process import start_clickhouse
from tally.ingest import ClientSettings, Tracker
from tally.loadtest.exactness import Expected, compare, fetch_totals
from tally.schemas.access import access_model
from tally.schemas.granularity import Calendar

from .conftest import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.faults]

KEYS = 24  # spread over every partition


def track(tracker: Tracker, expected: Expected, count: int, tag: str) -> None:
    now = int(time.time())
    for i in range(count):
        keys = ("jobs", f"jobs::{tag}{i % KEYS}")
        values = {"count": 1, "v": i % 11}
        assert tracker.track(keys, values, at=now - i % 90)
        expected.add_raw(keys, values, now - i % 90)
    assert tracker.flush(60)


def rollup_total(stack) -> float:
    query = "SELECT sum(value) FROM tally.rollups"
    return stack.clickhouse_client().query(query).result_rows[0][0] or 0


def metric(stack, proc, name: str) -> float:
    return sum(v for k, v in stack.metrics(proc).items() if k.split("{")[0] == name)


def test_clickhouse_paused_then_killed_a_replay_after_its_restart_is_dropped(make_stack):
    stack = make_stack(partitions=4, aggregators=2, flush_interval_s=0.5)
    expected = Expected(Calendar("UTC"), ("1m", "1h", "1d"))
    tracker = Tracker(ClientSettings(bootstrap_servers=stack.kafka.bootstrap, strict=True))
    track(tracker, expected, 2_000, "a")
    wait_for(lambda: rollup_total(stack) >= sum(expected.totals.values()), 60, "phase a")
    survivor, victim = stack.aggregators
    wait_for(lambda: metric(stack, victim, "tally_assigned_partitions") > 0, 60, "assignment")

    # Pause ClickHouse; the aggregators fold the next events and send their inserts, which wait
    # in the paused server's socket buffers.
    folded_a = {p.pid: metric(stack, p, "tally_events_in_total") for p in stack.aggregators}
    os.kill(stack.clickhouse.pid, signal.SIGSTOP)
    try:
        track(tracker, expected, 4_000, "b")

        def folded() -> bool:
            return all(
                metric(stack, p, "tally_events_in_total") > folded_a[p.pid]
                for p in stack.aggregators
            )

        wait_for(folded, 60, "phase b folded by both aggregators")
        time.sleep(2)  # > 2 flush intervals: both have an insert in flight
        victim.kill()  # its intents stay pending; its inserts are still queued in the server
        victim.wait(30)
        stack.aggregators.remove(victim)
    finally:
        os.kill(stack.clickhouse.pid, signal.SIGCONT)
    # The resumed server runs the queued inserts (nobody reads the dead member's answers).
    landed = rollup_total(stack)
    time.sleep(2)
    assert rollup_total(stack) > landed or landed > 0

    port, path = stack.clickhouse.port, stack.clickhouse.path
    os.kill(stack.clickhouse.pid, signal.SIGKILL)
    stack.clickhouse.stop()
    # The survivor takes the dead member's partitions and replays their pending ranges, retrying
    # until ClickHouse is back: the replays run against the restarted server.
    wait_for(lambda: metric(stack, survivor, "tally_assigned_partitions") == 4, 60, "takeover")
    stack.clickhouse = start_clickhouse(path, port=port, access=access_model(stack.config.database))
    wait_for(lambda: metric(stack, survivor, "tally_replays_total") >= 1, 60, "replays")
    track(tracker, expected, 1_000, "c")
    wait_for(lambda: rollup_total(stack) >= sum(expected.totals.values()), 90, "phase c")
    assert stack.stop_aggregators() == [0]
    result = compare(expected.totals, fetch_totals(stack.clickhouse_client()))
    assert result.exact, result.mismatches
    tracker.close()
