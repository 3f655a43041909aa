"""The client against the real broker: every tracked event arrives exactly once.

Oversized records, forked workers with a spool, short-lived scripts bootstrapping by hostname,
and spool replay (order, re-routing, corrupt files). Only Kafka is needed: the tests read the
topic back and decode every record. Client-side folding is on (the default): tests about one
event's fate give each event its own minute (``minute(i)``), so nothing folds and every event
stays visible on the wire; the forked workers' test folds and checks the sums.
"""

from __future__ import annotations

import asyncio
import os
import random
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition

from tally.embedded.kafka_broker import start_kafka
from tally.embedded.kafka_node import EmbeddedKafka
from tally.ingest import ClientSettings, Tracker
from tally.kafka.admin import create_topic
from tally.schemas.wire import BatchDecoder
from tally.schemas.wire_columns import batch_events

pytestmark = pytest.mark.integration

CRON_SCRIPT = Path(__file__).with_name("client_cron.py")
T0 = 1_700_000_000


def minute(i: int) -> int:
    """A distinct minute per event: events of different minutes never fold together."""
    return T0 + 60 * i


@pytest.fixture(scope="module")
def kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedKafka]:
    with start_kafka(tmp_path_factory.mktemp("kafka")) as broker:
        yield broker


TOPICS: dict[str, int] = {}  # name -> partitions


def new_topic(kafka: EmbeddedKafka, partitions: int = 2, **config: str) -> str:
    name = f"client-{os.urandom(4).hex()}"
    TOPICS[name] = partitions
    asyncio.run(create_topic(kafka.bootstrap, name, partitions, config=config))
    return name


def read_topic(kafka: EmbeddedKafka, topic: str) -> list[tuple[int, int, tuple, dict]]:
    """Every event on ``topic``: (partition, offset, keys, {path: value})."""

    async def run() -> list[tuple[int, int, tuple, dict]]:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=kafka.bootstrap,
            enable_auto_commit=False,
            max_partition_fetch_bytes=8 << 20,
        )
        await consumer.start()
        try:
            parts = [TopicPartition(topic, p) for p in range(TOPICS[topic])]
            consumer.assign(parts)
            await consumer.seek_to_beginning(*parts)
            ends = await consumer.end_offsets(parts)
            decoder, events = BatchDecoder(), []
            async with asyncio.timeout(60):
                while [tp for tp in parts if await consumer.position(tp) < ends[tp]]:
                    for tp, records in (await consumer.getmany(timeout_ms=500)).items():
                        for record in records:
                            batch = decoder.decode(record.value)
                            for event in batch_events(batch):
                                keys = tuple(batch.strings[i] for i in batch.keysets[event.keyset])
                                paths = [batch.strings[i] for i in batch.shapes[event.shape]]
                                values = dict(zip(paths, event.values, strict=True))
                                events.append((tp.partition, record.offset, keys, values))
            return events
        finally:
            await consumer.stop()

    return asyncio.run(run())


def ids_of(events: list[tuple[int, int, tuple, dict]]) -> Counter:
    return Counter(values["id"] for *_, values in events)


def test_an_oversized_batch_next_to_normal_ones_arrives_exactly_once(kafka):
    # The topic takes at most 200 kB per record batch; the client's cap (900 KiB) is larger,
    # and 2,000 wide events (~5 MB) are larger than the producer's 4 MiB request limit too.
    topic = new_topic(kafka, 2, **{"max.message.bytes": "200000"})
    tracker = Tracker(ClientSettings(bootstrap_servers=kafka.bootstrap, topic=topic, linger_ms=500))
    rng = random.Random(7)
    expected = []
    for i in range(300):  # normal events on both partitions, tracked first
        tracker.track(("small", f"small::{i % 7}"), {"id": i, "count": 1}, at=minute(i))
        expected.append(i)
    for i in range(300, 2_300):  # one routing key: one partition, one 2,000-event chunk
        wide = {"id": i, "w": {f"v{j:03d}": rng.random() for j in range(280)}}
        tracker.track(("wide", "wide::one"), wide, at=minute(i))
        expected.append(i)
    for i in range(2_300, 2_600):
        tracker.track(("small", f"small::{i % 7}"), {"id": i, "count": 1}, at=minute(i))
        expected.append(i)
    assert tracker.flush(120), tracker.stats()
    stats = tracker.stats()
    tracker.close()
    arrived = ids_of(read_topic(kafka, topic))
    assert sorted(arrived.elements()) == expected, "every event exactly once"
    assert stats.sent_events == len(expected)
    assert stats.send_rejected >= 1 and stats.split_records >= 1  # told apart, and counted
    assert stats.send_failures == 0  # not mistaken for an outage
    assert stats.dropped_rejected == 0 and stats.internal_errors == 0


