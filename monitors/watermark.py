"""When is a bucket durable? When the aggregators have committed past every record that could
hold it, read from Kafka itself (no aggregator change, no consumer-group membership).

For a bucket ending at ``E`` and each partition of the events topic, find the first record
stamped at or after ``E + grace`` (``offsets_for_times``). The client stamps records when it
sends them, so an event for the bucket is sent before ``E + grace`` unless the client held it
longer than ``grace`` (linger, retries, the spool): ``grace`` must cover the client's batching
(default 10 s; linger is 5 ms and a send retry a few seconds). The aggregators commit an offset
only after ClickHouse acknowledged the rows before it, so once the group's committed offset
has reached that first record on every partition, every record before it is in ClickHouse.
A partition with no record after ``E + grace`` is durable when its committed offset equals its
end offset (all caught up) and ``E + grace`` has passed.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Protocol

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from tally.kafka.security import KafkaSecurity

log = logging.getLogger("tally.monitors.watermark")


class Watermark(Protocol):
    """Decides whether the bucket ending at ``end`` (unix s) may be judged."""

    async def durable(self, end: int, now: float) -> bool: ...

    async def refresh(self) -> None: ...

    async def close(self) -> None: ...


@dataclass
class WallClock:
    """For backtests and tests without Kafka: a bucket is durable ``grace`` after its end."""

    grace_s: float = 10.0

    async def durable(self, end: int, now: float) -> bool:
        return now >= end + self.grace_s

    async def refresh(self) -> None:
        return None

    async def close(self) -> None:
        return None


@dataclass
class KafkaWatermark:
    """Committed offsets of the aggregators' group against ``offsets_for_times``."""

    bootstrap: str
    topic: str
    group: str
    grace_s: float = 10.0
    security: KafkaSecurity = field(default_factory=KafkaSecurity)
    _consumer: AIOKafkaConsumer | None = None
    _admin: AIOKafkaAdminClient | None = None
    _committed: dict[int, int] = field(default_factory=dict)
    _ends: dict[int, int] = field(default_factory=dict)
    _partitions: list[TopicPartition] = field(default_factory=list)
    _cache: dict[int, bool] = field(default_factory=dict)

    async def start(self) -> None:
        kwargs = self.security.aiokafka_kwargs()
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap, enable_auto_commit=False, **kwargs
        )
        await self._consumer.start()
        self._admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap, **kwargs)
        await self._admin.start()

    async def close(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None
        if self._admin is not None:
            await self._admin.close()
            self._admin = None

    async def refresh(self) -> None:
        """Read committed and end offsets once per evaluation tick."""
        if self._consumer is None:
            await self.start()
        assert self._consumer is not None and self._admin is not None
        self._cache = {}
        try:
            partitions = await self._topic_partitions()
            committed = await self._admin.list_consumer_group_offsets(self.group)
            ends = await self._consumer.end_offsets(partitions) if partitions else {}
        except KafkaError as exc:
            # Nothing is proven durable until Kafka answers again (the coordinator moving,
            # the broker restarting): evaluation waits, it never guesses.
            log.warning("watermark: Kafka did not answer (%s); not judging yet", exc)
            self._partitions = []
            return
        self._partitions = partitions
        self._committed = {
            tp.partition: meta.offset
            for tp, meta in committed.items()
            if tp.topic == self.topic and meta is not None and meta.offset >= 0
        }
        self._ends = {tp.partition: offset for tp, offset in ends.items()}

    async def _topic_partitions(self) -> list[TopicPartition]:
        """The events topic's partitions, assigned to our group-less consumer and paused
        (so it knows their leaders for offset lookups but never fetches a record)."""
        assert self._consumer is not None and self._admin is not None
        described = await self._admin.describe_topics([self.topic])
        numbers = sorted(
            p["partition"] for t in described if t["topic"] == self.topic and not t["error_code"]
            for p in t["partitions"]
        )  # fmt: skip
        partitions = [TopicPartition(self.topic, p) for p in numbers]
        if partitions and set(partitions) != self._consumer.assignment():
            self._consumer.assign(partitions)
            self._consumer.pause(*partitions)
        return partitions

    async def durable(self, end: int, now: float) -> bool:
        """True when every partition's committed offset covers the bucket ending at ``end``."""
        if end in self._cache:
            return self._cache[end]
        assert self._consumer is not None
        if not self._partitions:
            return False  # the topic does not exist yet: nothing can be proven
        cutoff_ms = int((end + self.grace_s) * 1000)
        try:
            firsts = await self._consumer.offsets_for_times(
                {tp: cutoff_ms for tp in self._partitions}
            )
        except KafkaError as exc:
            log.warning("watermark: offsets_for_times failed (%s); not judging yet", exc)
            return False
        ok = True
        for tp in self._partitions:
            committed = self._committed.get(tp.partition, 0)
            first = firsts.get(tp)
            if first is not None:
                ok = committed >= first.offset
            else:
                ok = now >= end + self.grace_s and committed >= self._ends.get(tp.partition, 0)
            if not ok:
                break
        self._cache[end] = ok
        return ok

    def lag(self) -> int:
        """Records not yet committed by the aggregators, over all partitions (for status)."""
        return sum(max(0, e - self._committed.get(p, 0)) for p, e in self._ends.items())


def now() -> float:
    """The wall clock (injectable in the service for tests)."""
    return time.time()
