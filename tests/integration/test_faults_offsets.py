"""Committed offsets that do not match the log, and groups that have none."""

from __future__ import annotations

import asyncio
import subprocess
import time

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import OffsetAndMetadata, TopicPartition

from tally.embedded.kafka_node import free_ports
from tally.ingest import ClientSettings, Tracker
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
        done = subprocess.run(
            unset, capture_output=True, text=True, timeout=60, env=stack.aggregator_env()
        )
    except subprocess.TimeoutExpired as exc:
        raise AssertionError((exc.stderr or b"")[-3000:]) from None
    assert done.returncode == 2, done.stderr[-2000:]
    assert "--initial-offset earliest" in done.stderr and "no committed offset" in done.stderr
    assert "Traceback" not in done.stderr

    latest = [*unset, "--initial-offset", "latest"]
    proc = subprocess.Popen(
        latest,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=stack.aggregator_env(),
    )
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


async def group_offsets(bootstrap: str, group: str) -> dict:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group)
        return {tp: meta.offset for tp, meta in offsets.items() if meta.offset >= 0}
    finally:
        await admin.close()


def _start_without_initial_offset(stack, log_path) -> subprocess.Popen:
    """An aggregator with the defaults (no --initial-offset), as the README deploys it."""
    port = free_ports(1)[0]
    command = stack.aggregator_command(len(stack.metrics_ports), port)
    at = command.index("--initial-offset")
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            command[:at] + command[at + 2 :], stdout=log, stderr=subprocess.STDOUT,
            env=stack.aggregator_env(),
        )  # fmt: skip
    stack.metrics_ports[proc.pid] = port
    stack.aggregators.append(proc)
    return proc


def _track(stack, key: str, n: int) -> None:
    tracker = Tracker(ClientSettings(bootstrap_servers=stack.kafka.bootstrap, strict=True))
    for _ in range(n):
        assert tracker.track([key], {"count": 1})
    assert tracker.flush(60)
    tracker.close()


def test_a_first_deployment_counts_what_the_application_sends_in_its_first_seconds(
    make_stack, tmp_path
):
    """Issue #21.15: the aggregator started on a new, empty topic; the application's first
    100 events arrive a second later, before the aggregator has joined its group. It used to
    exit 2 ("no committed offset ... holds 1 records"); they must all be counted."""
    stack = make_stack(partitions=2, aggregators=1, start_aggregators=False)
    log = tmp_path / "aggregator.log"
    proc = _start_without_initial_offset(stack, log)
    time.sleep(1)
    _track(stack, "first", 100)

    def landed(n: int) -> bool:
        assert proc.poll() is None, log.read_text()[-3000:]
        return counted(stack, "first") >= n

    wait_for(lambda: landed(100), 120, "the first 100 events")
    # The events share one key, so one partition: the other has an offset too, committed
    # where the new group began it, so no later member meets a new group over records.
    committed = asyncio.run(group_offsets(stack.kafka.bootstrap, stack.config.group))
    assert sorted(tp.partition for tp in committed) == [0, 1], committed
    # Restarted (or a second member started) once records exist: the group has offsets now.
    assert stack.stop_aggregators() == [0]
    proc = _start_without_initial_offset(stack, log)
    _track(stack, "first", 10)
    wait_for(lambda: landed(110), 120, "10 more after a restart")
    assert stack.stop_aggregators() == [0]
    assert counted(stack, "first") == 110
