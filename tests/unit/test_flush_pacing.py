"""The flush pacing rule, the staggered pacer and the parts-pressure watch, on a fake clock."""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections import Counter

import pytest
from aiokafka import TopicPartition

from tally.clickhouse.parts_pressure import PartsPressure, PartsUnreadable, delay_threshold
from tally.engine.metrics import EngineMetrics
from tally.engine.pacer import FlushPacer
from tally.engine.pacing import PacingRule
from tally.engine.pressure_watch import PressureWatch

RULE = PacingRule(flush_interval_s=2.0, max_inserts_per_s=2.0, max_flush_interval_s=30.0)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def tps(n: int) -> list[TopicPartition]:
    return [TopicPartition("t", i) for i in range(n)]


def parts(active: int, limit: int = 1000, merges: int = 0) -> PartsPressure:
    return PartsPressure(max_active_parts=active, merges=merges, parts_to_delay_insert=limit)


def test_few_partitions_keep_the_configured_interval():
    assert RULE.interval(1) == 2.0
    assert RULE.interval(4) == 2.0  # 4 / 2 s = 2 inserts/s: at the ceiling, not over


def test_the_ceiling_stretches_the_interval_to_partitions_over_inserts_per_second():
    assert RULE.interval(8) == 4.0
    assert RULE.interval(64) == 30.0  # 32 s wanted, bounded by --max-flush-interval
    assert RULE.spacing(8) == 0.5  # one insert every half second: 2 inserts/s


def test_no_ceiling_means_the_configured_interval():
    rule = PacingRule(flush_interval_s=2.0, max_inserts_per_s=0, max_flush_interval_s=30.0)
    assert rule.interval(64) == 2.0
    assert rule.spacing(64) == 2.0 / 64


def test_a_bound_below_the_configured_interval_never_shortens_it():
    rule = PacingRule(flush_interval_s=10.0, max_inserts_per_s=1.0, max_flush_interval_s=5.0)
    assert rule.interval(64, parts(1000)) == 10.0


def test_parts_pressure_stretches_linearly_from_a_quarter_of_the_threshold_to_the_bound():
    assert RULE.interval(8, parts(100)) == 4.0  # 10 %: untouched
    assert RULE.interval(8, parts(250)) == 4.0  # the start of the ramp
    assert RULE.interval(8, parts(625)) == pytest.approx(4.0 + (30 - 4) * 0.5)
    assert RULE.interval(8, parts(1000)) == 30.0  # at parts_to_delay_insert: the bound
    assert RULE.interval(8, parts(5000)) == 30.0
    assert RULE.interval(8, parts(50, limit=100)) == pytest.approx(4.0 + 26 / 3)  # 50 % of 100


def test_pacer_staggers_turns_oldest_first_and_stays_under_the_ceiling():
    clock = Clock()
    pacer = FlushPacer(RULE, EngineMetrics(), clock)
    owned = tps(8)
    flushed: list[tuple[float, TopicPartition]] = []
    for _ in range(4000):  # 40 s in 10 ms steps
        clock.now += 0.01
        due = pacer.due(owned)
        if due:
            assert len(due) == 1  # one partition per turn, never all at once
            pacer.flushed(due)
            flushed.append((clock.now, due[0]))
    span = flushed[-1][0] - flushed[0][0]
    assert (len(flushed) - 1) / span == pytest.approx(2.0, rel=0.05)  # the ceiling
    per_partition = Counter(tp for _, tp in flushed)
    assert max(per_partition.values()) - min(per_partition.values()) <= 1  # round robin
    gaps = [b[0] - a[0] for a, b in itertools.pairwise(flushed)]
    assert min(gaps) >= 0.5 - 1e-9
    assert pacer.interval == 4.0


def test_pacer_takes_the_turns_that_came_due_during_a_slow_insert_together():
    clock = Clock()
    pacer = FlushPacer(RULE, EngineMetrics(), clock)  # 8 partitions: one turn every 0.5 s
    owned = tps(8)
    sizes, flushes = [], 0
    start = clock.now
    for _ in range(4000):
        clock.now += 0.01
        due = pacer.due(owned)
        if due:
            pacer.flushed(due)
            sizes.append(len(due))
            flushes += len(due)
            clock.now += 1.6  # each flush takes 1.6 s: three turns come due meanwhile
    rate = flushes / (clock.now - start)
    assert max(sizes) > 1  # concurrent again, as the unpaced engine flushed
    assert max(sizes) <= 8  # never more than one round at once
    assert rate <= 2.0 * 1.05  # still under the ceiling