def test_one_event_over_the_brokers_limit_is_dropped_and_counted_the_rest_arrives(kafka):
    topic = new_topic(kafka, 1, **{"max.message.bytes": "20000"})
    tracker = Tracker(
        ClientSettings(
            bootstrap_servers=kafka.bootstrap, topic=topic, linger_ms=200, compression=None
        )
    )
    tracker.track("k", {"id": 0}, at=minute(0))
    wide = {f"value_number_{j:04d}": j + 0.5 for j in range(1000)}
    tracker.track("k", {"id": 1, "w": wide}, at=minute(1))
    tracker.track("k", {"id": 2}, at=minute(2))
    assert tracker.flush(60)
    stats = tracker.stats()
    tracker.close()
    assert ids_of(read_topic(kafka, topic)) == Counter({0: 1, 2: 1})
    assert stats.dropped_rejected == 1 and stats.sent_events == 2


def test_a_topic_limit_below_the_smallest_cap_ends_in_counted_drops_not_a_loop(kafka):
    topic = new_topic(kafka, 1, **{"max.message.bytes": "700"})
    tracker = Tracker(
        ClientSettings(
            bootstrap_servers=kafka.bootstrap, topic=topic, linger_ms=200, compression=None
        )
    )
    for i in range(6):  # two small events, four of ~1.3 kB
        wide = {} if i % 3 == 0 else {"w": {f"value_number_{j:03d}": j for j in range(60)}}
        tracker.track("k", {"id": i, **wide}, at=minute(i))
    assert tracker.flush(90), tracker.stats()
    stats = tracker.stats()
    tracker.close()
    assert ids_of(read_topic(kafka, topic)) == Counter({0: 1, 3: 1})
    assert stats.dropped_rejected == 4 and stats.sent_events == 2


FORK_CHILD_EVENTS = 100


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork only")
def test_forked_workers_with_a_spool_each_deliver_everything(kafka, tmp_path):
    topic = new_topic(kafka, 2)
    spool = tmp_path / "spool"
    tracker = Tracker(
        ClientSettings(bootstrap_servers=kafka.bootstrap, topic=topic, spool_dir=spool)
    )
    tracker.track("parent", {"id": -1})  # the parent tracked: its spool lock is held
    assert tracker.flush(60)
    children = []
    for worker in range(3):
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # a prefork worker
            code = 1
            try:
                for i in range(FORK_CHILD_EVENTS):  # 5 keys, one minute: these fold
                    tracker.track(("job", f"job::{i % 5}"), {"n": 1, "id": worker * 1000 + i})
                ok = tracker.flush(60)
                stats = tracker.stats()
                os.write(write, f"{ok} {stats.sent_events} {stats.internal_errors}".encode())
                code = 0
            finally:
                os._exit(code)
        os.close(write)
        children.append((pid, read))
    reports = []
    for pid, read in children:
        _, status = os.waitpid(pid, 0)
        with os.fdopen(read, "rb") as fh:
            reports.append(fh.read().decode())
        assert status == 0
    tracker.close()
    assert reports == [f"True {FORK_CHILD_EVENTS} 0"] * 3  # tracked events, folded or not
    events = read_topic(kafka, topic)
    assert len(events) < 3 * FORK_CHILD_EVENTS  # folded on the wire
    by_key: dict[tuple, list[int]] = {}
    for *_, keys, values in events:
        total = by_key.setdefault(keys, [0, 0])
        total[0] += values.get("n", 0)
        total[1] += values["id"]
    expected = {("parent",): [0, -1]}
    for w in range(3):
        for i in range(FORK_CHILD_EVENTS):
            total = expected.setdefault(("job", f"job::{i % 5}"), [0, 0])
            total[0] += 1
            total[1] += w * 1000 + i
    assert by_key == expected  # every child's events exactly once, none of the parent's again


