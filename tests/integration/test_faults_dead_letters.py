"""Dead letters are never lost: a failed send stays queued, an oversized one is truncated."""

from __future__ import annotations

import asyncio
import random
import time

import msgspec
import pytest
from aiokafka import AIOKafkaProducer

from tally.engine.deadletter import DeadLetters
from tally.engine.protocols import Rejected
from tally.kafka.admin import create_topic
from tally.loadtest.exactness import Expected, compare, fetch_totals
from tally.schemas.granularity import Calendar
from tally.schemas.wire import BatchEncoder

from .conftest import wait_for
from .helpers_dlq import produce_raw, read_dead_letters

pytestmark = [pytest.mark.integration, pytest.mark.faults]

SMALL = {"max.message.bytes": "4096"}


async def drain_until_done(letters: DeadLetters, attempts: int) -> int:
    """Call ``drain`` like the flush does; returns how many calls failed."""
    failed = 0
    for _ in range(attempts):
        try:
            await letters.drain()
            return failed
        except Exception:
            failed += 1
    raise AssertionError(f"drain never succeeded in {attempts} calls")


def test_a_failed_dead_letter_send_is_retried_not_dropped(make_stack):
    stack = make_stack(start_aggregators=False)
    bootstrap = stack.kafka.bootstrap

    async def scenario() -> int:
        await create_topic(bootstrap, "small.dlq", 1, config=SMALL)
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
        await producer.start()
        try:
            letters = DeadLetters(producer, "small.dlq")
            letters.queue("tally.events", 0, b"x" * 50_000, [Rejected(7, -1, "undecodable", "")])
            return await drain_until_done(letters, 6)
        finally:
            await producer.stop()

    failed = asyncio.run(scenario())
    assert failed >= 1  # the broker refused the first send: that is the case under test
    (letter,) = asyncio.run(read_dead_letters(bootstrap, "small.dlq", 1, 30))
    assert letter.source == "tally.events:0:7" and letter.reason == "undecodable"
    assert letter.headers["truncated"] == b"50000"
    assert letter.value == b"x" * len(letter.value) and len(letter.value) < 4096


def test_oversized_dead_letters_are_truncated_counted_and_the_rest_exact(make_stack):
    stack = make_stack(
        partitions=2,
        aggregators=1,
        start_aggregators=False,
        extra_args=["--dead-letter-topic", "small.dlq"],
    )
    bootstrap, topic = stack.kafka.bootstrap, stack.config.topic
    asyncio.run(create_topic(bootstrap, "small.dlq", 1, config=SMALL))
    stack.start_aggregator()
    now = int(time.time())
    encoder = BatchEncoder("dlq-test")
    expected = Expected(Calendar("UTC"), ("1m", "1h", "1d"))

    def valid(i: int) -> tuple[int, bytes, None]:
        keys, values = ("dlq", f"dlq::{i % 3}"), {"count": 1}
        expected.add_raw(keys, values, now)
        return (i % 2, encoder.encode([(now, keys, ("count",), [1])]), None)

    rng = random.Random(5)
    # Broker-side reject: a 50 kB undecodable record makes a dead letter over the topic's 4 kB.
    undecodable = bytes([0xC1]) + rng.randbytes(50_000)
    # Client-side reject: one event whose JSON dead letter exceeds the producer's 1 MiB.
    wide = [rng.random() for _ in range(70_000)]
    huge = msgspec.msgpack.encode([1, "s", ["k", "count"], [[0]], [[1]], [[now, 0, 0, wide]]])
    assert len(huge) < 2**20 < len(msgspec.json.encode(wide))
    records = [valid(i) for i in range(50)]
    records += [(0, undecodable, None), (1, huge, None)]
    records += [valid(i) for i in range(50, 100)]
    offsets = asyncio.run(produce_raw(bootstrap, topic, records))

    client = stack.clickhouse_client()
    want = expected.events

    def counted() -> float:
        query = "SELECT sum(value) FROM tally.rollups_1m WHERE key = 'dlq' AND path = 'count'"
        return client.query(query).result_rows[0][0] or 0

    wait_for(lambda: counted() >= want, 120, "valid events")
    letters = asyncio.run(read_dead_letters(bootstrap, "small.dlq", 2, 60))
    by_source = {d.source: d for d in letters}
    assert set(by_source) == {f"{topic}:0:{offsets[50]}", f"{topic}:1:{offsets[51]}"}, letters
    first, second = by_source[f"{topic}:0:{offsets[50]}"], by_source[f"{topic}:1:{offsets[51]}"]
    assert first.reason == "undecodable" and first.headers["truncated"] == b"50001"
    assert undecodable.startswith(first.value)
    assert second.reason == "values_shape_mismatch" and int(second.headers["truncated"]) > 2**20
    (proc,) = stack.aggregators
    metrics = stack.metrics(proc)
    assert metrics["tally_dead_letters_total{reason=undecodable}"] == 1
    assert metrics["tally_dead_letters_total{reason=values_shape_mismatch}"] == 1
    assert proc.poll() is None, "the aggregator died"
    assert stack.stop_aggregators() == [0]
    result = compare(expected.totals, fetch_totals(client))
    assert result.exact, result.mismatches
