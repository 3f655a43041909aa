"""The real single-node KRaft broker: install, start, produce/consume, offsets, faults."""

from __future__ import annotations

import asyncio
import os
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import OffsetAndMetadata, TopicPartition

from tally.embedded.kafka_broker import committed_offsets, start_kafka
from tally.embedded.kafka_install import MARKER, KafkaBrokerError, install, libs_dir
from tally.embedded.kafka_node import EmbeddedKafka
from tally.kafka.admin import create_topic

pytestmark = pytest.mark.integration

FAST_GROUP = {"session_timeout_ms": 2000, "heartbeat_interval_ms": 500}


@pytest.fixture(scope="module")
def kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedKafka]:
    with start_kafka(tmp_path_factory.mktemp("kafka")) as broker:
        yield broker


def java_pids_for(workdir: Path) -> list[int]:
    """Pids of live processes whose command line mentions ``workdir``."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            state = (entry / "stat").read_text().split(")")[-1].split()[0]
        except OSError:
            continue
        if str(workdir) in cmdline and "java" in cmdline and state != "Z":
            pids.append(int(entry.name))
    return pids


async def list_offsets(bootstrap: str, group: str) -> dict[TopicPartition, OffsetAndMetadata]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        return await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()


async def commit_with_metadata(bootstrap: str, topic: str, group: str, metadata: str) -> None:
    """Join ``group`` on ``topic`` and commit offset 7+p with ``metadata`` for every partition.

    Auto-commit must be off: it commits positions with empty metadata (periodically and
    in ``stop()``), which would overwrite the intent.
    """
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False, **FAST_GROUP
    )
    await consumer.start()
    try:
        async with asyncio.timeout(20):
            while not consumer.assignment():
                await consumer.getmany(timeout_ms=200)
        assigned = consumer.assignment()
        await consumer.commit(
            {tp: OffsetAndMetadata(7 + tp.partition, metadata) for tp in assigned}
        )
    finally:
        await consumer.stop()


def test_start_gives_a_ready_broker(kafka: EmbeddedKafka) -> None:
    assert kafka.running
    assert kafka.bootstrap == f"127.0.0.1:{kafka.port}"
    assert kafka.ready_seconds > 0  # start_kafka's own timeout bounds it
    assert java_pids_for(kafka.workdir) == [kafka.pid]


async def test_create_topic_is_idempotent(kafka: EmbeddedKafka) -> None:
    await create_topic(kafka.bootstrap, "idem", 4, config={"retention.ms": "3600000"})
    await create_topic(kafka.bootstrap, "idem", 4)  # exists: fine
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka.bootstrap)
    await admin.start()
    try:
        (meta,) = await admin.describe_topics(["idem"])
    finally:
        await admin.close()
    assert meta["error_code"] == 0
    assert sorted(p["partition"] for p in meta["partitions"]) == [0, 1, 2, 3]
    assert all(p["leader"] == 1 for p in meta["partitions"])


async def test_1000_keyed_lz4_messages_round_trip_with_manual_commit(kafka: EmbeddedKafka) -> None:
    topic, group, n = "roundtrip", "roundtrip-group", 1000
    await create_topic(kafka.bootstrap, topic, 4)
    producer = AIOKafkaProducer(
        bootstrap_servers=kafka.bootstrap, compression_type="lz4", acks="all", linger_ms=5
    )
    await producer.start()
    try:
        futures = [
            await producer.send(topic, key=f"k{i % 37}".encode(), value=str(i).encode())
            for i in range(n)
        ]
        sent = await asyncio.gather(*futures)
    finally:
        await producer.stop()
    assert {md.partition for md in sent} == {0, 1, 2, 3}

    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=kafka.bootstrap,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        **FAST_GROUP,
    )
    await consumer.start()
    by_key: dict[bytes, list[int]] = defaultdict(list)
    try:
        async with asyncio.timeout(30):
            while sum(map(len, by_key.values())) < n:
                for records in (await consumer.getmany(timeout_ms=500)).values():
                    for record in records:
                        by_key[record.key].append(int(record.value))
        await consumer.commit()
        ends = await consumer.end_offsets(list(consumer.assignment()))
    finally:
        await consumer.stop()

    assert sorted(v for values in by_key.values() for v in values) == list(range(n))
    assert all(values == sorted(values) for values in by_key.values())  # per-key order
    committed = await list_offsets(kafka.bootstrap, group)
    assert {tp: om.offset for tp, om in committed.items()} == ends
    assert sum(ends.values()) == n


async def test_commit_metadata_round_trips_through_the_admin_client(kafka: EmbeddedKafka) -> None:
    topic, group = "intents", "intent-group"
    metadata = '{"intent":"flush-42","rows":[1,2,3],"note":"ünïcødé ✓"}' + "x" * 1000
    await create_topic(kafka.bootstrap, topic, 4)
    await commit_with_metadata(kafka.bootstrap, topic, group, metadata)
    committed = await list_offsets(kafka.bootstrap, group)
    assert committed == {
        TopicPartition(topic, p): OffsetAndMetadata(7 + p, metadata) for p in range(4)
    }


async def test_pause_resume_still_delivers(kafka: EmbeddedKafka) -> None:
    topic = "outage"
    await create_topic(kafka.bootstrap, topic, 1)
    producer = AIOKafkaProducer(
        bootstrap_servers=kafka.bootstrap, acks="all", request_timeout_ms=30000
    )
    await producer.start()
    try:
        await producer.send_and_wait(topic, b"before")
        kafka.pause()
        try:
            pending = asyncio.create_task(producer.send_and_wait(topic, b"during"))
            await asyncio.sleep(3)
            assert not pending.done(), "a paused broker must not acknowledge"
        finally:
            kafka.resume()
        delivered = await asyncio.wait_for(pending, 30)
    finally:
        await producer.stop()

    consumer = AIOKafkaConsumer(bootstrap_servers=kafka.bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        tp = TopicPartition(topic, delivered.partition)
        consumer.assign([tp])
        consumer.seek(tp, delivered.offset)
        record = await asyncio.wait_for(consumer.getone(), 10)
    finally:
        await consumer.stop()
    assert (record.offset, record.value) == (delivered.offset, b"during")


async def test_stop_restart_kill_and_metadata_survives_restart(tmp_path: Path) -> None:
    broker = await asyncio.to_thread(start_kafka, tmp_path / "k")
    try:
        await create_topic(broker.bootstrap, "durable", 2)
        await commit_with_metadata(broker.bootstrap, "durable", "g", "intent-7")

        first_pid = broker.pid
        started = time.monotonic()
        await asyncio.to_thread(broker.stop)
        # Does not hang: stop() waits 20 s for the controlled shutdown, then SIGKILLs.
        assert time.monotonic() - started < 60
        assert broker.process.returncode is not None
        assert java_pids_for(broker.workdir) == []
        with pytest.raises(ProcessLookupError):
            os.kill(first_pid, 0)

        await asyncio.to_thread(broker.restart)  # same data dir and ports
        assert broker.pid != first_pid
        # Right after a restart the coordinator may still be loading the offsets topic;
        # aiokafka's admin then returns {} (it ignores the group-level error code).
        expected = {
            TopicPartition("durable", p): OffsetAndMetadata(7 + p, "intent-7") for p in (0, 1)
        }
        assert await committed_offsets(broker.bootstrap, "g") == expected
        assert await committed_offsets(broker.bootstrap, "g", [TopicPartition("durable", 1)]) == {
            TopicPartition("durable", 1): expected[TopicPartition("durable", 1)]
        }
        assert await committed_offsets(broker.bootstrap, "nobody") == {}

        broker.kill()
        assert broker.process.returncode == -9
        assert java_pids_for(broker.workdir) == []
    finally:
        broker.stop()


def test_install_is_idempotent_and_explains_missing_maven(
    kafka: EmbeddedKafka, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no mvn, no java
    monkeypatch.delenv("JAVA_HOME", raising=False)
    assert install() == libs_dir()  # complete cache: no tools needed (PATH has none)
    incomplete = libs_dir(tmp_path / "cache")
    incomplete.mkdir(parents=True)  # e.g. an interrupted download: no MARKER
    assert not (incomplete / MARKER).exists()
    with pytest.raises(KafkaBrokerError, match="apt-get install maven"):
        install(tmp_path / "cache")