@pytest.mark.parametrize("scope", ["global", "local"])
def test_a_script_that_tracks_and_exits_delivers_when_bootstrapping_by_hostname(kafka, scope):
    """``local``: the script drops its tracker before exiting; the exit hook still delivers."""
    topic = new_topic(kafka, 2)
    bootstrap = f"localhost:{kafka.port}"
    done = subprocess.run(
        [sys.executable, str(CRON_SCRIPT), bootstrap, topic, "2", "", scope],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    arrived = ids_of(read_topic(kafka, topic))
    assert arrived == Counter({0: 1, 1: 1}), done.stderr[-2000:]


def test_spool_replay_is_in_order_of_arrival_and_reroutes_without_losing_events(kafka, tmp_path):
    topic = new_topic(kafka, 3)
    spool = tmp_path / "spool"
    # An earlier process spooled records before it ever reached the broker (unrouted).
    subprocess.run(
        [sys.executable, str(CRON_SCRIPT), "127.0.0.1:1", topic, "40", str(spool)],
        check=True,
        timeout=120,
        capture_output=True,
    )
    assert list(spool.rglob("*.rec"))
    # A successor adopts them; its own new events must come after the old ones.
    tracker = Tracker(
        ClientSettings(bootstrap_servers=kafka.bootstrap, topic=topic, spool_dir=spool, linger_ms=5)
    )
    for i in range(100, 140):
        tracker.track(("cron", f"cron::{i % 4}"), {"id": i}, at=minute(i))
    assert tracker.flush(60), tracker.stats()
    stats = tracker.stats()
    tracker.close()
    events = read_topic(kafka, topic)
    assert sorted(ids_of(events).elements()) == list(range(40)) + list(range(100, 140))
    by_partition: dict[int, list[int]] = {}
    for partition, _offset, _keys, values in sorted(events, key=lambda e: (e[0], e[1])):
        by_partition.setdefault(partition, []).append(values["id"])
    for ids in by_partition.values():
        assert ids == sorted(ids), "an old spooled event was sent after a newer one"
    assert stats.drained == 40  # the re-routed spooled events are not counted again
    assert not list(spool.rglob("*.rec"))


def test_a_corrupt_spool_file_is_quarantined_and_the_rest_delivered(kafka, tmp_path):
    topic = new_topic(kafka, 2)
    spool_dir = tmp_path / "spool"
    dead = spool_dir / "dead-process"  # left by a process that died: lock file free
    dead.mkdir(parents=True)
    (dead / ".lock").touch()
    now = time.time_ns()
    (dead / f"{now:020d}-a.rec").write_bytes(b"\xff\xff\xff\xff\x93not a batch")  # unrouted
    (dead / f"{now + 1:020d}-b.rec").write_bytes(b"\x00\x00\x00\x00")  # an empty record
    (dead / f"{now + 2:020d}-c.rec").write_bytes(b"\x00\x01")  # no header
    tracker = Tracker(
        ClientSettings(bootstrap_servers=kafka.bootstrap, topic=topic, spool_dir=spool_dir)
    )
    tracker.track("k", {"id": 5})
    assert tracker.flush(60), tracker.stats()
    stats = tracker.stats()
    tracker.close()
    assert stats.spool_quarantined == 3
    assert len(list((spool_dir / ".quarantine").iterdir())) == 3
    assert ids_of(read_topic(kafka, topic)) == Counter({5: 1})
    assert not list(spool_dir.rglob("*.rec"))
