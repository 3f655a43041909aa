"""The trace writer: consumes ``tally.traces`` into ClickHouse, exactly once.

It is the aggregator's loop (``aggregator.worker.Aggregator``) with a trace fold and a trace
sink: per partition, a flush commits its intent (``tally1:start:end``) as Kafka commit metadata,
inserts each table under ``insert_deduplication_token = topic:partition:start-end/<table>``,
then commits ``end + 1``. After a kill -9 the next owner replays exactly the pending range
under the same tokens, so ClickHouse keeps one copy of every row and loses none. An insert
ClickHouse keeps rejecting is isolated as the aggregator does (halving by offsets, re-read,
re-folded with a trace fold, dead-lettering single records it still rejects).
"""

from __future__ import annotations

import contextlib
import logging

from aiokafka import AIOKafkaConsumer, TopicPartition

from tally.aggregator.fold import Rejected
from tally.aggregator.intent import Intent
from tally.aggregator.metrics import AggregatorMetrics
from tally.aggregator.settings import AggregatorSettings
from tally.aggregator.worker import Aggregator, _halves
from tally.traces.ddl import TraceSchema
from tally.traces.fold import TraceFold
from tally.traces.sink import TraceSink

log = logging.getLogger("tally.traces")


class TraceWriter(Aggregator):
    """One trace writer process (a member of its own consumer group)."""

    def __init__(
        self,
        settings: AggregatorSettings,
        schema: TraceSchema,
        metrics: AggregatorMetrics | None = None,
    ) -> None:
        super().__init__(settings, metrics)
        self.sink = TraceSink(settings.clickhouse, schema)  # type: ignore[assignment]

    async def on_assigned(self, partitions: set[TopicPartition]) -> None:
        """The aggregator's assignment (pending intents included), with trace folds."""
        await super().on_assigned(partitions)
        for tp in partitions:
            state = self.states.get(tp)
            if state is not None:
                state.fold = TraceFold()  # type: ignore[assignment]

    async def _isolate(self, tp: TopicPartition, intent: Intent) -> None:
        """The aggregator's isolation of a rejected range, re-folding with ``TraceFold``."""
        assert self.dead_letters is not None
        self.metrics.rejected_ranges.inc()
        s = self.settings
        reader = AIOKafkaConsumer(
            bootstrap_servers=s.bootstrap_servers,
            group_id=None,
            client_id=f"{s.client_id}-ranges",
            enable_auto_commit=False,
            **s.security.aiokafka_kwargs(),
        )
        await reader.start()
        try:
            reader.assign([tp])
            todo = _halves(intent.start, intent.end)
            while todo:
                start, end = todo.pop()
                fold, offsets, value = await _fold_range(reader, tp, start, end)
                if not len(fold):
                    continue
                token = Intent(start, end).token(tp.topic, tp.partition)
                error = await self._insert_rows(fold.rows(), token, 1)  # type: ignore[arg-type]
                if error is None:
                    continue
                if len(offsets) > 1:
                    todo.extend(_halves(start, end))
                    continue
                reject = Rejected(offsets[0], -1, "insert_rejected", str(error)[:500])
                self.dead_letters.queue(tp.topic, tp.partition, value, [reject])
                self.metrics.dead_letters.labels("insert_rejected").inc()
                log.error("trace record dead-lettered: ClickHouse rejects its rows: %s", error)
        finally:
            with contextlib.suppress(Exception):
                await reader.stop()


async def _fold_range(
    consumer: AIOKafkaConsumer, tp: TopicPartition, start: int, end: int
) -> tuple[TraceFold, list[int], bytes | None]:
    """Fold ``start..end`` again (same rows, same order); the offsets read; a lone value."""
    fold, offsets, value = TraceFold(), [], None
    consumer.seek(tp, start)
    while True:
        batches = await consumer.getmany(tp, timeout_ms=1000, max_records=500)
        for record in batches.get(tp, ()):
            if record.offset > end:
                return fold, offsets, value if len(offsets) == 1 else None
            offsets.append(record.offset)
            value = record.value
            if record.value is not None:
                fold.add_record(record.value, record.offset, record.timestamp)
            if record.offset == end:
                return fold, offsets, value if len(offsets) == 1 else None
        position = await consumer.position(tp)
        high = consumer.highwater(tp)
        if position > end or (high is not None and position >= high and not batches):
            return fold, offsets, value if len(offsets) == 1 else None
