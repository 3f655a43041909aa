"""A replayed range over --flush-rows does not make every consumed record flush everything."""

from __future__ import annotations

import asyncio
import time

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.structs import OffsetAndMetadata, TopicPartition

from tally.loadtest.exactness import Expected, compare, fetch_totals
from tally.schemas.granularity import Calendar
from tally.schemas.wire_columns import ColumnsEncoder

from .conftest import wait_for
from .helpers_dlq import produce_raw

pytestmark = [pytest.mark.integration, pytest.mark.faults]


async def commit_intent(bootstrap: str, group: str, topic: str, start: int, end: int) -> None:
    """What a member killed between its intent commit and its insert leaves behind."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False
    )
    await consumer.start()
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        await consumer.commit({tp: OffsetAndMetadata(start, f"tally1:{start}:{end}")})
    finally:
        await consumer.stop()


def test_a_replay_over_the_row_bound_causes_no_flush_storm(make_stack):
    stack = make_stack(
        partitions=2,
        aggregators=1,
        start_aggregators=False,
        flush_interval_s=600,
        extra_args=["--flush-rows", "100"],
    )
    bootstrap, topic, group = stack.kafka.bootstrap, stack.config.topic, stack.config.group
    encoder = ColumnsEncoder("storm")
    expected = Expected(Calendar("UTC"), ("1m", "1h", "1d"))
    now = int(time.time())

    def batch(partition: int, keys_of, count: int) -> list[tuple[int, bytes, None]]:
        out = []
        for i in range(count):
            keys = keys_of(i)
            expected.add_raw(keys, {"count": 1}, now)
            out.append((partition, encoder.encode([(now, keys, ("count",), [1])]), None))
        return out

    # Partition 0 holds the first 3,000 records of a pending range 0..5,999 (a member died
    # after its intent commit): the replay folds them and must wait for the rest.
    asyncio.run(produce_raw(bootstrap, topic, batch(0, lambda i: (f"replay::{i}",), 3_000)))
    asyncio.run(commit_intent(bootstrap, group, topic, 0, 5_999))
    proc = stack.start_aggregator()

    def consumed(count: int):
        def check() -> bool:
            try:
                m = stack.metrics(proc)
            except OSError:
                return False  # not serving yet
            return m.get("tally_records_in_total", 0) >= count

        return check

    wait_for(consumed(3_000), 120, "the replay's first records")
    # Live traffic on partition 1 meanwhile: one entry, far below --flush-rows.
    asyncio.run(produce_raw(bootstrap, topic, batch(1, lambda i: ("live",), 2_000)))
    wait_for(consumed(5_000), 120, "the live records")
    asyncio.run(produce_raw(bootstrap, topic, batch(0, lambda i: (f"replay::{3_000 + i}",), 3_000)))
    wait_for(consumed(8_000), 120, "the rest of the replayed range")
    time.sleep(2)
    m = stack.metrics(proc)
    assert m["tally_replays_total"] == 1
    inserts = m["tally_flushes_total"]
    commits = sum(v for k, v in m.items() if k.startswith("tally_commits_total"))
    # The replay flushes once, at its end; partition 1 waits for its interval. A storm made
    # one insert (and two commits) per live record while the replay held >= --flush-rows.
    assert inserts <= 10, m
    assert commits <= 20, m
    assert stack.stop_aggregators() == [0]
    result = compare(expected.totals, fetch_totals(stack.clickhouse_client()))
    assert result.exact, result.mismatches
