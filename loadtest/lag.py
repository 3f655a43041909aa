"""Consumer lag from Kafka itself: end offsets minus the group's committed offsets.

The aggregators commit ``end + 1`` only after ClickHouse acknowledged a flush, so this lag
counts every record not yet durable in the rollups (in records, not events: one record holds
a batch of events). A partition without a commit counts from offset 0.
"""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import Future

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient


class LagProbe:
    """Owns an event loop thread with one consumer (end offsets) and one admin client."""

    def __init__(self, bootstrap: str, topic: str, group: str) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.group = group
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="lag", daemon=True)
        self._consumer: AIOKafkaConsumer | None = None
        self._admin: AIOKafkaAdminClient | None = None
        self._partitions: list[TopicPartition] = []

    def start(self, timeout: float = 60) -> None:
        """Connect; raises if Kafka is unreachable or the topic has no partitions."""
        self._thread.start()
        try:
            self._call(self._start()).result(timeout)
        except BaseException:
            self.close()
            raise

    def end_offsets(self, timeout: float = 10) -> dict[TopicPartition, int]:
        """High watermark of every partition of the topic."""
        return self._call(self._end_offsets()).result(timeout)

    def committed(self, timeout: float = 10) -> dict[TopicPartition, int]:
        """The group's committed offset per partition (0 where it has none)."""
        return self._call(self._committed()).result(timeout)

    def lag(self, timeout: float = 10) -> int | None:
        """Records not yet committed by the group, summed over partitions; None on error."""
        try:
            return self._call(self._lag()).result(timeout)
        except Exception:
            return None

    def close(self) -> None:
        """Close the clients and stop the loop thread."""
        if self._thread.is_alive():
            try:
                self._call(self._close()).result(10)
            finally:
                self._loop.call_soon_threadsafe(self._loop.stop)
                self._thread.join(10)
        self._loop.close()

    def _call(self, coro) -> Future:
        return asyncio.run_coroutine_threadsafe(coro, self._loop)

    async def _start(self) -> None:
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap, client_id="tally-loadtest-lag"
        )
        await self._consumer.start()
        self._admin = AIOKafkaAdminClient(
            bootstrap_servers=self.bootstrap, client_id="tally-loadtest-lag"
        )
        await self._admin.start()
        (meta,) = await self._admin.describe_topics([self.topic])
        parts = [p["partition"] for p in meta["partitions"]]
        if meta["error_code"] or not parts:
            raise RuntimeError(f"topic {self.topic!r} has no partitions")
        self._partitions = [TopicPartition(self.topic, p) for p in sorted(parts)]

    async def _end_offsets(self) -> dict[TopicPartition, int]:
        assert self._consumer is not None
        return await self._consumer.end_offsets(self._partitions)

    async def _committed(self) -> dict[TopicPartition, int]:
        assert self._admin is not None
        found = await self._admin.list_consumer_group_offsets(
            self.group, partitions=self._partitions
        )
        return {
            tp: (found[tp].offset if tp in found and found[tp].offset >= 0 else 0)
            for tp in self._partitions
        }

    async def _lag(self) -> int:
        ends = await self._end_offsets()
        committed = await self._committed()
        return sum(max(0, ends[tp] - committed[tp]) for tp in self._partitions)

    async def _close(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()
        if self._admin is not None:
            await self._admin.close()
