"""Adaptive flush pacing on the real stack: one aggregator owning 16 busy partitions at a 0.2 s
flush interval would insert 80 times a second; under a ceiling of 2 inserts/s it stays there,
parts pressure (the table's ``parts_to_delay_insert`` lowered) stretches the interval to its
bound, and the rollups stay exact."""

from __future__ import annotations

import threading
import time

import pytest

from tally.ingest import ClientSettings, Tracker
from tally.loadtest.exactness import Expected, compare, fetch_totals
from tally.schemas.granularity import Calendar

from .conftest import wait_for

pytestmark = pytest.mark.integration

PARTITIONS = 16
CEILING = 2.0
LONGEST = 12.0
EVENTS = 60_000
PRODUCE_S = 40.0


def produce(bootstrap: str, expected: Expected, done: threading.Event) -> None:
    """Track EVENTS events over PRODUCE_S seconds, on keys spread over every partition."""
    tracker = Tracker(ClientSettings(bootstrap_servers=bootstrap, strict=True, linger_ms=50))
    start = int(time.time()) - 600
    began = time.monotonic()
    for i in range(EVENTS):
        keys = ("pace", f"pace::k{i % 97}")
        values = {"count": 1, "v": i % 7}
        at = start + i * 600 // EVENTS
        tracker.track(keys, values, at=at)
        expected.add_raw(keys, values, at)
        if i % 500 == 0:
            ahead = began + PRODUCE_S * i / EVENTS - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)
    assert tracker.flush(60)
    tracker.close()
    done.set()


def inserts(client) -> int:
    """ClickHouse's own count of INSERT queries since it started."""
    rows = client.query("SELECT value FROM system.events WHERE event = 'InsertQuery'").result_rows
    return int(rows[0][0]) if rows else 0


def test_insert_ceiling_and_parts_pressure_pace_flushes_and_rollups_stay_exact(make_stack):
    stack = make_stack(
        partitions=PARTITIONS,
        aggregators=1,
        flush_interval_s=0.2,
        extra_args=[
            "--max-inserts-per-s", str(CEILING),
            "--max-flush-interval", str(LONGEST),
            "--parts-check-interval", "1",
        ],
    )  # fmt: skip
    (proc,) = stack.aggregators
    client = stack.clickhouse_client()
    expected = Expected(Calendar("UTC"), ("1m", "1h", "1d"))
    produced = threading.Event()
    producer = threading.Thread(
        target=produce, args=(stack.kafka.bootstrap, expected, produced), daemon=True
    )
    producer.start()
    time.sleep(6)  # every partition has data and has had its first turn

    # 1. The insert ceiling: 16 partitions with data, 2 flushes a second, an 8 s interval.
    m1, i1, t1 = stack.metrics(proc), inserts(client), time.monotonic()
    time.sleep(12)
    m2, i2, t2 = stack.metrics(proc), inserts(client), time.monotonic()
    seconds = t2 - t1
    flush_rate = (m2["tally_flushes_total"] - m1["tally_flushes_total"]) / seconds
    assert 0 < flush_rate <= CEILING * 1.25, flush_rate
    # Each flush is one insert into rollups_input plus, for new keys, keys_seen and key_paths.
    assert (i2 - i1) / seconds <= 3 * CEILING * 1.25, (i2 - i1) / seconds
    assert m2["tally_flush_interval_seconds"] == pytest.approx(PARTITIONS / CEILING, rel=0.2)
    assert m2["tally_parts_active_max"] >= 1  # the parts were read
    assert 0 < m2["tally_parts_pressure"] < 0.25  # far from the default 1000: no stretch

    # 2. Parts pressure: the table's own threshold lowered below its active parts.
    client.command("ALTER TABLE tally.rollups MODIFY SETTING parts_to_delay_insert = 1")

    def stretched() -> bool:
        return stack.metrics(proc)["tally_flush_interval_seconds"] == pytest.approx(LONGEST)

    wait_for(stretched, 30, "parts pressure to stretch the interval to its bound")
    assert stack.metrics(proc)["tally_parts_pressure"] >= 1
    client.command("ALTER TABLE tally.rollups RESET SETTING parts_to_delay_insert")

    # 3. Exact: everything produced is in the rollups once the aggregator flushed on stop.
    producer.join(120)
    assert produced.is_set(), "producer did not finish"
    want = sum(expected.totals.values())

    def caught_up() -> bool:
        return (client.query("SELECT sum(value) FROM tally.rollups").result_rows[0][0] or 0) >= want

    wait_for(caught_up, 90, "the rollups to hold every event")
    assert stack.stop_aggregators() == [0]
    result = compare(expected.totals, fetch_totals(client))
    assert result.exact, result.mismatches
    assert result.expected_slots > 100
    log = (stack.workdir / "aggregator-0.log").read_text()
    assert "flush pacing on (insert ceiling)" in log
    assert "flush pacing on (parts pressure)" in log
    assert "fullest partition" in log  # the pressure line names the parts it saw
