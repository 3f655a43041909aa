"""Helpers of the 3-broker fault tests: a paced producer thread and what the cluster reports."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from tally.embedded.kafka_broker import committed_offsets
from tally.ingest import ClientSettings, Tracker
from tally.ingest.stats import TrackerStats
from tally.loadtest.exactness import Expected
from tally.schemas.granularity import Calendar


class RetryCounter(logging.Handler):
    """Counts the produce requests aiokafka's idempotent producer retried (same sequence
    numbers: a retry of a batch the old leader had already appended is dropped by the broker)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.retries = 0

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith("Got error produce response"):
            self.retries += 1


@dataclass
class Load:
    """Tracks ``rate`` events a second into ``topic`` from a thread until :meth:`finish`."""

    bootstrap: str
    topic: str
    rate: int = 1_000
    expected: Expected = field(
        default_factory=lambda: Expected(Calendar("UTC"), ("1m", "1h", "1d"))
    )
    stats: TrackerStats | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _retries: RetryCounter = field(default_factory=RetryCounter)

    def start(self) -> Load:
        logging.getLogger("aiokafka.producer.sender").addHandler(self._retries)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    @property
    def producer_retries(self) -> int:
        return self._retries.retries

    def _run(self) -> None:
        settings = ClientSettings(bootstrap_servers=self.bootstrap, topic=self.topic, strict=True)
        tracker = Tracker(settings)
        began = time.monotonic()
        i = 0
        while not self._stop.is_set():
            at = int(time.time())
            keys = ("jobs", f"jobs::tenant{i % 24}")
            values = {"count": 1, "v": i % 13, "codes": {f"c{i % 3}": 1}}
            assert tracker.track(keys, values, at=at)
            self.expected.add_raw(keys, values, at)
            i += 1
            if i % 50 == 0:
                ahead = began + i / self.rate - time.monotonic()
                if ahead > 0:
                    time.sleep(ahead)
        flushed = tracker.flush(180)
        self.stats = tracker.stats()
        tracker.close()
        assert flushed, self.stats

    def stop(self) -> None:
        """Stop tracking (what is buffered is still delivered); idempotent."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(60)
        logging.getLogger("aiokafka.producer.sender").removeHandler(self._retries)

    def finish(self, timeout: float = 240) -> TrackerStats:
        """Stop tracking, wait until every event was acknowledged; the client's counters."""
        self._stop.set()
        assert self._thread is not None
        self._thread.join(timeout)
        logging.getLogger("aiokafka.producer.sender").removeHandler(self._retries)
        assert self.stats is not None, "the producer did not finish"
        return self.stats


async def _end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        parts = consumer.partitions_for_topic(topic) or set()
        if not parts:
            await consumer._client.force_metadata_update()
            parts = consumer.partitions_for_topic(topic) or set()
        ends = await consumer.end_offsets([TopicPartition(topic, p) for p in parts])
        return {tp.partition: offset for tp, offset in ends.items()}
    finally:
        await consumer.stop()


def records_in_log(bootstrap: str, topic: str) -> int:
    """Records the topic holds (no transactions, no compaction: the sum of end offsets)."""
    return sum(asyncio.run(_end_offsets(bootstrap, topic)).values())


def committed(bootstrap: str, group: str) -> dict[int, int]:
    """partition -> the group's committed offset (empty while the group has no coordinator)."""
    try:
        offsets = asyncio.run(committed_offsets(bootstrap, group, timeout=60))
    except KafkaError:
        return {}
    return {tp.partition: meta.offset for tp, meta in offsets.items()}


def seconds_until_commits_pass(
    bootstrap: str, group: str, since: float, before: dict[int, int], timeout: float = 120
) -> float:
    """Seconds from ``since`` until every partition's commit moved past ``before``: the
    aggregators consume, insert and commit again on every partition."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        now = committed(bootstrap, group)
        if before and all(now.get(p, -1) > offset for p, offset in before.items()):
            return time.monotonic() - since
        time.sleep(0.25)
    raise AssertionError(f"commits did not move past {before} within {timeout}s")
