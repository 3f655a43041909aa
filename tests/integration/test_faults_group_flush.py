"""Combined flushes stay exact: a member frozen and killed -9 between its group intent and its
insert is replayed by two new owners at once; a 2 -> 8 -> 2 rebalance storm under load, with
combined flushes and with the default (paced, per-partition) write side."""

from __future__ import annotations

import asyncio
import signal
import threading
import time

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from tally.embedded.clickhouse.process import start_clickhouse
from tally.ingest import ClientSettings, Tracker
from tally.loadtest.exactness import Expected, compare, fetch_totals
from tally.schemas.access import access_model
from tally.schemas.granularity import Calendar

from .conftest import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.faults]


def track(tracker: Tracker, expected: Expected, count: int, tag: str, seconds: float = 0) -> None:
    """Track ``count`` events over ``seconds`` (at least), over many keys (every partition)."""
    now = int(time.time())
    began = time.monotonic()
    for i in range(count):
        keys = ("jobs", f"jobs::{tag}{i % 97}")
        values = {"count": 1, "v": i % 11}
        assert tracker.track(keys, values, at=now)
        expected.add_raw(keys, values, now)
        if seconds and i % 500 == 0:
            ahead = began + seconds * i / count - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)


async def committed_metadata(bootstrap: str, group: str) -> dict[int, str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    return {tp.partition: meta.metadata for tp, meta in offsets.items()}


def total(stack) -> float:
    client = stack.clickhouse_client()
    return client.query("SELECT sum(value) FROM tally.rollups").result_rows[0][0] or 0


def test_killed_between_group_intent_and_insert_two_new_owners_replay_the_group(make_stack):
    # A long session keeps the frozen member in the group until both new members have joined,
    # so its four partitions are spread over them (2 + 2) in one rebalance.
    stack = make_stack(
        partitions=4,
        aggregators=1,
        flush_interval_s=0.5,
        session_timeout_ms=60_000,
        extra_args=["--group-flush"],
    )
    expected = Expected(Calendar("UTC"), ("1m", "1h", "1d"))
    tracker = Tracker(ClientSettings(bootstrap_servers=stack.kafka.bootstrap, strict=True))
    track(tracker, expected, 4_000, "a")
    assert tracker.flush(60)
    wait_for(lambda: total(stack) >= sum(expected.totals.values()), 90, "the first events")

    port, path = stack.clickhouse.port, stack.clickhouse.path
    stack.clickhouse.stop()
    track(tracker, expected, 8_000, "b")
    assert tracker.flush(60)
    bootstrap, group = stack.kafka.bootstrap, stack.config.group

    def one_group_pending() -> bool:
        meta = asyncio.run(committed_metadata(bootstrap, group))
        bodies = {m.split(":", 3)[3] for m in meta.values() if m.startswith("tally2:")}
        return (
            len(meta) == 4
            and all(m.startswith("tally2:") for m in meta.values())
            and (len(bodies) == 1)
        )

    wait_for(one_group_pending, 60, "one group intent over the 4 partitions")
    victim = stack.aggregators[0]
    victim.send_signal(signal.SIGSTOP)  # between its intent commit and its insert
    stack.clickhouse = start_clickhouse(path, port=port, access=access_model(stack.config.database))
    stack.config.session_timeout_ms = 6_000  # the new owners; the victim keeps its 60 s
    owners = [stack.start_aggregator(), stack.start_aggregator()]
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    wait_for(lambda: total(stack) >= sum(expected.totals.values()), 240, "the replays")
    time.sleep(2)  # let a second, deduplicated replay finish too
    replays = [stack.metrics(p).get("tally_group_inserts_total{phase=replay}", 0) for p in owners]
    assigned = [stack.metrics(p).get("tally_assigned_partitions", 0) for p in owners]
    assert stack.stop_aggregators() == [-signal.SIGKILL, 0, 0]
    result = compare(expected.totals, fetch_totals(stack.clickhouse_client()))
    assert result.exact, result.mismatches
    assert assigned == [2, 2], assigned
    assert replays == [1, 1], replays  # both new owners replayed the same group


@pytest.mark.parametrize("mode", ["paced", "group-flush"])
def test_rebalance_storm_2_to_8_to_2_under_load_is_exact(make_stack, mode):
    """The default write side (per-partition flushes under the pacer) and combined flushes."""
    stack = make_stack(
        partitions=8,
        aggregators=2,
        flush_interval_s=0.3,
        session_timeout_ms=3_000,
        extra_args=["--group-flush"] if mode == "group-flush" else [],
    )
    expected = Expected(Calendar("UTC"), ("1m", "1h", "1d"))
    done = threading.Event()

    def produce() -> None:
        tracker = Tracker(ClientSettings(bootstrap_servers=stack.kafka.bootstrap, strict=True))
        track(tracker, expected, 60_000, "s", seconds=30)
        assert tracker.flush(120)
        tracker.close()
        done.set()

    producer = threading.Thread(target=produce, daemon=True)
    producer.start()
    time.sleep(4)
    for _ in range(6):
        stack.start_aggregator()

    def everyone_owns_a_partition() -> bool:
        try:
            owned = [
                stack.metrics(p).get("tally_assigned_partitions", 0) for p in stack.aggregators
            ]
        except OSError:
            return False  # not serving yet
        return all(n >= 1 for n in owned)

    wait_for(everyone_owns_a_partition, 120, "8 members with a partition each")
    time.sleep(2)
    leaving = stack.aggregators[2:]
    for proc in leaving:
        proc.send_signal(signal.SIGTERM)
    assert [p.wait(60) for p in leaving] == [0] * 6
    producer.join(180)
    assert done.is_set(), "producer did not finish"
    wait_for(lambda: total(stack) >= sum(expected.totals.values()), 180, "every event")
    groups = sum(
        v for p in stack.aggregators[:2] for k, v in stack.metrics(p).items()
        if k.startswith("tally_group_inserts_total")
    )  # fmt: skip
    assert stack.stop_aggregators() == [0] * 8
    result = compare(expected.totals, fetch_totals(stack.clickhouse_client()))
    assert result.exact, result.mismatches
    assert (groups > 0) == (mode == "group-flush"), groups  # combined flushes only when asked
