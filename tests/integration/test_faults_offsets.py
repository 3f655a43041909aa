"""Committed offsets that do not match the log, and groups that have none."""

from __future__ import annotations

import asyncio
import subprocess
import time

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.structs import OffsetAndMetadata, TopicPartition

from tally.embedded.kafka_broker import free_ports
from tally.schemas.wire import BatchEncoder

from .conftest import wait_for
from .helpers_dlq import produce_raw

pytestmark = [pytest.mark.integration, pytest.mark.faults]


async def commit(bootstrap: str, group: str, topic: str, offset: int, metadata: str) -> None:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False
    )
    await consumer.start()
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        await consumer.commit({tp: OffsetAndMetadata(offset, metadata)})
    finally:
        await consumer.stop()


def records(count: int, key: str) -> list[tuple[int, bytes, None]]:
    encoder, now = BatchEncoder("offsets"), int(time.time())
    return [(0, encoder.encode([(now, (key,), ("count",), [1])]), None) for _ in range(count)]


def counted(stack, key: str) -> float:
    query = "SELECT sum(value) FROM tally.rollups_1m WHERE key = {k:String} AND path = 'count'"
    return stack.clickhouse_client().query(query, {"k": key}).result_rows[0][0] or 0


@pytest.mark.parametrize("metadata", ["", "tally1:1000:1500"])
def test_a_committed_offset_above_the_log_restarts_the_range(make_stack, metadata):
    """The topic was recreated (or truncated): the group's offset 1000 is beyond its end."""
    stack = make_stack(partitions=1, aggregators=1, start_aggregators=False)
    bootstrap, topic = stack.kafka.bootstrap, stack.config.topic
    asyncio.run(commit(bootstrap, stack.config.group, topic, 1000, metadata))
    asyncio.run(produce_raw(bootstrap, topic, records(20, "recreated")))
    proc = stack.start_aggregator()
    # Before the fix the range started at 1000 and records 0..19 never made it flushable.
    wait_for(lambda: counted(stack, "recreated") >= 20, 90, "the records after the reset")
    assert stack.metrics(proc)["tally_offset_resets_total"] == 1
    assert stack.stop_aggregators() == [0]
    assert counted(stack, "recreated") == 20


def test_a_new_group_over_a_non_empty_topic_needs_an_explicit_initial_offset(make_stack):
    stack = make_stack(partitions=1, aggregators=1, start_aggregators=False)
    bootstrap, topic = stack.kafka.bootstrap, stack.config.topic
    asyncio.run(produce_raw(bootstrap, topic, records(10, "old")))
    port = free_ports(1)[0]
    command = stack.aggregator_command(0, port)
    at = command.index("--initial-offset")
    unset = command[:at] + command[at + 2 :]
    try:
        done = subprocess.run(unset, capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired as exc:
        raise AssertionError((exc.stderr or b"")[-3000:]) from None
    assert done.returncode == 2, done.stderr[-2000:]
    assert "--initial-offset earliest" in done.stderr and "no committed offset" in done.stderr
    assert "Traceback" not in done.stderr

    latest = [*unset, "--initial-offset", "latest"]
    proc = subprocess.Popen(latest, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        stack.metrics_ports[proc.pid] = port
        stack.aggregators.append(proc)
        # "latest" skips the 10 old records and counts what comes next.
        wait_for(lambda: _assigned(stack, proc), 90, "the aggregator joined", step=0.5)
        asyncio.run(produce_raw(bootstrap, topic, records(5, "new")))
        wait_for(lambda: counted(stack, "new") >= 5, 90, "new records")
    finally:
        assert stack.stop_aggregators() == [0]
    assert counted(stack, "old") == 0


def _assigned(stack, proc) -> bool:
    try:
        return stack.metrics(proc).get("tally_assigned_partitions") == 1
    except OSError:
        return False
