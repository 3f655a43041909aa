"""The fold is bounded in bytes: wide events and hostile tables keep RSS near --max-fold-mb."""

from __future__ import annotations

import asyncio
import time

import msgspec
import psutil
import pytest

from tally.schemas.wire_columns import ColumnsEncoder

from .conftest import wait_for
from .helpers_dlq import produce_raw

pytestmark = [pytest.mark.integration, pytest.mark.faults]

BUDGET_MB = 32
WIDE_EVENTS = 4_000  # x 1,024 values: ~128 MiB of fold if nothing flushed early
HOSTILE_RECORDS = 30  # x 60k unused keysets: ~9.6 MiB each if interned


def hostile(now: int) -> bytes:
    """0.67 MiB: 60,000 keysets and shapes no event uses, and one valid event."""
    strings = ["hostile", "count", *(f"unused{i}" for i in range(1_000))]
    keysets = [[0], *([2 + (i + j) % 1_000 for j in range(4)] for i in range(60_000))]
    return msgspec.msgpack.encode([1, "h", strings, keysets, [[1]], [[now, 0, 0, [1]]]])


def test_wide_events_and_hostile_tables_stay_within_the_byte_budget(make_stack):
    stack = make_stack(
        partitions=2,
        aggregators=1,
        flush_interval_s=600,  # only the memory bound can flush
        extra_args=["--max-fold-mb", str(BUDGET_MB), "--granularities", "1m"],
    )
    (proc,) = stack.aggregators
    process = psutil.Process(proc.pid)

    def assigned() -> bool:
        try:
            return stack.metrics(proc).get("tally_assigned_partitions") == 2
        except OSError:
            return False

    wait_for(assigned, 120, "partitions assigned")
    now = int(time.time())
    encoder = ColumnsEncoder("wide")
    paths = tuple(f"p{i}" for i in range(1_024))
    wide = [
        (i % 2, encoder.encode([(now, (f"wide::{i}",), paths, [1] * 1_024)]), None)
        for i in range(WIDE_EVENTS)
    ]
    # Warm-up: the first flush loads the insert encoder's code and grows the allocator's
    # arenas once; the bound is about what happens after that.
    warm = 1_200
    asyncio.run(produce_raw(stack.kafka.bootstrap, stack.config.topic, wide[:warm]))
    wait_for(lambda: stack.metrics(proc)["tally_flushes_total"] >= 1, 120, "a first flush")
    idle = process.memory_info().rss
    payload = hostile(now)
    assert 0.6 * 2**20 < len(payload) < 2**20
    rest = wide[warm:]
    records = [*rest[:1_500], *((i % 2, payload, None) for i in range(HOSTILE_RECORDS))]
    records += rest[1_500:]

    peak = [idle]
    sampling = True

    async def sample() -> None:
        while sampling:
            peak[0] = max(peak[0], process.memory_info().rss)
            await asyncio.sleep(0.05)

    async def produce_and_sample() -> None:
        nonlocal sampling
        sampler = asyncio.create_task(sample())
        await produce_raw(stack.kafka.bootstrap, stack.config.topic, records)
        sampling = False
        await sampler

    asyncio.run(produce_and_sample())
    client = stack.clickhouse_client()

    def folded() -> bool:
        peak[0] = max(peak[0], process.memory_info().rss)
        return stack.metrics(proc).get("tally_events_in_total", 0) >= WIDE_EVENTS + 30

    wait_for(folded, 300, "every event folded", step=0.1)
    for _ in range(20):
        peak[0] = max(peak[0], process.memory_info().rss)
        time.sleep(0.1)
    m = stack.metrics(proc)
    # Flushed early by bytes (the 600 s interval never came), and the gauge respects the budget.
    assert m["tally_flushes_total"] >= 4, m
    assert m["tally_fold_bytes"] <= BUDGET_MB * 2**20
    growth = (peak[0] - idle) / 2**20
    # Budget for the fold, about as much again while a flush encodes it, fetch buffers, and
    # for column records the arrays beside the objects rows() makes of them at the flush
    # (both counted in the budget). "idle" is measured after a first flush, and the aggregator
    # now returns freed buffers to the system (aggregator/allocator.py), so idle sits lower than
    # it did (peak RSS under load: 285-296 MiB against 310-347 for 1f75232, growth 104-126
    # against 19-102): the bound is on what the budget implies, 5x, not on where idle lands.
    print(f"RSS growth {growth:.1f} MiB over idle {idle / 2**20:.1f} MiB")
    assert growth < 5 * BUDGET_MB, (growth, idle / 2**20, m["tally_flushes_total"])
    assert stack.stop_aggregators() == [0]
    query = "SELECT key, sum(value) FROM tally.rollups WHERE path IN ('p0', 'count') GROUP BY key"
    totals = dict(client.query(query).result_rows)
    assert totals.pop("hostile") == HOSTILE_RECORDS
    assert len(totals) == WIDE_EVENTS and set(totals.values()) == {1}
