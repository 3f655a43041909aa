"""What an autoscaler reads from a real aggregator's /metrics: lag per partition in records
and in seconds, fold memory and flush duration; lag goes back to 0 once it caught up."""

from __future__ import annotations

import time

import pytest

from tally.ingest import ClientSettings, Tracker

from .conftest import wait_for

pytestmark = pytest.mark.integration

EVENTS = 2_000
PER_RECORD = 5  # events per Kafka record: lag counts records
BACKLOG_AGE_S = 3


def by_partition(samples: dict[str, float], name: str) -> dict[str, float]:
    prefix = f"{name}{{partition="
    return {k[len(prefix) : -1]: v for k, v in samples.items() if k.startswith(prefix)}


def test_lag_in_records_and_seconds_fold_memory_and_flush_duration(make_stack):
    # A flush after every record (5 events, 30 fold entries) makes draining the backlog take
    # seconds: long enough to scrape the aggregator while it is behind.
    stack = make_stack(
        partitions=2,
        start_aggregators=False,
        flush_interval_s=0.5,
        extra_args=["--flush-rows", "30"],
    )
    settings = ClientSettings(
        bootstrap_servers=stack.kafka.bootstrap, strict=True, record_events=PER_RECORD
    )
    tracker = Tracker(settings)
    now = int(time.time())
    for i in range(EVENTS):  # distinct keys: every event adds fold entries
        tracker.track(("lag", f"lag::k{i}"), {"count": 1}, at=now)
    assert tracker.flush(60)
    tracker.close()
    time.sleep(BACKLOG_AGE_S)  # the backlog is this old when the aggregator starts
    proc = stack.start_aggregator()
    seen: dict[str, float] = {}

    def behind() -> bool:
        try:
            samples = stack.metrics(proc)
        except OSError:  # /metrics is not served yet
            return False
        lag = by_partition(samples, "tally_consumer_lag")
        seconds = by_partition(samples, "tally_consumer_lag_seconds")
        if any(v > 0 for v in lag.values()) and any(v >= BACKLOG_AGE_S for v in seconds.values()):
            seen.update(samples)
            return True
        return False

    wait_for(behind, 60, "the aggregator to report its backlog", step=0.1)
    assert "tally_fold_bytes" in seen
    assert seen["tally_flush_seconds_count"] > 0

    def caught_up() -> bool:
        samples = stack.metrics(proc)
        lag = by_partition(samples, "tally_consumer_lag")
        seconds = by_partition(samples, "tally_consumer_lag_seconds")
        return len(lag) == 2 and not any(lag.values()) and not any(seconds.values())

    wait_for(caught_up, 120, "lag 0 in records and seconds on both partitions")
    samples = stack.metrics(proc)
    assert samples["tally_events_in_total"] == EVENTS
    assert samples["tally_flush_seconds_sum"] > 0
    assert stack.stop_aggregators() == [0]
