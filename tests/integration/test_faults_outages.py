"""Outages of ClickHouse (60 s) and of the broker (30 s): nothing crashes, nothing is lost."""

from __future__ import annotations

import signal
import time

import psutil
import pytest

from tally.embedded.clickhouse.process import start_clickhouse
from tally.ingest import ClientSettings, Tracker
from tally.loadtest.exactness import Expected, compare, fetch_totals
from tally.schemas.access import access_model
from tally.schemas.granularity import Calendar

from .conftest import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.faults]


def track_paced(
    tracker: Tracker, expected: Expected, count: int, seconds: float, tag: str
) -> float:
    """Track ``count`` events evenly over ``seconds``; returns the slowest call in seconds."""
    start = time.monotonic()
    slowest = 0.0
    now = int(time.time())
    for i in range(count):
        keys = ("jobs", f"jobs::{tag}{i % 7}")
        values = {"count": 1, "v": i % 11}
        t0 = time.perf_counter()
        assert tracker.track(keys, values, at=now)
        slowest = max(slowest, time.perf_counter() - t0)
        expected.add_raw(keys, values, now)
        ahead = start + seconds * (i + 1) / count - time.monotonic()
        if ahead > 0.001:
            time.sleep(ahead)
    return slowest


def rollup_total(stack) -> float:
    return (
        stack.clickhouse_client().query("SELECT sum(value) FROM tally.rollups").result_rows[0][0]
        or 0
    )


def test_clickhouse_unreachable_for_60s(make_stack):
    stack = make_stack(partitions=4, aggregators=2, flush_interval_s=0.5)
    expected = Expected(Calendar("UTC"), ("1m", "1h", "1d"))
    tracker = Tracker(ClientSettings(bootstrap_servers=stack.kafka.bootstrap, strict=True))
    track_paced(tracker, expected, 5_000, 1, "a")
    assert tracker.flush(60)
    wait_for(lambda: rollup_total(stack) >= sum(expected.totals.values()), 60, "first events")

    port, path = stack.clickhouse.port, stack.clickhouse.path
    stack.clickhouse.stop()
    processes = [psutil.Process(p.pid) for p in stack.aggregators]
    rss_before = max(p.memory_info().rss for p in processes)
    outage_end = time.monotonic() + 60
    rss_peak = rss_before
    sent = 0
    while time.monotonic() < outage_end:
        track_paced(tracker, expected, 2_000, 1, "b")
        sent += 2_000
        rss_peak = max(rss_peak, *(p.memory_info().rss for p in processes))
        assert all(p.poll() is None for p in stack.aggregators), "an aggregator died in the outage"
    assert tracker.flush(60)
    retries = sum(
        v for p in stack.aggregators for k, v in stack.metrics(p).items()
        if k.startswith("tally_insert_retries_total")
    )  # fmt: skip
    assert retries > 0, "the outage was not noticed"
    stack.clickhouse = start_clickhouse(path, port=port, access=access_model(stack.config.database))
    wait_for(lambda: rollup_total(stack) >= sum(expected.totals.values()), 120, "catch-up")
    assert stack.stop_aggregators() == [0, 0]
    result = compare(expected.totals, fetch_totals(stack.clickhouse_client()))
    assert result.exact, result.mismatches
    # Consumption pauses while inserts fail: memory does not grow with the backlog.
    assert rss_peak - rss_before < 150 * 2**20, (rss_before, rss_peak, sent)
    tracker.close()


def test_broker_unreachable_for_30s_client_buffers_spools_and_delivers(make_stack, tmp_path):
    stack = make_stack(partitions=4, aggregators=2, flush_interval_s=0.5)
    expected = Expected(Calendar("UTC"), ("1m", "1h", "1d"))
    settings = ClientSettings(
        bootstrap_servers=stack.kafka.bootstrap,
        strict=True,
        spool_dir=tmp_path / "spool",
        pending_bytes=64 * 1024,
        buffer_events=20_000,
        request_timeout_ms=5_000,
    )
    tracker = Tracker(settings)
    track_paced(tracker, expected, 2_000, 1, "a")
    assert tracker.flush(60)

    stack.kafka.stop()
    slowest = track_paced(tracker, expected, 60_000, 30, "b")
    stats = tracker.stats()
    assert stats.spooled_records > 0, stats
    assert stats.pending_bytes <= settings.pending_bytes
    assert stats.dropped_overflow == stats.dropped_spool_full == 0
    # track() only appends to memory (microseconds); a call that waited on the dead broker would
    # take its request timeout (5 s). The bound is half that, far above a busy box's hiccups.
    assert slowest < 2.5, slowest

    stack.kafka.restart()
    assert tracker.flush(180), tracker.stats()
    stats = tracker.stats()
    assert stats.unspooled_records == stats.spooled_records
    assert not list((tmp_path / "spool").rglob("*.rec"))
    wait_for(lambda: rollup_total(stack) >= sum(expected.totals.values()), 180, "catch-up")
    assert stack.stop_aggregators() == [0, 0]
    result = compare(expected.totals, fetch_totals(stack.clickhouse_client()))
    assert result.exact, result.mismatches
    tracker.close()


def test_sigterm_during_a_clickhouse_outage_exits_and_the_range_is_replayed(make_stack):
    stack = make_stack(partitions=2, aggregators=1, flush_interval_s=0.5)  # 10 s grace
    expected = Expected(Calendar("UTC"), ("1m", "1h", "1d"))
    tracker = Tracker(ClientSettings(bootstrap_servers=stack.kafka.bootstrap, strict=True))
    track_paced(tracker, expected, 1_000, 0.5, "a")
    assert tracker.flush(60)
    wait_for(lambda: rollup_total(stack) >= sum(expected.totals.values()), 60, "first events")

    port, path = stack.clickhouse.port, stack.clickhouse.path
    stack.clickhouse.stop()
    track_paced(tracker, expected, 1_000, 0.5, "b")
    assert tracker.flush(60)
    (proc,) = stack.aggregators

    def retrying() -> bool:
        m = stack.metrics(proc)
        return sum(v for k, v in m.items() if k.startswith("tally_insert_retries_total")) > 0

    wait_for(retrying, 60, "inserts failing")
    proc.send_signal(signal.SIGTERM)
    # Before the fix the retry loop held the lock forever and the process never exited.
    assert proc.wait(90) == 0
    stack.aggregators.clear()

    stack.clickhouse = start_clickhouse(path, port=port, access=access_model(stack.config.database))
    stack.start_aggregator()  # replays the range whose insert never happened
    wait_for(lambda: rollup_total(stack) >= sum(expected.totals.values()), 120, "replay")
    assert stack.stop_aggregators() == [0]
    result = compare(expected.totals, fetch_totals(stack.clickhouse_client()))
    assert result.exact, result.mismatches
    tracker.close()
