"""Re-reading a committed range of one partition, outside the group (for rejected inserts)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition


class RecordFold(Protocol):
    """What a range is folded into: the aggregator's ``PartitionFold`` or the writer's."""

    def __len__(self) -> int: ...

    def add_record(self, payload: bytes, offset: int, timestamp_ms: int) -> list[Any]: ...

    def rows(self) -> Any: ...


@dataclass
class RangeFold:
    """The fold of offsets ``start..end`` and the offsets read (the value if only one)."""

    fold: RecordFold
    offsets: list[int] = field(default_factory=list)
    value: bytes | None = None


class RangeReader:
    """A group-less consumer assigned to one partition, seeking to exact ranges."""

    def __init__(self, consumer: AIOKafkaConsumer, tp: TopicPartition) -> None:
        self.consumer = consumer
        self.tp = tp

    async def fold(self, start: int, end: int, new_fold: Callable[[], RecordFold]) -> RangeFold:
        """Fold every record of ``start..end`` into ``new_fold()`` as the consumer did (same
        rows, same order)."""
        out = RangeFold(new_fold())
        consumer, tp = self.consumer, self.tp
        consumer.seek(tp, start)
        while True:
            batches = await consumer.getmany(tp, timeout_ms=1000, max_records=500)
            for record in batches.get(tp, ()):
                if record.offset > end:
                    return _single(out)
                out.offsets.append(record.offset)
                out.value = record.value
                if record.value is not None:
                    out.fold.add_record(record.value, record.offset, record.timestamp)
                if record.offset == end:
                    return _single(out)
            position = await consumer.position(tp)
            high = consumer.highwater(tp)
            if position > end or (high is not None and position >= high and not batches):
                return _single(out)  # gaps (compaction, markers) or records deleted meanwhile


def _single(out: RangeFold) -> RangeFold:
    if len(out.offsets) != 1:
        out.value = None
    return out
