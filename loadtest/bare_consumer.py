"""A consumer that reads a topic from the beginning with the aggregator's fetch sizes and no
commits: the bare consume the benchmarks compare the aggregator against."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

from aiokafka import AIOKafkaConsumer, TopicPartition


@contextlib.asynccontextmanager
async def from_the_beginning(
    topic: str, bootstrap: str, group: str, max_poll_records: int, timeout_s: float = 120
) -> AsyncIterator[tuple[AIOKafkaConsumer, dict[TopicPartition, int]]]:
    """The started consumer, once the group assigned it its partitions, and their end offsets;
    stopped on exit."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=max_poll_records,
        fetch_max_bytes=64 * 1024 * 1024,
        max_partition_fetch_bytes=8 * 1024 * 1024,
    )
    await consumer.start()
    try:
        deadline = time.monotonic() + timeout_s
        while not consumer.assignment():
            if time.monotonic() > deadline:
                raise TimeoutError("no partitions assigned")
            await asyncio.sleep(0.01)
        yield consumer, await consumer.end_offsets(list(consumer.assignment()))
    finally:
        await consumer.stop()
