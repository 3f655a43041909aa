"""The trace writer: consumes ``tally.traces`` into ClickHouse, exactly once.

It is the aggregator's loop (``aggregator.worker.Aggregator``) with a trace fold and a trace
sink: per partition, a flush commits its intent (``tally1:start:end``) as Kafka commit metadata,
inserts each table under ``insert_deduplication_token = topic:partition:start-end/<table>``,
then commits ``end + 1``. After a kill -9 the next owner replays exactly the pending range
under the same tokens, so ClickHouse keeps one copy of every row and loses none. An insert
ClickHouse keeps rejecting is isolated by the aggregator's own code (halving by offsets,
re-read, re-folded with a trace fold, dead-lettering single records it still rejects).
"""

from __future__ import annotations

from tally.aggregator.metrics import AggregatorMetrics
from tally.aggregator.settings import AggregatorSettings
from tally.aggregator.worker import Aggregator
from tally.traces.ddl import TraceSchema
from tally.traces.fold import TraceFold
from tally.traces.sink import TraceSink


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

    def _new_fold(self) -> TraceFold:  # type: ignore[override]
        """Partitions (and re-read ranges of rejected inserts) fold traces."""
        return TraceFold()
