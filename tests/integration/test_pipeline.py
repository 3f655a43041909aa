"""End to end on real parts: client -> Kafka -> 2+ aggregators -> ClickHouse, exact totals."""

from __future__ import annotations

import time

import pytest

from tally.ingest import ClientSettings, Tracker
from tally.loadtest.exactness import Expected, compare, fetch_totals
from tally.loadtest.workloads import Cardinality, Workload
from tally.schemas.granularity import Calendar

from .conftest import wait_for

pytestmark = pytest.mark.integration

GRANULARITIES = ("1m", "1h", "1d")


def send(stack, events: int, seed: int, expected: Expected, on_progress=None) -> Tracker:
    tracker = Tracker(
        ClientSettings(
            bootstrap_servers=stack.kafka.bootstrap, topic=stack.config.topic, strict=True
        )
    )
    workload = Workload(Cardinality(customers=50, resellers=5, products=400, tenants=8), seed=seed)
    start = int(time.time()) - 3 * 3600
    for i, event in enumerate(workload.events(events, start, 3 * 3600)):
        assert tracker.track(event.keys, event.values, at=event.at, route=event.route)
        expected.add(event)
        if on_progress and i % 10_000 == 0:
            on_progress(i)
    assert tracker.flush(60)
    stats = tracker.stats()
    assert stats.sent_events == events and stats.dropped_overflow == 0 and stats.invalid == 0
    tracker.close()
    return tracker


def total(client) -> float:
    return client.query("SELECT sum(value) FROM tally.rollups").result_rows[0][0] or 0


def test_100k_events_with_fan_out_and_a_rebalance_are_exact(make_stack):
    stack = make_stack(partitions=8, aggregators=2)
    expected = Expected(Calendar("UTC"), GRANULARITIES)
    client = stack.clickhouse_client()

    def rebalance(i: int) -> None:
        if i == 40_000:
            stack.start_aggregator()  # a third member joins mid-run
        if i == 70_000:
            first = stack.aggregators.pop(0)  # and one leaves (SIGTERM: flush, commit, exit 0)
            first.terminate()
            assert first.wait(60) == 0

    send(stack, 100_000, seed=1, expected=expected, on_progress=rebalance)
    want = sum(expected.totals.values())
    wait_for(lambda: total(client) >= want, 120, "all events in the rollups")
    assert stack.stop_aggregators() == [0, 0]
    result = compare(expected.totals, fetch_totals(client))
    assert result.exact, result.mismatches
    assert result.actual_slots == result.expected_slots > 100_000
    keys = client.query("SELECT uniqExact(key) FROM tally.rollups").result_rows[0][0]
    assert keys == len({slot[1] for slot in expected.totals})


def test_views_per_granularity_agree_with_the_table(make_stack):
    stack = make_stack(partitions=4, aggregators=2, time_zone="Europe/Prague")
    expected = Expected(Calendar("Europe/Prague"), GRANULARITIES)
    send(stack, 5_000, seed=2, expected=expected)
    client = stack.clickhouse_client()
    want = sum(expected.totals.values())
    wait_for(lambda: total(client) >= want, 90, "rollups")
    calc = "commodity::events::product_target::calculation"
    by_view = {}
    for g in ("1m", "1h", "1d", "1w", "1mo", "1q", "1y"):
        rows = client.query(
            f"SELECT sum(value) FROM tally.rollups_{g} WHERE key = {{k:String}} AND path = 'count'",
            parameters={"k": calc},
        ).result_rows
        by_view[g] = rows[0][0]
    calcs = sum(
        v for (g, k, _, p), v in expected.totals.items() if g == "1d" and k == calc and p == "count"
    )
    assert calcs > 0
    assert set(by_view.values()) == {calcs}, by_view
