"""An insert that ClickHouse always rejects: isolated, dead-lettered, and nothing else stalls."""

from __future__ import annotations

import asyncio
import time

import pytest

from tally.loadtest.exactness import Expected, compare, fetch_totals
from tally.schemas.ddl import RollupSchema
from tally.schemas.granularity import Calendar
from tally.schemas.wire import BatchEncoder

from .conftest import wait_for
from .helpers_dlq import produce_raw, read_dead_letters

pytestmark = [pytest.mark.integration, pytest.mark.faults]

PARTITIONS = 8


def guard_statement() -> str:
    """The rollups view, made to throw on the poison key before it writes anything.

    The throw has to come from the view that writes ``rollups`` itself: views of one insert run
    in an unspecified order, and rows that one view wrote before another threw would stay
    (README, "Delivery guarantees": only rejections before anything is written keep the count
    exact). The key-discovery views keep min/max times, so a repeat there changes nothing.
    """
    schema = RollupSchema()
    inner = "GROUP BY key, minute, path"  # the inner query's, after its ARRAY JOINs
    query = schema.expand_query()
    assert query.count(inner) == 1
    guarded = query.replace(
        inner, f"WHERE throwIf(has(keys, 'poison::view'), 'test poison') = 0 {inner}"
    )
    return f"ALTER TABLE {schema.expand_view} MODIFY QUERY {guarded}"


def valid_records(
    encoder: BatchEncoder, expected: Expected, now: int, tag: str, per_partition: int
) -> list[tuple[int, bytes, int | None]]:
    out = []
    for i in range(per_partition):
        for p in range(PARTITIONS):
            events = []
            for j in range(5):
                keys = ("valid", f"valid::{tag}{p}")
                values = {"count": 1, "v": (i + j) % 7}
                at = now - (i % 50)
                events.append((at, keys, ("count", "v"), [1, (i + j) % 7]))
                expected.add_raw(keys, values, at)
            out.append((p, encoder.encode(events), None))
    return out


def valid_total(expected: Expected) -> float:
    return sum(
        v for (g, k, _b, path), v in expected.totals.items()
        if (g, k, path) == ("1m", "valid", "count")
    )  # fmt: skip


def total(client) -> float:
    query = "SELECT sum(value) FROM tally.rollups_1m WHERE key = 'valid' AND path = 'count'"
    return client.query(query).result_rows[0][0] or 0


@pytest.mark.parametrize("trigger", ["timestamp_zero", "throwif_view"])
def test_poison_insert_is_dead_lettered_and_the_rest_stays_exact(make_stack, trigger):
    stack = make_stack(
        partitions=PARTITIONS,
        aggregators=2,
        flush_interval_s=0.5,
        extra_args=["--max-insert-attempts", "3", "--group-flush"],
    )
    client = stack.clickhouse_client()
    if trigger == "throwif_view":
        # Every aggregator applies the DDL (the view's query included) when it starts: guard the
        # view only once both have joined the group, i.e. are past that.
        def joined() -> bool:
            try:
                return all(
                    stack.metrics(p)["tally_assigned_partitions"] > 0 for p in stack.aggregators
                )
            except (OSError, KeyError):
                return False

        wait_for(joined, 120, "both aggregators in the group")
        client.command(guard_statement())
    encoder = BatchEncoder("poison-test")
    expected = Expected(Calendar("UTC"), ("1m", "1h", "1d"))
    now = int(time.time())
    bootstrap, topic = stack.kafka.bootstrap, stack.config.topic

    before = valid_records(encoder, expected, now, "a", 40)
    if trigger == "timestamp_zero":
        # Kafka record time 0: at=-120 is within the age limit relative to it, and the row
        # gets minute -120, which a DateTime column cannot hold.
        poison = (3, encoder.encode([(-120, ("poison",), ("count",), [1])]), 0)
    else:
        poison = (3, encoder.encode([(now, ("poison::view",), ("count",), [1])]), None)
    after = valid_records(encoder, expected, now, "b", 40)
    # The poison lands in the middle of partition 3's traffic, in the same ranges as valid ones.
    half = len(before) // 2
    records = [*before[:half], poison, *before[half:], *after]
    offsets = asyncio.run(produce_raw(bootstrap, topic, records))
    poison_offset = offsets[half]

    want = valid_total(expected)
    wait_for(lambda: total(client) >= want, 180, "valid events around the poison")

    letters = asyncio.run(read_dead_letters(bootstrap, stack.dlq_topic, 1, 60))
    assert [d.source for d in letters] == [f"{topic}:3:{poison_offset}"], letters
    if trigger == "timestamp_zero":
        # The fold predicts this rejection (issue #8 item 3): the event never reaches an insert.
        assert letters[0].reason == "time_out_of_range"
    else:
        assert letters[0].value == poison[1]  # the original bytes of the record
        assert letters[0].reason == "insert_rejected"
        counted = sum(
            v
            for p in stack.aggregators
            for k, v in stack.metrics(p).items()
            if k == "tally_dead_letters_total{reason=insert_rejected}"
        )
        assert counted == 1

    # Nothing stalled: later traffic on every partition, the poisoned one included, is counted.
    more = valid_records(encoder, expected, now, "c", 10)
    asyncio.run(produce_raw(bootstrap, topic, more))
    want = valid_total(expected)
    wait_for(lambda: total(client) >= want, 120, "traffic after the poison")
    assert all(p.poll() is None for p in stack.aggregators), "an aggregator died"
    grouped = sum(
        v for p in stack.aggregators for k, v in stack.metrics(p).items()
        if k.startswith("tally_group_inserts_total")
    )  # fmt: skip
    assert grouped > 0, "no combined flush happened"
    fallbacks = sum(
        (stack.workdir / f"aggregator-{i}.log").read_text().count("group insert rejected")
        for i in range(len(stack.metrics_ports))
    )
    print(f"{grouped:.0f} combined inserts, {fallbacks} rejected groups split per partition")
    assert stack.stop_aggregators() == [0, 0]
    result = compare(expected.totals, fetch_totals(client))
    assert result.exact, result.mismatches
