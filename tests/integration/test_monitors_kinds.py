"""Monitors on distributions and gauges, on the real ClickHouse: the ready-made queue monitors
read the sampler's gauges (each bucket's last reading, not a sum) and the queue-latency monitor
reads the lag distribution's ``.sum``/``.count`` counters."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from tally.monitors.evaluate import frames
from tally.monitors.loader import load_text
from tally.monitors.source import fetch
from tally.read import AsyncReader
from tally.schemas.ddl import RollupSchema
from tests.integration.readside import KindRow, apply_schema, insert, insert_kinds, settings, start

pytestmark = pytest.mark.integration

# Recent: minute rows outlive the 1m retention only near now.
T0 = (datetime.now(UTC) - timedelta(hours=2)).replace(minute=0, second=0, microsecond=0)
QUEUE = "event::queue::rq::default"


@pytest.fixture(scope="module")
def clickhouse(tmp_path_factory) -> Iterator:
    ch = start(tmp_path_factory.mktemp("monitor-kinds") / "clickhouse")
    try:
        apply_schema(ch, RollupSchema(database="tally"))
        kinds = []
        for minute, readings in enumerate(((5, 9), (7, 2), (4, 4))):
            at = T0 + timedelta(minutes=minute)
            for second, depth in zip((10, 40), readings, strict=True):
                ms = int((at + timedelta(seconds=second)).timestamp() * 1000)
                keys = ["event::queue", QUEUE]
                kinds.append(KindRow(keys, at, "depth", reading=(ms, depth)))
                kinds.append(KindRow(keys, at, "oldest_age_s", reading=(ms, 100.0 * depth)))
        kinds.append(KindRow(["event::job"], T0, "jobs.j.queue_lag", (100.0, 300.0, 800.0)))
        kinds.append(KindRow(["event::job"], T0, "jobs.j.duration", (5.0, 7.0)))
        insert_kinds(ch, "tally", kinds)
        insert(ch, "tally", [(["event::job"], T0, {"jobs.j.count": 3})])
        yield ch
    finally:
        ch.stop()


def _monitor(text: str):
    loaded = load_text(text, "m.yaml")
    assert loaded.errors == ()
    return loaded.monitors[0]


async def _values(clickhouse, monitor, minutes: int = 3) -> list[float | None]:
    buckets = [int((T0 + timedelta(minutes=i)).timestamp()) for i in range(minutes)]
    async with AsyncReader(settings(clickhouse, "tally")) as reader:
        fetched = await fetch(reader, monitor, buckets, buckets[-1] + 60)
    (frame,) = frames(monitor, fetched).frames.values()
    return frame.values


async def test_queue_depth_reads_the_last_reading_of_each_bucket(clickhouse):
    monitor = _monitor("ready:\n  - queue_depth: {queue: rq::default}\n")
    assert (monitor.key, monitor.path, monitor.gauge) == (QUEUE, "depth", True)
    assert await _values(clickhouse, monitor) == [9.0, 2.0, 4.0]  # not 14, 9, 8 (sums)


async def test_queue_stuck_takes_the_largest_age_of_the_window(clickhouse):
    monitor = _monitor("ready:\n  - queue_stuck: {queue: rq::default, window: 3m}\n")
    values = await _values(clickhouse, monitor)
    assert values[-1] == 900.0  # the last readings 900, 200, 400: max over the 3-minute window


async def test_queue_latency_is_the_mean_lag_from_the_distribution_counters(clickhouse):
    monitor = _monitor("ready:\n  - queue_latency: {job: j, window: 1m, granularity: 1m}\n")
    values = await _values(clickhouse, monitor, minutes=1)
    assert values == [pytest.approx(400.0)]  # (100 + 300 + 800) / 3


async def test_a_summed_monitor_ignores_the_distribution_and_gauge_rows(clickhouse):
    monitor = _monitor(
        "monitors:\n  - {name: d, key: event::job, path: jobs.j.duration.count,"
        " condition: {type: threshold, above: 5}}\n"
    )
    assert await _values(clickhouse, monitor, minutes=1) == [2.0]
