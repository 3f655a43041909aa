"""A cardinality explosion flushes early instead of growing memory without bound."""

from __future__ import annotations

import time

import psutil
import pytest

from tally.ingest import ClientSettings, Tracker
from tally.loadtest.exactness import Expected, compare, fetch_totals
from tally.schemas.granularity import Calendar

from .conftest import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.faults]


def test_many_distinct_keys_trigger_early_flushes_within_the_row_bound(make_stack):
    # The time-based flush is far away (10 min): only the size bound can flush.
    stack = make_stack(
        partitions=4, aggregators=2, flush_interval_s=600, extra_args=["--flush-rows", "5000"]
    )
    expected = Expected(Calendar("UTC"), ("1m", "1h", "1d"))
    tracker = Tracker(ClientSettings(bootstrap_servers=stack.kafka.bootstrap, strict=True))
    now = int(time.time())
    for i in range(150_000):  # every event a new key: 150k keys x 3 granularities x 2 paths
        keys = (f"burst::{i}",)
        values = {"count": 1, "v": i % 3}
        tracker.track(keys, values, at=now)
        expected.add_raw(keys, values, now)
    assert tracker.flush(60)
    tracker.close()
    client = stack.clickhouse_client()
    want = sum(expected.totals.values())

    peak: dict[int, int] = {}

    def done() -> bool:
        for proc in stack.aggregators:
            rss = psutil.Process(proc.pid).memory_info().rss
            peak[proc.pid] = max(peak.get(proc.pid, 0), rss)
        total = client.query("SELECT sum(value) FROM tally.rollups").result_rows[0][0] or 0
        # Up to --flush-rows entries per aggregator may wait for the next flush (or SIGTERM).
        return total >= want * 0.9

    # Nearly everything is visible long before the 600 s interval: early flushes did it.
    wait_for(done, 120, "size-triggered flushes")
    entries = [stack.metrics(p)["tally_fold_entries"] for p in stack.aggregators]
    assert all(e < 5000 + 2000 * 2 for e in entries), entries
    assert max(peak.values()) < 600 * 2**20, peak
    assert stack.stop_aggregators() == [0, 0]  # SIGTERM flushes the rest
    result = compare(expected.totals, fetch_totals(client))
    assert result.exact, result.mismatches
