"""Distributions and gauges end to end: client -> Kafka -> aggregator -> ClickHouse -> read.

The accuracy test tracks 1.2M samples from three distributions (lognormal, bimodal with exact
zeros, heavy-tailed with outliers), pre-aggregated on the client with ``Dist.of`` into one
event per chunk (two per minute, so the aggregator's fold merges sketches too), plus single
``dist()`` samples. For every bucket of every granularity, p50/p90/p95/p99/p99.9 read back
(Python read side, and the documented SQL for two granularities) are within ALPHA of numpy's
exact percentile of that bucket's samples.
"""

from __future__ import annotations

import time
from collections import defaultdict

import numpy as np
import pytest

from tally.ingest import ClientSettings, Dist, Tracker, dist, gauge
from tally.read import Reader, ReadSettings
from tally.read.rollup_queries import GAUGE, QUANTILES
from tally.schemas.granularity import Calendar, Granularity
from tally.schemas.sketch import ALPHA

from .conftest import wait_for

pytestmark = pytest.mark.integration

QS = (0.5, 0.9, 0.95, 0.99, 0.999)
GRANULARITIES = ("1m", "1h", "1d", "1w", "1mo", "1q", "1y")
CHUNKS = 200  # per distribution: one minute each, 6 minutes apart
PER_CHUNK = 2_000  # samples per chunk (two events of 1,000)


def samples(name: str, rng: np.random.Generator, n: int) -> np.ndarray:
    if name == "lognormal":
        return rng.lognormal(mean=3.0, sigma=1.2, size=n)
    if name == "bimodal":
        low = np.abs(rng.normal(40.0, 6.0, size=n))
        high = np.abs(rng.normal(900.0, 120.0, size=n))
        out = np.where(rng.random(n) < 0.7, low, high)
        out[rng.random(n) < 0.01] = 0.0  # exact zeros (the sketch's zero bucket)
        return out
    out = (rng.pareto(1.3, size=n) + 1.0) * 5.0  # heavy tail
    spikes = rng.random(n) < 0.002
    out[spikes] = rng.uniform(1e6, 5e7, size=int(spikes.sum()))  # outliers
    return out


def within(estimate: float | None, exact: float) -> bool:
    return estimate is not None and abs(estimate - exact) <= ALPHA * exact * (1 + 1e-9) + 1e-12


def test_quantiles_within_alpha_at_every_granularity(make_stack):
    stack = make_stack(partitions=2, aggregators=1)
    tracker = Tracker(
        ClientSettings(
            bootstrap_servers=stack.kafka.bootstrap, topic=stack.config.topic, strict=True
        )
    )
    calendar = Calendar("UTC")
    rng = np.random.default_rng(9)
    start = (int(time.time()) - 30 * 3600) // 60 * 60
    exact: dict[tuple[str, str, int], list[np.ndarray]] = defaultdict(list)
    total = 0
    for name in ("lognormal", "bimodal", "heavy"):
        key = f"acc::{name}"
        for chunk in range(CHUNKS):
            values = samples(name, rng, PER_CHUNK)
            minute = start + chunk * 360
            for half, at in ((values[:1000], minute + 5), (values[1000:], minute + 40)):
                assert tracker.track([key], {"latency": Dist.of(half.tolist())}, at=at)
            singles = samples(name, rng, 3)
            for v in singles:
                assert tracker.track([key], {"latency": dist(float(v))}, at=minute + 59)
            values = np.concatenate([values, singles])
            total += len(values)
            for g in GRANULARITIES:
                exact[(name, g, calendar.floor(minute, Granularity.parse(g)))].append(values)
    assert total >= 1_000_000
    assert tracker.flush(120)
    tracker.close()

    client = stack.clickhouse_client()

    def stored(g: str) -> int:
        rows = client.query(
            "SELECT sum(value) FROM tally.rollups WHERE granularity = {g:String}"
            " AND path = 'latency.count'",
            parameters={"g": g},
        ).result_rows
        return int(rows[0][0] or 0)

    wait_for(lambda: stored("1m") >= total, 180, "all samples in the rollups")
    for g in ("1m", "1h", "1d"):
        assert stored(g) == total  # exactly once: no sample counted twice

    read = ReadSettings(clickhouse=stack.clickhouse_settings, database="tally")
    since, until = start - 400 * 86400, start + 40 * 3600
    checked = 0
    with Reader(read) as reader:
        for name in ("lognormal", "bimodal", "heavy"):
            for g in GRANULARITIES:
                wide = g not in ("1m", "1h", "1d")
                since_g = since if wide else start
                until_g = start + 400 * 86400 if wide else until
                d = reader.quantiles(f"acc::{name}", "latency", QS, since_g, until_g, g)
                got = {b: i for i, b in enumerate(d.buckets) if d.count[i]}
                want = {b for (n, gg, b) in exact if n == name and gg == g}
                assert set(got) == want, (name, g)
                for bucket in want:
                    all_values = np.concatenate(exact[(name, g, bucket)])
                    i = got[bucket]
                    assert d.count[i] == len(all_values)
                    assert d.min[i] == all_values.min() and d.max[i] == all_values.max()
                    for q in QS:
                        truth = float(np.percentile(all_values, q * 100))
                        estimate = d.quantile(q)[i]
                        assert within(estimate, truth), (name, g, bucket, q, estimate, truth)
                        checked += 1
            # the documented SQL gives the same numbers
            for g in ("1h", "1mo"):
                rows = client.query(
                    QUANTILES.sql("tally", g),
                    parameters={
                        "key": f"acc::{name}",
                        "path": "latency",
                        "start": since,
                        "end": until,
                        "qs": list(QS),
                    },
                ).result_rows
                assert rows
                for bucket, count, _lo, _hi, points in rows:
                    values = np.concatenate(exact[(name, g, int(bucket.timestamp()))])
                    assert count == len(values)
                    for q, estimate in zip(QS, points, strict=True):
                        assert within(estimate, float(np.percentile(values, q * 100)))
    assert checked > 3 * CHUNKS * len(QS)


