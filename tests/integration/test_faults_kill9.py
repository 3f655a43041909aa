"""kill -9 aggregators at random moments while they consume 1M events: totals stay exact."""

from __future__ import annotations

import random
import signal
import threading
import time

import pytest

from tally.ingest import ClientSettings, Tracker
from tally.loadtest.exactness import Expected, compare, fetch_totals
from tally.schemas.granularity import Calendar

from .conftest import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.faults]

EVENTS = 1_000_000
KILLS = 20


def produce(bootstrap: str, expected: Expected, done: threading.Event, seconds: float) -> None:
    """Track EVENTS events paced over ``seconds``, fanned out to a global and a tenant key."""
    tracker = Tracker(ClientSettings(bootstrap_servers=bootstrap, strict=True))
    start = int(time.time()) - 3 * 3600
    began = time.monotonic()
    for i in range(EVENTS):
        keys = ("jobs", f"jobs::tenant{i % 20}")
        values = {"count": 1, "v": i % 13, "codes": {f"c{i % 5}": 1}, "d": {"sum": i % 1000}}
        at = start + (i * 3 * 3600) // EVENTS
        tracker.track(keys, values, at=at)
        expected.add_raw(keys, values, at)
        if i % 20_000 == 0:
            ahead = began + seconds * i / EVENTS - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)
    assert tracker.flush(120)
    assert tracker.stats().sent_events == EVENTS
    tracker.close()
    done.set()


def test_kill_9_at_random_moments_keeps_every_total_exact(make_stack):
    stack = make_stack(
        partitions=8,
        aggregators=2,
        flush_interval_s=0.3,
        session_timeout_ms=3_000,
        heartbeat_ms=300,
        extra_args=["--flush-rows", "20000", "--group-flush"],
    )
    expected = Expected(Calendar("UTC"), ("1m", "1h", "1d"))
    produced = threading.Event()
    producer = threading.Thread(
        target=produce, args=(stack.kafka.bootstrap, expected, produced, 45.0), daemon=True
    )
    producer.start()
    rng = random.Random(9)
    kills = 0
    while kills < KILLS:
        time.sleep(rng.uniform(0.5, 3.5))
        victim = stack.aggregators.pop(rng.randrange(len(stack.aggregators)))
        victim.send_signal(signal.SIGKILL)
        victim.wait()
        kills += 1
        stack.start_aggregator()
    producer.join(300)
    assert produced.is_set(), "producer did not finish"
    client = stack.clickhouse_client()
    want = sum(expected.totals.values())

    def caught_up() -> bool:
        return (client.query("SELECT sum(value) FROM tally.rollups").result_rows[0][0] or 0) >= want

    wait_for(caught_up, 240, "the rollups to hold every event")
    assert stack.stop_aggregators() == [0, 0]
    result = compare(expected.totals, fetch_totals(client))
    assert result.exact, result.mismatches
    assert result.expected_slots > 1_000
    replays = sum(
        (stack.workdir / f"aggregator-{i}.log").read_text().count("replaying pending")
        for i in range(len(stack.metrics_ports))
    )
    print(f"{kills} kills, {replays} pending ranges or groups replayed")
