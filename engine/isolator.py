"""Isolating what ClickHouse rejects: a rejected range is halved by offsets and re-read.

Each half is re-read from Kafka by a group-less consumer, re-folded and inserted under the
token of its own offsets; a half rejected again (``max_insert_attempts`` times in a row, with
the same error, as the whole range was) is halved again, down to single records, which are
dead-lettered with reason ``insert_rejected``. The halving depends only on the range, so a
replay after a crash makes the same inserts with the same tokens.

Isolating is only exact if the rejected insert left nothing behind, since its parts are then
inserted under new tokens that cannot dedup against it. So: (1) only a deterministic
rejection is isolated (repeated identically: a one-off or misclassified error during an
outage is retried under the same token instead); (2) a sink whose insert lands in pieces
reports what landed before the rejected step (``clickhouse.sink_base.PartlyInserted.landed``)
and can ``exclude`` those rows; every part of the range leaves them out, and a part's own
partial landing is added for its halves. What ClickHouse keeps of one rejected statement (a
view that throws after another view wrote) cannot be known and stays a documented limit.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition

from tally.engine.clients import KafkaClients
from tally.engine.intent import Intent
from tally.engine.metrics import EngineMetrics
from tally.engine.protocols import EngineSettings, Fold, FoldFactory, Rejected

log = logging.getLogger("tally.aggregator")  # the name operators' log queries select

# ``insert(rows, token, attempts)``: None once acknowledged, the error once rejected
# ``attempts`` times (transient errors are retried without end).
InsertRows = Callable[[Any, str, int], Awaitable[Exception | None]]


@dataclass
class RangeFold:
    """The fold of offsets ``start..end``, the offsets read (the value if only one) and what
    the fold rejected (each record's value and rejects, for a replay to dead-letter)."""

    fold: Fold[Any]
    offsets: list[int] = field(default_factory=list)
    value: bytes | None = None
    rejected: list[tuple[bytes | None, list[Rejected]]] = field(default_factory=list)


class RangeReader:
    """A group-less consumer assigned to one partition, seeking to exact ranges."""

    def __init__(self, consumer: AIOKafkaConsumer, tp: TopicPartition) -> None:
        self.consumer = consumer
        self.tp = tp

    async def fold(self, start: int, end: int, new_fold: Callable[[], Fold[Any]]) -> RangeFold:
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
                if record.value is None:
                    out.rejected.append((None, [Rejected(record.offset, -1, "empty_record", "")]))
                elif rejects := out.fold.add_record(record.value, record.offset, record.timestamp):
                    out.rejected.append((record.value, rejects))
                if record.offset == end:
                    return _single(out)
            position = await consumer.position(tp)
            high = consumer.highwater(tp)
            if position > end or (high is not None and position >= high and not batches):
                return _single(out)  # gaps (compaction, markers) or records deleted meanwhile


def range_consumer(settings: EngineSettings, purpose: str) -> AIOKafkaConsumer:
    """A group-less consumer without auto-commit, for a :class:`RangeReader`."""
    return AIOKafkaConsumer(
        bootstrap_servers=settings.bootstrap_servers,
        group_id=None,
        client_id=f"{settings.client_id}-{purpose}",
        enable_auto_commit=False,
        **settings.security.aiokafka_kwargs(),
    )


def _single(out: RangeFold) -> RangeFold:
    if len(out.offsets) != 1:
        out.value = None
    return out


def halves(start: int, end: int) -> list[tuple[int, int]]:
    """``start..end`` split in two by offset (deterministic); single offsets are not split."""
    if start >= end:
        return [(start, end)]
    middle = (start + end) // 2
    return [(middle + 1, end), (start, middle)]


@dataclass(eq=False)
class Isolator:
    """Inserts every part of a rejected range that ClickHouse accepts; dead-letters the rest."""

    settings: EngineSettings
    metrics: EngineMetrics
    clients: KafkaClients
    new_fold: FoldFactory[Any]
    insert: InsertRows
    exclude: Callable[[Any, Any], Any] | None = None  # the sink's ``exclude(rows, landed)``

    def _refold(self) -> Fold[Any]:
        return self.new_fold(reread=True)

    async def isolate(self, tp: TopicPartition, intent: Intent, landed: Any = None) -> None:
        """Halve ``intent``'s range until every part is inserted or dead-lettered; ``landed``
        (the rejection's, if the sink reports one) is left out of every part."""
        dead_letters = self.clients.dead_letters
        assert dead_letters is not None
        if landed and self.exclude is None:
            raise RuntimeError("the sink reports a partial insert but cannot exclude it")
        self.metrics.rejected_ranges.inc()
        attempts = self.settings.max_insert_attempts
        reader = range_consumer(self.settings, "ranges")
        await reader.start()
        try:
            reader.assign([tp])
            ranges = RangeReader(reader, tp)
            todo = [(start, end, landed) for start, end in halves(intent.start, intent.end)]
            while todo:
                start, end, kept = todo.pop()
                part = await ranges.fold(start, end, self._refold)
                if not len(part.fold):
                    continue
                rows = part.fold.rows()
                if kept and self.exclude is not None:
                    rows = self.exclude(rows, kept)
                    if not len(rows):
                        continue  # every row of the part landed with the rejected insert
                token = Intent(start, end).token(tp.topic, tp.partition)
                error = await self.insert(rows, token, attempts)
                if error is None:
                    continue
                more = getattr(error, "landed", None)
                if more:
                    kept = more | kept if kept else more
                if len(part.offsets) > 1:
                    todo.extend((a, b, kept) for a, b in halves(start, end))
                    continue
                offset = part.offsets[0]
                reject = Rejected(offset, -1, "insert_rejected", str(error)[:500])
                dead_letters.queue(tp.topic, tp.partition, part.value, [reject])
                self.metrics.dead_letters.labels("insert_rejected").inc()
                log.error(
                    "record dead-lettered: ClickHouse rejects its rows: %s",
                    str(error)[:300],
                    extra={"partition": tp.partition, "offset": offset},
                )
        finally:
            with contextlib.suppress(Exception):
                await reader.stop()