def test_gauges_last_by_event_time_min_max_across_granularities(make_stack):
    stack = make_stack(partitions=2, aggregators=1)
    tracker = Tracker(
        ClientSettings(
            bootstrap_servers=stack.kafka.bootstrap, topic=stack.config.topic, strict=True
        )
    )
    hour = (int(time.time()) - 5 * 3600) // 86400 * 86400 + 3600  # both hours in one day
    # Sent out of order: the last *by event time* wins, not the last to arrive.
    readings = [
        (hour + 600, 7.0),
        (hour + 3000, 3.0),  # the hour's last reading
        (hour + 60, 12.0),  # the hour's max
        (hour + 1200, 1.0),  # the hour's min
        (hour + 3000, 2.0),  # same millisecond as 3.0: the larger value wins
        (hour + 3600 + 30, 5.0),  # next hour
    ]
    for at, value in readings:
        assert tracker.track(["queue::default"], {"depth": gauge(value, at=at)}, at=at)
    assert tracker.track(["worker::w1"], {"seen": gauge(hour + 30.5, at=hour + 30.5)}, at=hour + 30)
    assert tracker.flush(60)
    tracker.close()
    # A v1 client on the same topic: records without distributions or gauges stay version 1.
    old = Tracker(
        ClientSettings(
            bootstrap_servers=stack.kafka.bootstrap, topic=stack.config.topic, strict=True
        )
    )
    for _ in range(10):
        assert old.track(["queue::default"], {"runs": 1}, at=hour + 60)
    assert old.flush(60)
    old.close()
    client = stack.clickhouse_client()
    read = ReadSettings(clickhouse=stack.clickhouse_settings, database="tally")

    def arrived() -> bool:  # one insert writes 1d, 1h, 1m blocks in turn: wait for all
        with Reader(read) as reader:
            minutes = reader.gauge("queue::default", "depth", hour, hour + 7200, "1m").last
            return (
                sum(v is not None for v in minutes) == 5
                and reader.gauge("worker::w1", "seen", hour, hour + 3600, "1m").last[0] is not None
            )

    wait_for(arrived, 90, "gauges in the rollups")

    def runs() -> float:
        rows = client.query(
            "SELECT sum(value) FROM tally.rollups_1m WHERE key = 'queue::default' AND path = 'runs'"
        ).result_rows
        return rows[0][0] or 0

    wait_for(lambda: runs() == 10, 60, "the version-1 records")
    with Reader(read) as reader:
        h = reader.gauge("queue::default", "depth", hour, hour + 7200, "1h")
        assert h.min == [1.0, 5.0] and h.max == [12.0, 5.0]
        assert h.last_at_ms == [(hour + 3000) * 1000, (hour + 3630) * 1000]
        m = reader.gauge("queue::default", "depth", hour, hour + 3600, "1m")
        got = {i: v for i, v in enumerate(m.last) if v is not None}
        assert got == {1: 12.0, 10: 7.0, 20: 1.0, 50: 3.0}, got
        day = reader.gauge("queue::default", "depth", hour, hour + 7200, "1d")
        assert (day.last, day.min, day.max) == ([5.0], [1.0], [12.0])
        seen = reader.gauge("worker::w1", "seen", hour, hour + 3600, "1h")
        assert seen.last == [hour + 30.5]
    rows = client.query(
        GAUGE.sql("tally", "1h"),
        parameters={"key": "queue::default", "path": "depth", "start": hour, "end": hour + 7200},
    ).result_rows
    assert [(r[1], r[3], r[4]) for r in rows] == [(3.0, 1.0, 12.0), (5.0, 5.0, 5.0)]