def test_pacer_keeps_every_partition_at_the_configured_interval_when_under_the_ceiling():
    clock = Clock()
    pacer = FlushPacer(RULE, EngineMetrics(), clock)
    owned = tps(2)
    times: dict[TopicPartition, list[float]] = {tp: [] for tp in owned}
    for _ in range(2000):
        clock.now += 0.01
        due = pacer.due(owned)
        if due:
            pacer.flushed(due)
            times[due[0]].append(clock.now)
    for seen in times.values():
        gaps = [b - a for a, b in itertools.pairwise(seen)]
        assert gaps and max(gaps) == pytest.approx(2.0, abs=0.02)


def test_pacer_without_data_runs_an_empty_flush_each_configured_interval():
    clock = Clock()
    pacer = FlushPacer(RULE, EngineMetrics(), clock)
    assert pacer.due([]) is None
    clock.now += 2.0
    assert pacer.due([]) == []
    clock.now += 1.0
    assert pacer.due([]) is None


def test_pacer_logs_when_pacing_starts_and_when_parts_pressure_takes_over(caplog):
    clock = Clock()
    metrics = EngineMetrics()
    pacer = FlushPacer(RULE, metrics, clock)
    caplog.set_level(logging.INFO, "tally.aggregator")
    clock.now += 2.0
    pacer.due(tps(16))
    assert "flush pacing on (insert ceiling): interval 8.0 s" in caplog.text
    pacer.observe(parts(900, merges=3))
    clock.now += 10
    pacer.due(tps(16))
    assert "flush pacing on (parts pressure)" in caplog.text
    assert "fullest partition 900 of 1000 parts, 3 merges" in caplog.text
    assert metrics.parts_pressure._value.get() == pytest.approx(0.9)
    assert metrics.parts_active_max._value.get() == 900
    assert metrics.merges_running._value.get() == 3
    assert metrics.flush_interval._value.get() == pytest.approx(8 + 22 * (0.65 / 0.75), rel=1e-3)


def test_delay_threshold_takes_the_lowest_table_setting_else_the_server_default():
    plain = "AggregatingMergeTree PARTITION BY x ORDER BY y SETTINGS index_granularity = 8192"
    own = "ReplacingMergeTree ORDER BY k SETTINGS parts_to_delay_insert = 300, x = 1"
    assert delay_threshold([plain], 1000) == 1000
    assert delay_threshold([plain], None) == 1000
    assert delay_threshold([plain], 600) == 600
    assert delay_threshold([plain, own], 1000) == 300
    assert delay_threshold([own], 1000) == 300
    assert delay_threshold([], 0) == 1000


def test_watch_warns_once_and_keeps_the_static_ceiling_without_access(caplog):
    clock = Clock()
    pacer = FlushPacer(RULE, EngineMetrics(), clock)
    calls = []

    async def denied() -> PartsPressure:
        calls.append(clock.now)
        raise PartsUnreadable("Code: 497. DB::Exception: user: Not enough privileges")

    watch = PressureWatch(denied, pacer, 1.0, clock)
    caplog.set_level(logging.WARNING, "tally.aggregator")
    for _ in range(5):
        asyncio.run(watch.poll())
        clock.now += 2
    assert len(calls) == 1
    assert caplog.text.count("cannot read system.parts") == 1
    assert pacer.pressure is None


def test_watch_reads_each_period_and_keeps_the_last_reading_on_a_failure():
    clock = Clock()
    pacer = FlushPacer(RULE, EngineMetrics(), clock)
    answers: list[PartsPressure | Exception] = [parts(10), ConnectionError("down"), parts(20)]

    async def read() -> PartsPressure:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    watch = PressureWatch(read, pacer, 5.0, clock)
    asyncio.run(watch.poll())
    assert pacer.pressure == parts(10)
    asyncio.run(watch.poll())  # within the period: not read
    assert len(answers) == 2
    clock.now += 5
    asyncio.run(watch.poll())
    assert pacer.pressure == parts(10)  # the failure kept the last reading
    clock.now += 5
    asyncio.run(watch.poll())
    assert pacer.pressure == parts(20)
